"""In-place instrumentation of a function: the trampoline behind scoped and per-call patches.

A function that takes part in scoped patches (or, for plugin methods, per-call keywords)
gets its ``__code__`` replaced once by an *instrumented* version of its own body: the
original instructions preceded by a tiny prologue::

    if <state>.active and <state>.lookup() is not None:   # scoped patches
        return <state>.lookup()(a, b, *args, c=c, **kw)
    if monkey_patch is not None or decorator is not None ...:  # per-call keywords
        return <state>.percall(<state>.fn, a, b, ..., monkey_patch=monkey_patch, ...)
    ... original body ...

``<state>`` is a constant of the code object, so an idle prologue costs one attribute
check and the function keeps its identity, signature and every reference to it. When the
function's source is unavailable (or does not match the running code) a generic
trampoline with the same parameters forwards to a clone of the original instead: slower,
equally correct. The *base* code (the real implementation) is tracked here so that hot
swaps replace the base and keep the instrumentation.
"""

from __future__ import annotations

import ast
import contextvars
import logging
import threading
import types
import weakref
from collections.abc import Callable
from typing import Any

from .errors import PatchError
from .compiling import (
    FunctionSource,
    Params,
    compile_function,
    forward_call,
    function_kind,
    return_forwarded,
    same_body,
    source_of_code,
    swap_constant,
)

__all__ = ["PERCALL_KEYWORDS", "FunctionState", "base_code", "instrumented", "set_base", "state_for"]

log = logging.getLogger(__name__)

PERCALL_KEYWORDS = ("monkey_patch", "decorator", "decorators", "context_manager")
_PLACEHOLDER = "__shellsvc_instrument_state_5b1e__"

#: Replacements active in the current thread/task context: FunctionState -> replacement.
active_replacements: contextvars.ContextVar[dict[FunctionState, Callable[..., Any]] | None] = (
    contextvars.ContextVar("shellsvc_scoped_patches", default=None)
)

_registry: weakref.WeakKeyDictionary[types.FunctionType, FunctionState] = weakref.WeakKeyDictionary()
_registry_lock = threading.RLock()
_percall: Callable[..., Any] | None = None


class FunctionState:
    """What the instrumented prologue of one function consults; also its bookkeeping."""

    __slots__ = (
        "__weakref__",
        "_cache",
        "active",
        "base",
        "base_defaults",
        "base_kwdefaults",
        "base_source",
        "clone",
        "fn",
        "lock",
        "percall_enabled",
        "scoped_enabled",
        "scopes",
        "uses_source",
    )

    def __init__(self, fn: types.FunctionType) -> None:
        self.fn = fn
        self.active = 0  # scopes currently open for this function, in any context
        self.scopes = active_replacements  # read by the instrumented prologue
        self.base: types.CodeType = fn.__code__
        self.base_source: FunctionSource | None = None
        self.base_defaults: tuple[Any, ...] | None = fn.__defaults__
        self.base_kwdefaults: dict[str, Any] | None = fn.__kwdefaults__
        self.scoped_enabled = False
        self.percall_enabled = False
        self.uses_source = False
        self.clone: Callable[..., Any] = fn
        self.lock = threading.RLock()
        self._cache: dict[tuple[int, bool, bool], tuple[types.CodeType, types.CodeType, bool]] = {}

    def lookup(self) -> Callable[..., Any] | None:
        """The replacement active for this function in the current context, if any."""
        current = active_replacements.get()
        return None if current is None else current.get(self)

    def call(self, *args: Any, **kwargs: Any) -> Any:
        """Generic-trampoline entry: replacement if one is active here, else the original."""
        if self.active:
            replacement = self.lookup()
            if replacement is not None:
                return replacement(*args, **kwargs)
        return self.clone(*args, **kwargs)

    @staticmethod
    def percall(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        global _percall
        if _percall is None:
            from .percall import percall as _percall  # circular at import time only
        return _percall(fn, *args, **kwargs)

    def __repr__(self) -> str:
        return f"<FunctionState of {self.fn.__module__}.{self.fn.__qualname__}>"

    # -- building -----------------------------------------------------------------

    @property
    def needs_instrumentation(self) -> bool:
        """Per-call keywords always need the prologue; scoped patches only while a scope is open."""
        return self.percall_enabled or (self.scoped_enabled and self.active > 0)

    def rebuild(self) -> None:
        """Install the code for the current base and needs (call with ``lock`` held).

        A function that only takes part in scoped patches runs its plain base code
        while no scope is open anywhere - zero overhead - and the instrumented code
        (cached per base) from the moment the first scope opens until the last closes.
        """
        fn = self.fn
        if not self.needs_instrumentation:
            self._refresh_clone()
            self._install(self.base, self.base_defaults, self.base_kwdefaults)
            return
        key = (id(self.base), self.scoped_enabled, self.percall_enabled)
        cached = self._cache.get(key)
        if cached is None or cached[0] is not self.base:
            code, uses_source = self._build()
            cached = (self.base, code, uses_source)
            self._cache[key] = cached
        code, self.uses_source = cached[1], cached[2]
        self._refresh_clone()
        defaults = self.base_defaults
        kwdefaults = dict(self.base_kwdefaults or {})
        if self.percall_enabled:
            if self._percall_positional():
                defaults = (defaults or ()) + (None,) * len(PERCALL_KEYWORDS)
            else:
                kwdefaults.update(dict.fromkeys(PERCALL_KEYWORDS))
        self._install(code, defaults, kwdefaults or None)

    def _install(self, code: types.CodeType, defaults: tuple[Any, ...] | None, kwdefaults: dict[str, Any] | None) -> None:
        # Defaults first when parameters are added, code first when they are removed: a
        # call in between then finds spare defaults (harmless) rather than missing ones.
        fn = self.fn
        if fn.__code__ is code and fn.__defaults__ is defaults and fn.__kwdefaults__ == kwdefaults:
            return
        grows = code.co_argcount + code.co_kwonlyargcount >= fn.__code__.co_argcount + fn.__code__.co_kwonlyargcount
        if grows:
            fn.__defaults__, fn.__kwdefaults__ = defaults, kwdefaults
            fn.__code__ = code
        else:
            fn.__code__ = code
            fn.__defaults__, fn.__kwdefaults__ = defaults, kwdefaults

    def _percall_positional(self) -> bool:
        """Add the per-call keywords as trailing positional-or-keyword parameters?

        Keyword-only parameters would make CPython skip its call specialisation for the
        method (about 2x slower per call); trailing parameters with defaults keep the
        fast path. Only possible when the method has no ``*args``/keyword-only/``**kw``.
        """
        return Params.of(self.base).simple

    def _refresh_clone(self) -> None:
        clone = self.clone
        if (
            clone is self.fn
            or clone.__code__ is not self.base  # type: ignore[attr-defined]
            or clone.__defaults__ is not self.base_defaults  # type: ignore[attr-defined]
            or clone.__kwdefaults__ is not self.base_kwdefaults  # type: ignore[attr-defined]
        ):
            self.clone = self._make_clone()

    def _make_clone(self) -> Callable[..., Any]:
        fn = self.fn
        clone = types.FunctionType(self.base, fn.__globals__, fn.__name__, self.base_defaults, fn.__closure__)
        clone.__kwdefaults__ = self.base_kwdefaults
        clone.__qualname__ = fn.__qualname__
        clone.__module__ = fn.__module__
        clone.__doc__ = fn.__doc__
        return clone

    def _build(self) -> tuple[types.CodeType, bool]:
        base = self.base
        source = self.base_source
        if source is None:
            source = source_of_code(base)
            if source is not None and not self._matches(source):
                log.debug("source of %s does not match the running code; using a generic trampoline", self)
                source = None
        if source is not None:
            try:
                return self._compile(source, with_body=True), True
            except (SyntaxError, PatchError) as exc:  # pragma: no cover - the source compiled once already
                log.warning("could not instrument %s from its source (%s); using a generic trampoline", self, exc)
        return self._compile(self._generic_source(), with_body=False), False

    def _matches(self, source: FunctionSource) -> bool:
        try:
            code, _ = compile_function(
                source,
                freevars=self.base.co_freevars,
                class_name=_class_name(self.fn),
                future_flags=self.base.co_flags,
            )
        except (SyntaxError, PatchError):
            return False
        return same_body(code, self.base)

    def _prologue(self, params: Params, kind: str, generic: bool) -> list[ast.stmt]:
        state = ast.Constant(_PLACEHOLDER)
        stmts: list[ast.stmt] = []
        if self.percall_enabled:
            test = ast.BoolOp(
                ast.Or(),
                [ast.Compare(ast.Name(k, ast.Load()), [ast.IsNot()], [ast.Constant(None)]) for k in PERCALL_KEYWORDS],
            )
            call = forward_call(ast.Attribute(state, "percall", ast.Load()), params, dict(zip(PERCALL_KEYWORDS, PERCALL_KEYWORDS)))
            call.args.insert(0, ast.Attribute(state, "fn", ast.Load()))
            stmts.append(ast.If(test, return_forwarded(call, kind), []))
        if generic:
            call = forward_call(ast.Attribute(state, "call", ast.Load()), params)
            stmts.extend(return_forwarded(call, kind))
        elif self.scoped_enabled:
            # Inline lookup (no Python-level call) so callers without a scope of their
            # own pay little while another thread/task has one open.
            template = ast.parse(
                f"if {_PLACEHOLDER!r}.active:\n"
                f"    __shellsvc_scope__ = {_PLACEHOLDER!r}.scopes.get()\n"
                "    if __shellsvc_scope__ is not None:\n"
                f"        __shellsvc_replacement__ = __shellsvc_scope__.get({_PLACEHOLDER!r})\n"
                "        if __shellsvc_replacement__ is not None:\n"
                "            pass\n"
            ).body[0]
            innermost = template.body[1].body[1]  # type: ignore[attr-defined]
            call = forward_call(ast.Name("__shellsvc_replacement__", ast.Load()), params)
            innermost.body = return_forwarded(call, kind)
            stmts.append(template)
        return stmts

    def _compile(self, source: FunctionSource, *, with_body: bool) -> types.CodeType:
        base = self.base
        params = Params.of(base)
        kind = function_kind(base)
        prologue = self._prologue(params, kind, generic=not with_body)
        positional = self.percall_enabled and self._percall_positional()
        extra = PERCALL_KEYWORDS if self.percall_enabled and not positional else ()
        code, _ = compile_function(
            source,
            freevars=base.co_freevars,
            class_name=_class_name(self.fn),
            future_flags=base.co_flags,
            prologue=prologue,
            extra_kwonly=extra,
            extra_positional=PERCALL_KEYWORDS if positional else (),
            pad_freevars=not with_body,
            name=base.co_name,
            qualname=base.co_qualname,
        )
        if code.co_freevars != base.co_freevars:  # pragma: no cover - compile_function keeps them
            raise SyntaxError(f"instrumented code of {self} changed its free variables")
        return swap_constant(code, _PLACEHOLDER, self)

    def _generic_source(self) -> FunctionSource:
        base = self.base
        params = Params.of(base)
        prefix = "async def" if base.co_flags & (0x80 | 0x200) else "def"
        body = "pass"
        text = f"{prefix} {base.co_name}({params.signature_text()}):\n    {body}\n"
        node = ast.parse(text).body[0]
        node.body = []  # the prologue supplies the whole body
        ast.increment_lineno(node, base.co_firstlineno - 1)
        return FunctionSource(node, base.co_filename, text)  # type: ignore[arg-type]


def _class_name(fn: types.FunctionType) -> str | None:
    """The innermost class in ``fn``'s qualname (needed for name mangling), if any."""
    parts = fn.__qualname__.split(".")[:-1]
    for part in reversed(parts):
        if part != "<locals>":
            return part if not part.startswith("<") else None
        break
    return None


def state_for(fn: types.FunctionType, create: bool = True) -> FunctionState | None:
    """The instrumentation state of ``fn`` (created on first use when ``create``)."""
    with _registry_lock:
        state = _registry.get(fn)
        if state is None and create:
            state = _registry[fn] = FunctionState(fn)
        return state


def instrumented(fn: types.FunctionType) -> bool:
    """Whether ``fn`` currently runs instrumented code."""
    return _registry.get(fn) is not None


def base_code(fn: types.FunctionType) -> types.CodeType:
    """The code that really implements ``fn`` (its ``__code__`` unless instrumented)."""
    state = _registry.get(fn)
    return fn.__code__ if state is None else state.base


def base_defaults(fn: types.FunctionType) -> tuple[Any, ...] | None:
    state = _registry.get(fn)
    return fn.__defaults__ if state is None else state.base_defaults


def base_kwdefaults(fn: types.FunctionType) -> dict[str, Any] | None:
    state = _registry.get(fn)
    return fn.__kwdefaults__ if state is None else state.base_kwdefaults


def set_base(
    fn: types.FunctionType,
    code: types.CodeType,
    source: FunctionSource | None,
    defaults: tuple[Any, ...] | None,
    kwdefaults: dict[str, Any] | None,
) -> None:
    """Make ``code`` (with these defaults) the implementation of ``fn``, keeping any instrumentation."""
    state = _registry.get(fn)
    if state is None:
        grows = code.co_argcount + code.co_kwonlyargcount >= fn.__code__.co_argcount + fn.__code__.co_kwonlyargcount
        if grows:
            fn.__defaults__, fn.__kwdefaults__ = defaults, kwdefaults
            fn.__code__ = code
        else:
            fn.__code__ = code
            fn.__defaults__, fn.__kwdefaults__ = defaults, kwdefaults
        return
    with state.lock:
        state.base = code
        state.base_source = source
        state.base_defaults = defaults
        state.base_kwdefaults = kwdefaults
        state.rebuild()


def enable(fn: types.FunctionType, *, scoped: bool = False, percall: bool = False) -> FunctionState:
    """Instrument ``fn`` for scoped patches and/or per-call keywords (idempotent)."""
    state = state_for(fn)
    assert state is not None
    with state.lock:
        changed = (scoped and not state.scoped_enabled) or (percall and not state.percall_enabled)
        if changed:
            state.scoped_enabled |= scoped
            state.percall_enabled |= percall
            state.rebuild()
    return state
