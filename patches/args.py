"""``log_args``: show each call's arguments (bound to parameter names) and its result."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from ._util import emit, label, short_repr, wraps_any

__all__ = ["log_args"]


def log_args(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Print ``[args] func(a=1, b='x')`` before and ``[args] func -> 3`` after each call."""
    name = label(fn)
    try:
        signature: inspect.Signature | None = inspect.signature(fn)
    except (TypeError, ValueError):
        signature = None

    def before(args: tuple, kwargs: dict) -> None:
        try:
            bound = signature.bind(*args, **kwargs) if signature else None
        except TypeError:
            bound = None
        if bound is not None:
            shown = ", ".join(f"{k}={short_repr(v)}" for k, v in bound.arguments.items())
        else:
            shown = ", ".join([short_repr(a) for a in args] + [f"{k}={short_repr(v)}" for k, v in kwargs.items()])
        emit(f"[args] {name}({shown})")

    def after(token: None, result: Any, error: BaseException | None) -> None:
        if error is not None:
            emit(f"[args] {name} raised {type(error).__name__}: {short_repr(str(error))}")
        else:
            emit(f"[args] {name} -> {short_repr(result)}")

    return wraps_any(fn, before, after)
