"""Turn whatever an admin points at into the function object that really holds the code."""

from __future__ import annotations

import functools
import inspect
import types
from typing import Any

from .errors import PatchRefused
from .resolve import resolve_target

__all__ = ["describe", "dotted_path", "unwrap_function"]


def unwrap_function(target: Any) -> types.FunctionType:
    """The plain function whose ``__code__`` implements ``target``.

    Accepts functions (sync, async, generators), bound methods, ``classmethod`` /
    ``staticmethod`` objects, decorated functions (followed through ``__wrapped__``) and
    dotted names. Refuses builtins, partials and other callables with a reason.
    """
    if isinstance(target, str):
        target = resolve_target(target)
    seen: set[int] = set()
    while id(target) not in seen:
        seen.add(id(target))
        if isinstance(target, types.FunctionType):
            wrapped = getattr(target, "__wrapped__", None)
            if wrapped is None:
                return target
            target = wrapped
        elif isinstance(target, (types.MethodType, classmethod, staticmethod)):
            target = target.__func__
        elif hasattr(target, "__wrapped__"):  # lru_cache, wrapt proxies, other C wrappers
            target = target.__wrapped__
        else:
            break
    if isinstance(target, functools.partial):
        raise PatchRefused(f"{target!r} is a functools.partial; patch the function it wraps ({describe(target.func)})")
    if isinstance(target, type):
        raise PatchRefused(f"{target.__qualname__} is a class; use hotswap() to add or replace its methods")
    if isinstance(target, (types.BuiltinFunctionType, types.MethodDescriptorType, types.WrapperDescriptorType)):
        raise PatchRefused(f"{describe(target)} is implemented in C and has no Python code to replace")
    if isinstance(target, property):
        raise PatchRefused("a property is not a function; patch its getter (e.g. Cls.prop.fget) instead")
    raise PatchRefused(
        f"cannot patch {describe(target)} ({type(target).__name__}): only Python functions, methods and classes have code to swap"
    )


def describe(obj: Any) -> str:
    """``module.qualname`` of an object, for messages."""
    module = getattr(obj, "__module__", None) or "?"
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or repr(obj)
    return f"{module}.{name}"


def dotted_path(obj: Any) -> str | None:
    """A dotted path that resolves back to ``obj`` after a restart, or None.

    Functions defined inside other functions (``<locals>``) have none.
    """
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not module or not qualname or "<locals>" in qualname or "<" in module:
        return None
    return f"{module}:{qualname}"


def defining_class(fn: types.FunctionType) -> type | None:
    """The class a method was defined in, found through its module and qualname."""
    parts = fn.__qualname__.split(".")
    if len(parts) < 2 or "<locals>" in parts:
        return None
    module = inspect.getmodule(fn)
    obj: Any = module
    for part in parts[:-1]:
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj if isinstance(obj, type) else None
