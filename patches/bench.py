"""``benchmark``: time the call with :mod:`timeit` (it is repeated, by design)."""

from __future__ import annotations

import functools
import inspect
import timeit
from collections.abc import Callable
from typing import Any

from ._util import emit, label

__all__ = ["benchmark"]


def _format(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def benchmark(fn: Callable[..., Any] | None = None, *, repeat: int = 3, max_seconds: float = 2.0) -> Any:
    """Run the call once for its result, then measure it like ``python -m timeit``.

    Prints ``[benchmark] func: 10000 loops, best of 3: 1.2 us per loop``. The call is
    repeated, so only use it on functions without side effects. Usable bare
    (``decorator="benchmark"``) or configured (``benchmark(repeat=5)``).
    """
    if fn is None:
        return functools.partial(benchmark, repeat=repeat, max_seconds=max_seconds)
    if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn) or inspect.isgeneratorfunction(fn):
        raise TypeError(
            f"benchmark cannot time {label(fn)}: it returns a coroutine or generator, and timeit would only time "
            "its creation; benchmark a plain function that runs it instead"
        )
    name = label(fn)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = fn(*args, **kwargs)
        timer = timeit.Timer(lambda: fn(*args, **kwargs))
        number, elapsed = timer.autorange()
        rounds = max(1, min(repeat, int(max_seconds / max(elapsed, 1e-9))))
        best = min([elapsed] + timer.repeat(repeat=rounds - 1, number=number)) / number
        emit(f"[benchmark] {name}: {number} loops, best of {rounds}: {_format(best)} per loop")
        return result

    return wrapper
