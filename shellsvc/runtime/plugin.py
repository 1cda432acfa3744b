"""The ``Plugin`` base class: metadata plus an async lifecycle.

A plugin is an ordinary class in a plugin file or package. The runtime instantiates it
without arguments, awaits :meth:`Plugin.start`, and later awaits :meth:`Plugin.stop`.
Everything here has a harmless default, so the smallest plugin is a class with a docstring.
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

__all__ = ["Plugin", "plugin_commands"]


def _snake_case(name: str) -> str:
    """``CounterService`` -> ``counter_service``: the default plugin name."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


class _DefaultName:
    """Class-level default for ``Plugin.name``; a plain ``name = "..."`` in a subclass wins."""

    def __get__(self, instance: object, owner: type) -> str:
        return _snake_case(owner.__name__)


class _DefaultDescription:
    """Class-level default for ``Plugin.description``: the first paragraph of the docstring."""

    def __get__(self, instance: object, owner: type) -> str:
        doc = inspect.getdoc(owner) if owner.__doc__ else None
        return doc.split("\n\n", 1)[0].strip() if doc else ""


class Plugin:
    """Base class for plugins hosted by a :class:`~shellsvc.runtime.Runtime`.

    Override ``start``/``stop`` for resources with a lifetime (tasks, sockets), ``health``
    to veto a reload, ``migrate_from`` to carry state across a reload, ``shell_names`` and
    ``commands`` to offer things to the operator's shell.
    """

    #: Registry key; defaults to the class name in snake_case (``CounterService`` -> ``counter_service``).
    name: ClassVar[str] = _DefaultName()  # type: ignore[assignment]
    version: ClassVar[str] = "0.0.0"
    author: ClassVar[str] = ""
    #: Defaults to the first paragraph of the class docstring.
    description: ClassVar[str] = _DefaultDescription()  # type: ignore[assignment]
    tags: ClassVar[tuple[str, ...]] = ()
    #: Plain callables the operator console offers as commands (consumed by the console, later).
    commands: ClassVar[list[Callable[..., Any]]] = []

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Per-call monkey_patch=/decorator=/decorators=/context_manager= on public methods.
        super().__init_subclass__(**kwargs)
        from ..patching.plugin_methods import prepare_plugin_class

        prepare_plugin_class(cls)

    async def start(self) -> None:
        """Acquire resources. Raising here aborts a load, or rolls a reload back."""

    async def stop(self) -> None:
        """Release what ``start`` acquired. Bounded by the runtime's stop timeout."""

    def health(self) -> bool | Awaitable[bool]:
        """Report readiness after ``start``; a false result (or an exception) rolls a reload back."""
        return True

    def migrate_from(self, previous: Plugin) -> None:
        """Take over state from the version being replaced.

        Called synchronously on the event loop after the new version started and passed its
        health check, immediately before the swap, so no loop task can change ``previous``
        in between. Raising here rolls the reload back.
        """

    def shell_names(self) -> dict[str, object]:
        """Names this plugin offers to shell namespaces (default: none)."""
        return {}

    @property
    def log(self) -> logging.Logger:
        """A logger named after the plugin (``shellsvc.plugins.<name>``)."""
        return logging.getLogger(f"shellsvc.plugins.{self.name}")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} plugin {self.name!r} v{self.version}>"


def plugin_commands(plugin: Any) -> list[Callable[..., Any]]:
    """The callables in ``plugin.commands``, ready to call on this instance.

    ``commands = [increment]`` in a class body lists plain functions; those whose first
    parameter is ``self`` are bound to ``plugin`` (a reload makes a new instance, so bind
    again after one). Anything else (bound methods, free functions) is returned as is.
    """
    found: list[Callable[..., Any]] = []
    for command in getattr(plugin, "commands", None) or ():
        if inspect.isfunction(command):
            parameters = list(inspect.signature(command).parameters)
            if parameters and parameters[0] == "self":
                command = command.__get__(plugin, type(plugin))
        found.append(command)
    return found
