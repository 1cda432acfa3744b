"""``tracer``: print each executed line of a function with its source and the locals it changed.

Only frames running the traced function's code are reported; any trace function already
installed (a debugger, coverage) keeps receiving the other frames and is put back when
the call ends - also when it raises.
"""

from __future__ import annotations

import functools
import inspect
import linecache
import sys
import types
from collections.abc import Callable
from typing import Any

from ._util import emit, label, short_repr

__all__ = ["tracer"]

TraceFunc = Callable[[types.FrameType, str, Any], Any]


def _codes(fn: Callable[..., Any]) -> set[types.CodeType]:
    """The code objects a call of ``fn`` may run (instrumented and base code)."""
    from shellsvc.patching.instrument import base_code

    target = inspect.unwrap(fn)
    if not inspect.isfunction(target):
        return set()
    return {target.__code__, base_code(target)}


class _FrameReporter:
    """Local trace function for one traced frame."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.previous: dict[str, str] = {}

    def _changes(self, frame: types.FrameType) -> None:
        current = {k: short_repr(v) for k, v in frame.f_locals.items() if not k.startswith("__shellsvc")}
        for key, value in current.items():
            if self.previous.get(key) != value:
                emit(f"[trace]        {key} = {value}")
        self.previous = current

    def __call__(self, frame: types.FrameType, event: str, arg: Any) -> Any:
        if event == "line":
            self._changes(frame)
            text = linecache.getline(frame.f_code.co_filename, frame.f_lineno, frame.f_globals).rstrip()
            emit(f"[trace] {frame.f_lineno:5d} | {text.strip() if text else '<source unavailable>'}")
        elif event == "return":
            self._changes(frame)
            emit(f"[trace] {self.name} returned {short_repr(arg)}")
        elif event == "exception":
            emit(f"[trace] {self.name} raised {arg[0].__name__}: {short_repr(str(arg[1]))}")
        return self


def tracer(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Trace every call of ``fn``: one line of output per executed source line."""
    name = label(fn)

    def install() -> TraceFunc | None:
        previous = sys.gettrace()
        codes = _codes(fn)

        def global_trace(frame: types.FrameType, event: str, arg: Any) -> Any:
            if event == "call" and frame.f_code in codes:
                emit(f"[trace] call {name}")
                return _FrameReporter(name)
            return previous(frame, event, arg) if previous is not None else None

        sys.settrace(global_trace)
        return previous

    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_traced(*args: Any, **kwargs: Any) -> Any:
            previous = install()
            try:
                return await fn(*args, **kwargs)
            finally:
                sys.settrace(previous)

        return async_traced

    @functools.wraps(fn)
    def traced(*args: Any, **kwargs: Any) -> Any:
        previous = install()
        try:
            return fn(*args, **kwargs)
        finally:
            sys.settrace(previous)

    return traced
