"""Shared by the tests/test_console*.py files (no tests here): noticing code evaluation.

A process-wide audit hook (hooks cannot be removed) records evaluation events - compile,
exec, process spawning - while a test watches. Importing a module compiles and executes
code too; that is not evaluating input and is left out.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["EVALUATION_EVENTS", "watching"]

#: Audit events that mean something was compiled, evaluated or spawned.
EVALUATION_EVENTS = frozenset({"compile", "exec", "os.system", "subprocess.Popen", "os.exec", "os.posix_spawn",
                               "os.spawn", "os.fork", "ctypes.dlopen"})

# (events, thread ident or None for every thread, where to record)
_watches: list[tuple[frozenset[str], int | None, list[tuple[str, str]]]] = []
_lock = threading.Lock()


def _inside_import() -> bool:
    """Whether the current thread is importing a module: importlib compiles and executes the
    module's code, and the module itself may build functions with exec (dataclasses,
    namedtuple). That is loading code from files, not evaluating input."""
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib._bootstrap"):
            return True
        frame = frame.f_back
    return False


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if not _watches:
        return
    ident = threading.get_ident()
    for events, thread, seen in list(_watches):
        if event in events and thread in (None, ident) and not _inside_import():
            seen.append((event, repr(args)[:200]))


sys.addaudithook(_hook)


@contextlib.contextmanager
def watching(events: frozenset[str] = EVALUATION_EVENTS, *, all_threads: bool = False) -> Iterator[list[tuple[str, str]]]:
    """Record ``events`` (in this thread, or in every thread) while the block runs."""
    seen: list[tuple[str, str]] = []
    watch = (events, None if all_threads else threading.get_ident(), seen)
    with _lock:
        _watches.append(watch)
    try:
        yield seen
    finally:
        with _lock:
            _watches.remove(watch)
