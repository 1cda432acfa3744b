"""Helpers shared by the shipped patches."""

from __future__ import annotations

import contextlib
import functools
import inspect
import reprlib
import sys
from collections.abc import Callable, Coroutine, Generator
from typing import Any

_repr = reprlib.Repr()
_repr.maxstring = 60
_repr.maxother = 60


def short_repr(value: Any) -> str:
    """A bounded ``repr`` that never raises (a broken ``__repr__`` must not break the call)."""
    try:
        return _repr.repr(value)
    except Exception as exc:  # noqa: BLE001 - reporting, not handling
        return f"<repr failed: {type(exc).__name__}>"


def label(fn: Callable[..., Any]) -> str:
    """``module.qualname`` (just the qualname for code made by ``exec``)."""
    name = getattr(fn, "__qualname__", None) or repr(fn)
    module = getattr(fn, "__module__", None)
    return f"{module}.{name}" if module else name


def emit(text: str) -> None:
    """Write one line to the calling session (``sys.stdout`` is routed per session)."""
    sys.stdout.write(text + "\n")


class _Observed:
    """One observed call: ``before`` on entry; ``after`` with the result, or with the exception."""

    __slots__ = ("_after", "_reported", "_token")

    def __init__(self, before: Callable[[tuple, dict], Any], after: Callable[[Any, Any, BaseException | None], None],
                 args: tuple, kwargs: dict) -> None:
        self._after = after
        self._reported = False
        self._token = before(args, kwargs)

    def __enter__(self) -> _Observed:
        return self

    def done(self, result: Any) -> Any:
        self._reported = True
        self._after(self._token, result, None)
        return result

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: Any) -> None:
        if error is not None and not self._reported:
            self._reported = True
            self._after(self._token, None, error)


def wraps_any(fn: Callable[..., Any], before: Callable[[tuple, dict], Any], after: Callable[[Any, Any, BaseException | None], None]) -> Callable[..., Any]:
    """Wrap functions, coroutines and generators alike.

    ``before(args, kwargs) -> token`` runs when the call starts (a generator's first
    step), ``after(token, result, error)`` when it ends: returned, raised, or for a
    generator exhausted or closed. The result is always passed through untouched.
    """
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def generator_wrapper(*args: Any, **kwargs: Any) -> Any:
            with _Observed(before, after, args, kwargs) as call:
                return call.done((yield from fn(*args, **kwargs)))

        return generator_wrapper

    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            with _Observed(before, after, args, kwargs) as call:
                return call.done(await fn(*args, **kwargs))

        return async_wrapper

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _Observed(before, after, args, kwargs) as call:
            return call.done(fn(*args, **kwargs))

    return wrapper


def drive(
    steps: Generator[Any, Any, Any] | Coroutine[Any, Any, Any],
    around: Callable[[], contextlib.AbstractContextManager[Any]],
) -> Generator[Any, Any, Any]:
    """Run a generator or coroutine one step at a time, each step inside ``around()``.

    A generator that forwards ``send``, ``throw`` and ``close`` exactly like
    ``yield from steps`` would, so it can stand in for the original (or, behind
    ``__await__``, for a coroutine); ``around`` is entered only while ``steps`` runs.
    """
    method: Callable[[Any], Any] = steps.send
    arg: Any = None
    while True:
        with around():
            try:
                item = method(arg)
            except StopIteration as stop:
                return stop.value
        try:
            arg = yield item
        except GeneratorExit:
            with around():
                steps.close()
            raise
        except BaseException as exc:  # forwarded into ``steps``, like yield from
            method, arg = steps.throw, exc
        else:
            method = steps.send
