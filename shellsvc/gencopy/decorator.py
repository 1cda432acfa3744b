"""``@resumable``: compile a generator function into its copyable, picklable twin."""

from __future__ import annotations

import functools
import inspect
import types
from typing import Any, Callable, TypeVar, overload

from .errors import UnsupportedGeneratorError
from .spec import CodeChange, spec_for_function
from .state import install_copy_hooks

__all__ = ["resumable"]

F = TypeVar("F", bound=Callable[..., Any])


@overload
def resumable(func: F) -> F: ...
@overload
def resumable(*, code_change: CodeChange | None = None) -> Callable[[F], F]: ...


def resumable(func: Any = None, *, code_change: CodeChange | None = None) -> Any:
    """Make a generator (or async generator) function produce copyable, picklable generators.

    The result is itself a plain generator function: calling it returns a *native*
    generator, so iteration, ``send``/``throw``/``close``, ``yield from`` and ``gi_*``
    introspection are the interpreter's own.  Those generators support ``copy.copy``,
    ``copy.deepcopy`` and ``pickle``.  Unsupported constructs raise
    :class:`UnsupportedGeneratorError` here, naming the construct and line.

    ``code_change(state) -> state`` migrates states pickled from older source.
    """
    if func is None:
        return functools.partial(resumable, code_change=code_change)
    target = getattr(func, "__func__", func)
    if not isinstance(target, types.FunctionType) or not (
        inspect.isgeneratorfunction(target) or inspect.isasyncgenfunction(target)
    ):
        raise UnsupportedGeneratorError(f"@resumable needs a generator function, got {func!r}")
    install_copy_hooks()
    spec = spec_for_function(target, code_change=code_change, register=True)
    impl = spec.make_impl(dict(zip(target.__code__.co_freevars, target.__closure__ or ())))
    impl.__defaults__ = target.__defaults__
    impl.__kwdefaults__ = target.__kwdefaults__
    impl.__doc__ = target.__doc__
    impl.__dict__.update(target.__dict__)
    impl.__annotations__ = dict(target.__annotations__)
    impl.__wrapped__ = target  # type: ignore[attr-defined]
    impl.__gencopy_spec__ = spec  # type: ignore[attr-defined]
    if isinstance(func, (staticmethod, classmethod)):
        return type(func)(impl)
    return impl
