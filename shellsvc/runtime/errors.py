"""Errors raised by the plugin runtime, each naming the plugin, the file and the line."""

from __future__ import annotations

import traceback
from collections.abc import Iterable
from pathlib import Path

__all__ = ["PluginError", "PluginLoadError", "PluginNotFound", "ReloadError", "locate_error"]


class PluginError(Exception):
    """Base class: something about a plugin (``name`` or ``path``) went wrong.

    ``file`` and ``line`` point at the offending source line when one is known;
    ``cause`` is the original exception (also chained as ``__cause__``).
    """

    def __init__(
        self,
        message: str,
        *,
        name: str | None = None,
        path: Path | None = None,
        file: str | None = None,
        line: int | None = None,
        cause: BaseException | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.name = name
        self.path = path
        self.file = file
        self.line = line
        self.cause = cause

    @property
    def location(self) -> str:
        """``file:line`` (or just the file, or the plugin path) for messages."""
        if self.file and self.line:
            return f"{self.file}:{self.line}"
        return self.file or (str(self.path) if self.path else "<unknown>")

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"

    def __repr__(self) -> str:  # shown in `runtime.failures` listings: keep the location
        return f"{type(self).__name__}({str(self)!r})"


class PluginLoadError(PluginError):
    """Importing, instantiating or starting a plugin failed; nothing was registered."""


class ReloadError(PluginError):
    """A reload failed and was rolled back: the previous version is still serving."""


class PluginNotFound(PluginError, KeyError):
    """No plugin (or plugin source) is registered under that name or path."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.message


def locate_error(exc: BaseException, files: Iterable[Path], source: Path) -> tuple[str, int | None]:
    """Return the ``(file, line)`` in the plugin's own ``files`` where ``exc`` arose.

    Syntax errors carry their position; for anything else the innermost traceback frame
    inside the plugin wins. The cause/context chain is searched too: a ``start()`` that
    timed out is reported at the ``await`` it was stuck in (the cancellation's traceback).
    Without any (say, a binary that fails to link) the plugin's ``source`` path is
    reported, with no line.
    """
    own = {str(path) for path in files}
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, SyntaxError) and current.filename:
            return current.filename, current.lineno
        for frame in reversed(traceback.extract_tb(current.__traceback__)):
            if frame.filename in own:
                return frame.filename, frame.lineno
        current = current.__cause__ or current.__context__
    return str(source), None


def describe(exc: BaseException) -> str:
    """``"ZeroDivisionError: division by zero"`` for messages."""
    text = str(exc) if not isinstance(exc, SyntaxError) else (exc.msg or "invalid syntax")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
