"""``show_source``: print the source the function is running now, then call it."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from ._util import emit, label, wraps_any

__all__ = ["show_source"]


def _current_source(fn: Callable[..., Any]) -> str:
    from shellsvc.patching.instrument import base_code

    target = inspect.unwrap(fn)
    code = base_code(target) if inspect.isfunction(target) else getattr(target, "__code__", None)
    if code is None:
        return "<no Python source: not a Python function>\n"
    try:
        lines, first = inspect.getsourcelines(code)
    except (OSError, TypeError) as exc:
        return f"<source unavailable: {exc}>\n"
    return f"# {code.co_filename}:{first}\n" + "".join(lines)


def show_source(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Print ``fn``'s current source (hot-swapped code included) before each call."""
    name = label(fn)

    def before(args: tuple, kwargs: dict) -> None:
        emit(f"[source] {name}\n{_current_source(fn).rstrip()}")

    def after(token: None, result: Any, error: BaseException | None) -> None:
        return None

    return wraps_any(fn, before, after)
