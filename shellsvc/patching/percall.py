"""Per-call options: monkey patches, decorators and context managers for one call only.

``percall(fn, *args, monkey_patch=..., decorator=..., decorators=[...],
context_manager=..., **kwargs)`` calls ``fn(*args, **kwargs)`` exactly once with every
option in effect together. Monkey patches are scoped patches (this thread/task only);
decorators are applied in the order given (the first one innermost, as if applied one
after the other); context managers are entered in the order given, outermost first.
Names (``"timer"``, ``"patches.trace.tracer"``) are resolved with
:func:`~shellsvc.patching.resolve.resolve_patch`; a name that does not resolve raises.
"""

from __future__ import annotations

import contextlib
import inspect
import re
import types
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .errors import PatchRefused
from .resolve import resolve_patch
from .scoped import scoped_patch

__all__ = ["percall"]


_NAME = re.compile(r"^[A-Za-z_][\w.:]*$")


def _is_name(value: Any) -> bool:
    """A replacement string that is a dotted/short name (else it is source text)."""
    return isinstance(value, str) and bool(_NAME.match(value.strip()))


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _monkey_patches(spec: Any) -> list[tuple[Any, Any]]:
    """Normalise ``monkey_patch=`` to ``[(target, replacement), ...]``."""
    if spec is None:
        return []
    if isinstance(spec, Mapping):
        return list(spec.items())
    if isinstance(spec, tuple) and len(spec) == 2 and not isinstance(spec[0], tuple):
        return [spec]
    if isinstance(spec, Iterable) and not isinstance(spec, (str, bytes)):
        pairs = list(spec)
        if all(isinstance(p, tuple) and len(p) == 2 for p in pairs):
            return pairs
    raise PatchRefused(
        "monkey_patch= takes {target: replacement}, a (target, replacement) pair or a list of pairs; "
        f"got {type(spec).__name__} {spec!r:.60}"
    )


def _context_manager(item: Any) -> contextlib.AbstractContextManager[Any] | contextlib.AbstractAsyncContextManager[Any]:
    """A context manager, or the one a factory (e.g. a ``@contextmanager`` function) makes."""
    if hasattr(item, "__enter__") or hasattr(item, "__aenter__"):
        return item
    if callable(item):
        made = item()
        if hasattr(made, "__enter__") or hasattr(made, "__aenter__"):
            return made
    raise PatchRefused(f"context_manager= got {item!r}, which is neither a context manager nor a factory of one")


def _decorator(item: Any) -> Callable[..., Any]:
    deco = resolve_patch(item)
    if not callable(deco):
        raise PatchRefused(f"decorator {item!r} resolved to {deco!r}, which is not callable")
    return deco


def _prepare(
    fn: Callable[..., Any],
    monkey_patch: Any,
    decorator: Any,
    decorators: Any,
    context_manager: Any,
) -> tuple[Callable[..., Any], list[scoped_patch], list[Any]]:
    """Resolve every option before anything runs, so a bad name changes nothing.

    Order: names are resolved (decorators, monkey-patch targets and replacements, context
    managers), then decorators are applied and context-manager factories called.
    """
    decos = [_decorator(item) for item in _as_list(decorator) + _as_list(decorators)] if (
        decorator is not None or decorators is not None
    ) else _NONE
    patches = [
        scoped_patch(target, resolve_patch(repl) if _is_name(repl) else repl)
        for target, repl in _monkey_patches(monkey_patch)
    ] if monkey_patch is not None else _NONE
    managers = [resolve_patch(item) for item in _as_list(context_manager)] if context_manager is not None else _NONE
    wrapped = fn
    for deco in decos:
        wrapped = deco(wrapped)
    if managers:
        managers = [_context_manager(item) for item in managers]
    return wrapped, patches, managers


_NONE: list[Any] = []  # shared, never mutated: the common "option not given" case


def percall(
    fn: Callable[..., Any],
    /,
    *args: Any,
    monkey_patch: Any = None,
    decorator: Any = None,
    decorators: Any = None,
    context_manager: Any = None,
    **kwargs: Any,
) -> Any:
    """Call ``fn(*args, **kwargs)`` once, with the per-call options in effect.

    For a coroutine function the result is a coroutine (await it); the options stay in
    effect until it finishes. For a generator function, until it is exhausted.
    """
    wrapped, patches, managers = _prepare(fn, monkey_patch, decorator, decorators, context_manager)
    kind = _kind(fn)
    if kind == "coroutine":
        return _run_async(wrapped, patches, managers, args, kwargs)
    if kind == "async generator":
        return _run_async_gen(wrapped, patches, managers, args, kwargs)
    if kind == "generator":
        return _run_gen(wrapped, patches, managers, args, kwargs)
    if not managers:
        if not patches:
            return wrapped(*args, **kwargs)
        opened: list[scoped_patch] = []  # scopes only: cheaper than an ExitStack
        try:
            for patch in patches:
                patch.__enter__()
                opened.append(patch)
            return wrapped(*args, **kwargs)
        finally:
            for patch in reversed(opened):
                patch.__exit__(None, None, None)
    with contextlib.ExitStack() as stack:
        _enter_sync(stack, patches, managers)
        return wrapped(*args, **kwargs)


_ASYNC_OR_GEN = inspect.CO_COROUTINE | inspect.CO_GENERATOR | inspect.CO_ASYNC_GENERATOR


def _kind(fn: Any) -> str:
    """What calling ``fn`` returns; a cheap check for plain functions, ``inspect`` otherwise."""
    code = getattr(fn, "__code__", None)
    if isinstance(fn, types.FunctionType) and code is not None and not code.co_flags & _ASYNC_OR_GEN:
        return "function"
    if inspect.iscoroutinefunction(fn):
        return "coroutine"
    if inspect.isasyncgenfunction(fn):
        return "async generator"
    if inspect.isgeneratorfunction(fn):
        return "generator"
    return "function"


def _enter_sync(stack: contextlib.ExitStack, patches: list[scoped_patch], managers: list[Any]) -> None:
    for manager in managers:
        if not hasattr(manager, "__enter__"):
            raise PatchRefused(f"{manager!r} is an async context manager; use it with an async function")
        stack.enter_context(manager)
    for patch in patches:
        stack.enter_context(patch)


async def _enter_async(stack: contextlib.AsyncExitStack, patches: list[scoped_patch], managers: list[Any]) -> None:
    for manager in managers:
        if hasattr(manager, "__aenter__"):
            await stack.enter_async_context(manager)
        else:
            stack.enter_context(manager)
    for patch in patches:
        stack.enter_context(patch)


async def _run_async(wrapped: Callable[..., Any], patches: list[scoped_patch], managers: list[Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    async with contextlib.AsyncExitStack() as stack:
        await _enter_async(stack, patches, managers)
        result = wrapped(*args, **kwargs)
        return await result if inspect.isawaitable(result) else result


def _run_gen(wrapped: Callable[..., Any], patches: list[scoped_patch], managers: list[Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    with contextlib.ExitStack() as stack:
        _enter_sync(stack, patches, managers)
        return (yield from wrapped(*args, **kwargs))


async def _run_async_gen(wrapped: Callable[..., Any], patches: list[scoped_patch], managers: list[Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    async with contextlib.AsyncExitStack() as stack:
        await _enter_async(stack, patches, managers)
        async for item in wrapped(*args, **kwargs):
            yield item
