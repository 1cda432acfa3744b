"""Helpers shared by the shipped patches."""

from __future__ import annotations

import functools
import inspect
import reprlib
import sys
from collections.abc import Callable
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


def wraps_any(fn: Callable[..., Any], before: Callable[[tuple, dict], Any], after: Callable[[Any, Any, BaseException | None], None]) -> Callable[..., Any]:
    """Wrap sync and async functions alike: ``before(args, kwargs) -> token``, then ``after(token, result, error)``."""
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            token = before(args, kwargs)
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                after(token, None, exc)
                raise
            after(token, result, None)
            return result

        return async_wrapper

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        token = before(args, kwargs)
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            after(token, None, exc)
            raise
        after(token, result, None)
        return result

    return wrapper
