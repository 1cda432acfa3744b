"""``count_calls``: a running count of calls per function, kept for the life of the process."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from ._util import emit, label, wraps_any

__all__ = ["call_counts", "count_calls", "reset_counts"]

_counts: Counter[str] = Counter()
_lock = threading.Lock()


def count_calls(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Print ``[counter] module.func: call #N`` on every call; see :func:`call_counts`."""
    name = label(fn)

    def before(args: tuple, kwargs: dict) -> None:
        with _lock:
            _counts[name] += 1
            number = _counts[name]
        emit(f"[counter] {name}: call #{number}")

    def after(token: None, result: Any, error: BaseException | None) -> None:
        return None

    return wraps_any(fn, before, after)


def call_counts() -> dict[str, int]:
    """Calls counted so far, by ``module.qualname``."""
    with _lock:
        return dict(_counts)


def reset_counts() -> None:
    with _lock:
        _counts.clear()
