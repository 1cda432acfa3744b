"""Tracebacks that show the user's frames, not the engine's."""

from __future__ import annotations

import concurrent.futures
import os
import traceback

__all__ = ["format_user_exception"]

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_INTERNAL_PREFIXES = (
    os.path.join(_PACKAGE, "engine") + os.sep,
    os.path.join(_PACKAGE, "repl") + os.sep,
    os.path.join(_PACKAGE, "server") + os.sep,
    os.path.dirname(os.path.abspath(concurrent.futures.__file__)) + os.sep,
)


def _is_internal(filename: str) -> bool:
    return filename.startswith(_INTERNAL_PREFIXES)


def _strip(te: traceback.TracebackException, seen: set[int]) -> None:
    if id(te) in seen:
        return
    seen.add(id(te))
    te.stack = traceback.StackSummary.from_list([f for f in te.stack if not _is_internal(f.filename)])
    for chained in (te.__cause__, te.__context__):
        if chained is not None:
            _strip(chained, seen)


def format_user_exception(exc: BaseException) -> str:
    """Format ``exc`` like the interactive interpreter, minus engine frames."""
    te = traceback.TracebackException.from_exception(exc, capture_locals=False)
    _strip(te, set())
    if isinstance(exc, SyntaxError):
        return "".join(te.format_exception_only())
    return "".join(te.format())
