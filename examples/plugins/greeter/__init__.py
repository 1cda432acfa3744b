"""A package plugin: the plugin class here, its wording in a helper module.

Edit ``phrases.py`` and reload ``greeter``: the helper is imported afresh too.
"""

from __future__ import annotations

from shellsvc import Plugin

from . import phrases


class Greeter(Plugin):
    """Greets people using the phrases of its helper module."""

    version = "1.0"
    author = "shellsvc examples"
    tags = ("demo", "package")

    def __init__(self) -> None:
        self.greeted: list[str] = []

    def greet(self, who: str = "world") -> str:
        self.greeted.append(who)
        return phrases.greeting(who)

    def shell_names(self) -> dict[str, object]:
        return {"greet": self.greet}
