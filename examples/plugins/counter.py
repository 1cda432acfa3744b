"""A small stateful service, the kind of object an admin pokes at over SSH."""

from __future__ import annotations

from shellsvc import Plugin


class CounterService(Plugin):
    """A counter with a history: ``increment()``, ``value``, ``reset()``.

    Its state survives reloads (see ``migrate_from``), so you can change the code of a
    running counter without losing the count.
    """

    name = "counter"
    version = "1.0"
    author = "shellsvc examples"
    tags = ("demo", "stateful")

    def __init__(self) -> None:
        self._value = 0
        self.history: list[int] = []

    @property
    def value(self) -> int:
        return self._value

    def increment(self, by: int = 1) -> int:
        """Add ``by`` and return the new value."""
        self._value += by
        self.history.append(by)
        return self._value

    def reset(self) -> None:
        self._value = 0
        self.history.clear()

    def migrate_from(self, previous: CounterService) -> None:
        self._value, self.history = previous.value, list(previous.history)

    def shell_names(self) -> dict[str, object]:
        return {"counter": self}

    commands = [increment, reset]
