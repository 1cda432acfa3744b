"""Exceptions raised by :mod:`shellsvc.gencopy`.

They subclass the builtin exception a caller would naturally expect (``TypeError`` for
"this object cannot be handled", ``ValueError`` for "this state cannot be handled") so
existing ``except`` clauses around ``copy``/``pickle`` keep working.
"""

from __future__ import annotations

__all__ = [
    "GencopyError",
    "UnsupportedGeneratorError",
    "GeneratorStateError",
    "SourceChangedError",
]


class GencopyError(Exception):
    """Base class of every error raised by ``shellsvc.gencopy``."""


class UnsupportedGeneratorError(GencopyError, TypeError):
    """A generator function uses a construct ``@resumable`` cannot compile.

    Raised at decoration time; the message names the construct and its line.
    """


class GeneratorStateError(GencopyError, ValueError):
    """A generator's current state cannot be snapshotted, restored or captured."""


class SourceChangedError(GeneratorStateError):
    """A saved generator state was produced by different source code.

    Supply ``code_change=`` to ``@resumable`` to migrate old states.
    """
