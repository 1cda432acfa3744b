"""``tracer``: print each executed line of a function with its source and the locals it changed.

Only frames running the traced function's code are reported; any trace function already
installed (a debugger, coverage) keeps receiving the other frames and is put back when
the call ends - also when it raises. Generators and coroutines are traced step by step:
tracing is on only while *their* frame runs, so code running between two steps (other
asyncio tasks, the generator's consumer) is never traced or slowed down.
"""

from __future__ import annotations

import contextlib
import dis
import functools
import inspect
import linecache
import sys
import types
from collections.abc import Callable, Generator, Iterator
from typing import Any

from ._util import drive, emit, label, short_repr

__all__ = ["tracer"]

TraceFunc = Callable[[types.FrameType, str, Any], Any]

_YIELD_VALUE = dis.opmap["YIELD_VALUE"]
_RESUMABLE = inspect.CO_GENERATOR | inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR


def _codes(fn: Callable[..., Any]) -> set[types.CodeType]:
    """The code objects a call of ``fn`` may run (instrumented and base code)."""
    from shellsvc.patching.instrument import base_code

    target = inspect.unwrap(fn)
    if not inspect.isfunction(target):
        return set()
    return {target.__code__, base_code(target)}


class _FrameReporter:
    """Local trace function for one traced frame (kept across a generator's steps)."""

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
            if frame.f_code.co_code[frame.f_lasti] == _YIELD_VALUE:
                verb = "yielded" if frame.f_code.co_flags & inspect.CO_GENERATOR else "suspended, awaiting"
                emit(f"[trace] {self.name} {verb} {short_repr(arg)}")
            else:
                emit(f"[trace] {self.name} returned {short_repr(arg)}")
        elif event == "exception":
            kind, value, tb = arg
            # Like bdb: a sub-iterator/awaitable finishing raises StopIteration into a
            # generator or coroutine frame with no traceback; that is not an error.
            if not (frame.f_code.co_flags & _RESUMABLE and kind in (StopIteration, StopAsyncIteration) and tb is None):
                emit(f"[trace] {self.name} raised {kind.__name__}: {short_repr(str(value))}")
        return self


class _Tracing:
    """One traced call: its frames' reporters and the install/restore of ``sys.settrace``."""

    def __init__(self, fn: Callable[..., Any], name: str) -> None:
        self.codes = _codes(fn)
        self.name = name
        self.reporters: dict[int, tuple[types.FrameType, _FrameReporter]] = {}

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        previous = sys.gettrace()

        def global_trace(frame: types.FrameType, event: str, arg: Any) -> Any:
            if event == "call" and frame.f_code in self.codes:
                known = self.reporters.get(id(frame))
                if known is not None and known[0] is frame:
                    emit(f"[trace] resume {self.name}")
                    return known[1]
                emit(f"[trace] call {self.name}")
                reporter = _FrameReporter(self.name)
                self.reporters[id(frame)] = (frame, reporter)
                return reporter
            return previous(frame, event, arg) if previous is not None else None

        sys.settrace(global_trace)
        try:
            yield
        finally:
            sys.settrace(previous)


class _Steps:
    """An awaitable running a coroutine one step at a time (see :func:`drive`)."""

    def __init__(self, steps: Generator[Any, Any, Any]) -> None:
        self._steps = steps

    def __await__(self) -> Generator[Any, Any, Any]:
        return self._steps


def tracer(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Trace every call of ``fn``: one line of output per executed source line."""
    name = label(fn)
    if inspect.isasyncgenfunction(fn):
        raise TypeError(f"tracer cannot trace async generator {name}; trace the function that consumes it")

    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_traced(*args: Any, **kwargs: Any) -> Any:
            return await _Steps(drive(fn(*args, **kwargs), _Tracing(fn, name).active))

        return async_traced

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def traced_generator(*args: Any, **kwargs: Any) -> Any:
            return (yield from drive(fn(*args, **kwargs), _Tracing(fn, name).active))

        return traced_generator

    @functools.wraps(fn)
    def traced(*args: Any, **kwargs: Any) -> Any:
        with _Tracing(fn, name).active():
            return fn(*args, **kwargs)

    return traced
