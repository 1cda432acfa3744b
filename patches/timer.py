"""``timer``: report how long each call took; the return value is never touched."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ._util import emit, label, wraps_any

__all__ = ["timer"]


def timer(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Print ``[timer] module.func took 1.234 ms`` after every call (also when it raises)."""
    name = label(fn)

    def before(args: tuple, kwargs: dict) -> float:
        return time.perf_counter()

    def after(start: float, result: Any, error: BaseException | None) -> None:
        elapsed = (time.perf_counter() - start) * 1000
        outcome = f" (raised {type(error).__name__})" if error is not None else ""
        emit(f"[timer] {name} took {elapsed:.3f} ms{outcome}")

    return wraps_any(fn, before, after)
