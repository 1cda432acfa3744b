"""Scoped patches: a replacement that only the current thread / asyncio task sees.

``unittest.mock.patch`` rebinds a name for the whole process, so one operator's
experiment leaks into every concurrent request. Here the *function object* is instrumented
once (see :mod:`shellsvc.patching.instrument`) and consults a ContextVar of active
replacements, so every reference to it - from-imports, bound methods, stored callbacks -
sees the replacement inside the scope and only there::

    with scoped_patch("app.pricing.discount", lambda order: 0):
        checkout(order)          # discount() returns 0 here, in this thread/task only
"""

from __future__ import annotations

import contextvars
import types
from collections.abc import Callable
from typing import Any

from . import instrument
from .errors import PatchRefused
from .hotswap import compile_replacement
from .resolve import resolve_patch
from .targets import unwrap_function

__all__ = ["original", "scoped_patch"]


def _replacement_callable(
    fn: types.FunctionType, replacement: Callable[..., Any] | str | None, decorator: Any
) -> Callable[..., Any]:
    if replacement is None and decorator is None:
        raise PatchRefused(f"scoped_patch({fn.__qualname__}) needs a replacement or a decorator")
    if isinstance(replacement, str):
        replacement = _compile_replacement(fn, replacement)
    if replacement is not None and not callable(replacement):
        raise PatchRefused(f"replacement for {fn.__qualname__} must be callable or source text, not {type(replacement).__name__}")
    impl: Callable[..., Any] = replacement if replacement is not None else original(fn)
    if decorator is not None:
        decorators = decorator if isinstance(decorator, (list, tuple)) else [decorator]
        for item in decorators:
            impl = resolve_patch(item)(impl)
    return impl


def _compile_replacement(fn: types.FunctionType, text: str) -> Callable[..., Any]:
    """Compile replacement source into a new function living in ``fn``'s module globals."""
    compiled = compile_replacement(fn, text)
    new = types.FunctionType(compiled.code, fn.__globals__, fn.__name__, compiled.defaults, fn.__closure__)
    new.__kwdefaults__ = compiled.kwdefaults
    return new


def original(target: Any) -> Callable[..., Any]:
    """A callable running ``target``'s real implementation, bypassing scoped patches.

    Use it inside a replacement to call through: ``lambda x: original(f)(x) * 2``.
    """
    fn = unwrap_function(target)
    state = instrument.state_for(fn, create=False)
    return fn if state is None else state.clone


class scoped_patch:
    """Within this ``with`` block, in this thread/task only, ``target`` runs ``replacement``.

    ``target`` is a function, method, bound method, classmethod/staticmethod or a dotted
    name; decorated functions are followed through ``__wrapped__`` (the decorators still
    run around the replacement). ``replacement`` is a callable or source text; with
    ``decorator=`` (an object, a dotted/short name, or a list) the original implementation
    is wrapped instead, e.g. ``scoped_patch(f, decorator="timer")``. ``__enter__`` returns
    the active replacement. Works in ``async`` code too: each asyncio task has its own
    context. Not reentrant: use one object per ``with``.
    """

    __slots__ = ("_impl", "_state", "_token")

    def __init__(self, target: Any, replacement: Callable[..., Any] | str | None = None, *, decorator: Any = None) -> None:
        fn = unwrap_function(target)
        # Everything that can fail happens here, before the scope opens.
        self._state = instrument.enable(fn, scoped=True)
        self._impl = _replacement_callable(fn, replacement, decorator)
        self._token: contextvars.Token[Any] | None = None

    def __enter__(self) -> Callable[..., Any]:
        if self._token is not None:
            raise RuntimeError("this scoped_patch is already active; create a new one for a nested scope")
        current = instrument.active_replacements.get()
        scope = dict(current) if current else {}
        scope[self._state] = self._impl
        state = self._state
        with state.lock:
            state.scope_opened()  # the first scope anywhere installs the trampoline
        self._token = instrument.active_replacements.set(scope)
        return self._impl

    def __exit__(self, *exc: object) -> None:
        token, self._token = self._token, None
        assert token is not None
        instrument.active_replacements.reset(token)
        state = self._state
        with state.lock:
            state.scope_closed()  # the last one puts the original code back
