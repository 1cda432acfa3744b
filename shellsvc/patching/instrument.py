"""In-place instrumentation of a function: the trampoline behind scoped and per-call patches.

A function that takes part in scoped patches (or, for plugin methods, per-call keywords)
gets its ``__code__`` replaced by an *instrumented* version of its own body: the original
instructions preceded by a small prologue::

    if __shellsvc_overflow__ is not <state>.not_given or monkey_patch is not None ...:
        return <state>.percall_or_overflow(__shellsvc_overflow__, monkey_patch, ..., a, b)
    __shellsvc_scope__ = <active_replacements>.get()           # scoped patches
    if __shellsvc_scope__ is not None:
        __shellsvc_replacement__ = __shellsvc_scope__.get(<state>)
        if __shellsvc_replacement__ is not None:
            return __shellsvc_replacement__(a, b, *args, c=c, **kw)
    ... original body ...

``<state>`` is a constant of the code object, so the function keeps its identity
and every reference to it, and an idle prologue costs one ContextVar read (the
only way to tell one thread/task from another). For scoped patches the prologue is only
installed while a scope is open somewhere: with none open the function runs its exact
original code object. When the function's source is unavailable (or does not match the
running code) a generic trampoline with the same parameters runs the same prologue and
then forwards to a clone of the original: one extra call, equally correct. The *base*
code (the real implementation) is tracked here so that hot swaps replace the base and
keep the instrumentation.

Per-call keywords are trailing parameters with defaults, not keyword-only ones: CPython
3.11 only specialises calls to functions without keyword-only parameters, and losing that
costs more than the whole prologue. So that a positional argument too many can never land
in ``monkey_patch`` (and run as a patch), a hidden parameter ``__shellsvc_overflow__``
sits between the function's own parameters and the keywords: anything in it is an
argument the original would have refused, and the prologue raises the TypeError the
original raises. Coroutine and generator functions take the keywords keyword-only
instead: their prologue only runs on the first ``send``, but CPython must refuse a wrong
call when it is made. ``inspect.signature`` shows the function's own parameters followed
by the keywords, keyword-only. Compiled prologues are cached per base code object, so a
class re-created from unchanged code (a plugin reload) is prepared without compiling.
"""

from __future__ import annotations

import ast
import contextvars
import functools
import inspect
import logging
import threading
import types
import weakref
from collections.abc import Callable
from typing import Any, NoReturn

from .errors import PatchError
from .compiling import (
    FunctionSource,
    Params,
    compile_function,
    forward_call,
    function_kind,
    class_name_of,
    return_forwarded,
    running_source,
    swap_constant,
)

__all__ = ["OVERFLOW_PARAMETER", "PERCALL_KEYWORDS", "FunctionState", "base_code", "instrumented", "set_base", "state_for"]

log = logging.getLogger(__name__)

PERCALL_KEYWORDS = ("monkey_patch", "decorator", "decorators", "context_manager")
#: The hidden parameter that catches a positional argument too many (see the module docstring).
OVERFLOW_PARAMETER = "__shellsvc_overflow__"
#: *args, **kw, generator, coroutine, async generator: per-call keywords go keyword-only.
_NOT_SIMPLE = (
    inspect.CO_VARARGS | inspect.CO_VARKEYWORDS | inspect.CO_GENERATOR | inspect.CO_COROUTINE
    | inspect.CO_ASYNC_GENERATOR | inspect.CO_ITERABLE_COROUTINE
)
_PLACEHOLDER = "__shellsvc_instrument_state_5b1e__"
_FORWARD_PLACEHOLDER = "__shellsvc_instrument_forward_5b1e__"
#: Stands for the ContextVar ``active_replacements``: the prologue reads it as a constant
#: of its code, one attribute load fewer per call than ``<state>.scopes``.
_SCOPES_PLACEHOLDER = "__shellsvc_instrument_scopes_5b1e__"

#: Replacements active in the current thread/task context: FunctionState -> replacement.
active_replacements: contextvars.ContextVar[dict[FunctionState, Callable[..., Any]] | None] = (
    contextvars.ContextVar("shellsvc_scoped_patches", default=None)
)

#: id(function) -> its state. The state holds the function only weakly (its code holds the
#: state), so an instrumented function - e.g. a method of an unloaded plugin version - is
#: freed like any other; a weakref callback then drops the entry.
_registry: dict[int, FunctionState] = {}
_registry_lock = threading.RLock()
_percall: Callable[..., Any] | None = None


class _NotGiven:
    """Default of the overflow parameter: only a positional argument too many replaces it."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<not given>"


NOT_GIVEN = _NotGiven()

#: base code -> {(scoped, percall, keywords positional, class name): (code, built from source)}.
#: The code still holds the placeholders (no state, no function): shared by every function
#: running that base - a plugin class re-created from unchanged code compiles nothing.
_templates: weakref.WeakKeyDictionary[types.CodeType, dict[tuple[Any, ...], tuple[types.CodeType, bool]]] = (
    weakref.WeakKeyDictionary()
)


_KEEPALIVE = "__shellsvc_original__"


class _Forward:
    """Holds the clone a generic trampoline forwards to; only that trampoline's code refers to it.

    The cycle ``fn -> code -> _Forward -> clone -> globals -> fn`` runs through a code
    object, which the garbage collector does not traverse: it would never be freed. So
    when the trampoline stays installed for good (per-call keywords), the clone is held
    through a weak proxy and kept alive by ``fn.__dict__`` instead, an ordinary cycle.
    """

    __slots__ = ("clone",)

    def __init__(self, fn: types.FunctionType, clone: types.FunctionType, permanent: bool) -> None:
        if permanent:
            fn.__dict__[_KEEPALIVE] = clone
            self.clone: Callable[..., Any] = weakref.proxy(clone)
        else:
            self.clone = clone


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
        "_clone_ref",
        "_fast",
        "_fn_ref",
        "lock",
        "not_given",
        "percall_enabled",
        "scoped_enabled",
        "scopes",
        "uses_source",
    )

    def __init__(self, fn: types.FunctionType) -> None:
        self._fn_ref = weakref.ref(fn, functools.partial(_forget, id(fn)))
        self.active = 0  # scopes currently open for this function, in any context
        self.not_given = NOT_GIVEN  # likewise: a slot, the fastest attribute to read
        self.base: types.CodeType = fn.__code__
        self.base_source: FunctionSource | None = None
        self.base_defaults: tuple[Any, ...] | None = fn.__defaults__
        self.base_kwdefaults: dict[str, Any] | None = fn.__kwdefaults__
        self.scoped_enabled = False
        self.percall_enabled = False
        self.uses_source = False
        # The state must not reach ``fn`` (nor its module's globals) through strong
        # references, or the registry would keep every instrumented function alive.
        self._clone_ref: weakref.ReferenceType[types.FunctionType] | None = None
        self.lock = threading.RLock()
        self._cache: dict[tuple[int, bool, bool], tuple[types.CodeType, types.CodeType]] = {}
        self._fast: tuple[types.CodeType, types.CodeType] | None = None  # (base, scoped code) to flip between

    @property
    def fn(self) -> types.FunctionType:
        fn = self._fn_ref()
        if fn is None:  # pragma: no cover - only its own code can reach a state, which keeps it alive
            raise ReferenceError("the instrumented function no longer exists")
        return fn

    def lookup(self) -> Callable[..., Any] | None:
        """The replacement active for this function in the current context, if any."""
        current = active_replacements.get()
        return None if current is None else current.get(self)

    @staticmethod
    def percall(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        global _percall
        if _percall is None:
            from .percall import percall as _percall  # circular at import time only
        return _percall(fn, *args, **kwargs)

    def percall_or_overflow(
        self, overflow: Any, monkey_patch: Any, decorator: Any, decorators: Any, context_manager: Any, *args: Any
    ) -> Any:
        """Where the prologue of a function with positional per-call keywords goes when one is set."""
        if overflow is not NOT_GIVEN:
            self.refuse_overflow(args, overflow, (monkey_patch, decorator, decorators, context_manager))
        return self.percall(
            self.fn, *args, monkey_patch=monkey_patch, decorator=decorator, decorators=decorators,
            context_manager=context_manager,
        )

    def refuse_overflow(self, args: tuple[Any, ...], overflow: Any, options: tuple[Any, ...]) -> NoReturn:
        """Raise the TypeError the original raises when given too many positional arguments.

        The first argument too many is in the overflow parameter, the next ones in the
        keyword slots up to the first one still ``None``; the original is then called with
        them all, and CPython refuses the call before running any of it, with its own
        message. (A keyword given by name next to an argument too many is counted as one
        more positional argument: the call is wrong either way.)
        """
        given = [*args, overflow]
        for value in options:
            if value is None:
                break
            given.append(value)
        clone = self.clone
        if len(given) > clone.__code__.co_argcount:  # always: no *args in this mode
            try:
                clone(*given)
            except TypeError as exc:
                raise exc.with_traceback(None) from None
        raise TypeError(f"{clone.__qualname__}() got {len(given)} positional arguments, more than it takes")

    def own_signature(self) -> inspect.Signature:
        """The signature of the base code with the base defaults and the function's annotations."""
        fn = self.fn
        own = types.FunctionType(self.base, fn.__globals__, fn.__name__, self.base_defaults, fn.__closure__)
        own.__kwdefaults__ = self.base_kwdefaults
        own.__annotations__ = fn.__annotations__
        return inspect.signature(own)

    def __repr__(self) -> str:
        fn = self._fn_ref()
        return f"<FunctionState of {fn.__module__}.{fn.__qualname__}>" if fn is not None else "<FunctionState (freed)>"

    # -- scopes -------------------------------------------------------------------

    def scope_opened(self) -> None:
        """Count a scope; the first one installs the instrumented code (call with ``lock`` held)."""
        self.active += 1
        if self.active == 1 and not self.percall_enabled:
            fn, fast = self.fn, self._fast
            if fast is not None and fn.__code__ is fast[0]:
                fn.__code__ = fast[1]  # the common case: flip to the cached instrumented code
            else:
                self.rebuild()
                if self.uses_source:  # a generic trampoline reaches fn's globals: never kept here
                    self._fast = (self.base, fn.__code__)

    def scope_closed(self) -> None:
        """Uncount a scope; the last one puts the exact base code back (call with ``lock`` held)."""
        self.active -= 1
        if self.active == 0 and not self.percall_enabled:
            fn, fast = self.fn, self._fast
            if fast is not None and fn.__code__ is fast[1]:
                fn.__code__ = fast[0]
            else:
                self.rebuild()


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
        Generic trampolines are not cached: they hold a clone of the function, whose
        globals would keep the function (and its module) alive through the registry.
        """
        self._fast = None
        positional = self.percall_enabled and self._percall_positional()
        if not self.needs_instrumentation:
            self._install(self.base, self.base_defaults, self.base_kwdefaults)
            self._set_signature(False)
            return
        key = (id(self.base), self.scoped_enabled, self.percall_enabled)
        cached = self._cache.get(key)
        if cached is not None and cached[0] is self.base:
            code, self.uses_source = cached[1], True
        else:
            code, self.uses_source = self._build(positional)
            if self.uses_source:
                self._cache[key] = (self.base, code)
        defaults = self.base_defaults
        kwdefaults = dict(self.base_kwdefaults or {})
        if self.percall_enabled:
            if positional:
                defaults = (defaults or ()) + (NOT_GIVEN,) + (None,) * len(PERCALL_KEYWORDS)
            else:
                kwdefaults.update(dict.fromkeys(PERCALL_KEYWORDS))
        self._install(code, defaults, kwdefaults or None)
        self._set_signature(positional)

    def _set_signature(self, positional: bool) -> None:
        """Hide the overflow parameter from ``inspect.signature`` (and so from the console)."""
        fn = self.fn
        own = fn.__dict__.get("__signature__")
        if own is not None and not isinstance(own, _PreparedSignature):
            return  # the author's own __signature__ wins
        if positional:
            fn.__signature__ = _PreparedSignature(self)  # type: ignore[attr-defined]
        elif own is not None:
            del fn.__signature__  # type: ignore[attr-defined]

    def _install(self, code: types.CodeType, defaults: tuple[Any, ...] | None, kwdefaults: dict[str, Any] | None) -> None:
        fn = self.fn
        if fn.__code__ is code and fn.__defaults__ is defaults and fn.__kwdefaults__ == kwdefaults:
            return
        _swap_code(fn, code, defaults, kwdefaults)

    def _percall_positional(self) -> bool:
        """Add the per-call keywords as trailing positional-or-keyword parameters?

        Keyword-only parameters would make CPython skip its call specialisation for the
        method (2-3x slower per call on a trivial body); trailing parameters with defaults (behind the
        overflow parameter) keep the fast path. Only for plain functions without
        ``*args``/keyword-only/``**kw``: a generator or coroutine runs its prologue late,
        so only keyword-only parameters make CPython refuse a wrong call when it is made.
        """
        flags = self.base.co_flags
        return not (flags & _NOT_SIMPLE) and not self.base.co_kwonlyargcount

    @property
    def clone(self) -> types.FunctionType:
        """A separate function running the base code with the base defaults: the original.

        Made on demand and held weakly (a caller keeps it alive while it needs it).
        """
        clone = self._clone_ref() if self._clone_ref is not None else None
        if (
            clone is None
            or clone.__code__ is not self.base
            or clone.__defaults__ is not self.base_defaults
            or clone.__kwdefaults__ is not self.base_kwdefaults
        ):
            fn = self.fn
            clone = types.FunctionType(self.base, fn.__globals__, fn.__name__, self.base_defaults, fn.__closure__)
            clone.__kwdefaults__ = self.base_kwdefaults
            clone.__qualname__ = fn.__qualname__
            clone.__module__ = fn.__module__
            clone.__doc__ = fn.__doc__
            self._clone_ref = weakref.ref(clone)
        return clone

    def _build(self, positional: bool) -> tuple[types.CodeType, bool]:
        """The instrumented code for this function: a cached template, bound to this state."""
        base = self.base
        class_name = class_name_of(self.fn)
        # Code objects compare by content: a class re-created from an unchanged file (even
        # recompiled) shares the template; file and qualname keep look-alikes elsewhere apart.
        key = (self.scoped_enabled, self.percall_enabled, positional, class_name, base.co_filename, base.co_qualname)
        with _registry_lock:
            templates = _templates.get(base)
            found = templates.get(key) if templates is not None else None
        if found is None:
            found = self._template(class_name, positional)
            with _registry_lock:
                _templates.setdefault(base, {})[key] = found
        template, uses_source = found
        code = swap_constant(template, _PLACEHOLDER, self)
        if self.scoped_enabled:
            code = swap_constant(code, _SCOPES_PLACEHOLDER, active_replacements)
        if not uses_source:
            code = swap_constant(code, _FORWARD_PLACEHOLDER, _Forward(self.fn, self.clone, self.percall_enabled))
        return code, uses_source

    def _template(self, class_name: str | None, positional: bool) -> tuple[types.CodeType, bool]:
        base = self.base
        source = self.base_source
        if source is None:
            source = running_source(base, class_name)
            if source is None:
                log.debug("no source matching the running code of %s; using a generic trampoline", self)
        if source is not None:
            try:
                return self._compile(source, class_name, positional, with_body=True), True
            except (SyntaxError, PatchError) as exc:  # pragma: no cover - the source compiled once already
                log.warning("could not instrument %s from its source (%s); using a generic trampoline", self, exc)
        return self._compile(self._generic_source(), class_name, positional, with_body=False), False

    def _prologue(self, params: Params, kind: str, generic: bool, positional: bool) -> list[ast.stmt]:
        state = ast.Constant(_PLACEHOLDER)
        stmts: list[ast.stmt] = []
        if self.percall_enabled:
            # ``x is not None`` compiles to one LOAD_FAST + POP_JUMP_IF_NOT_NONE each.
            checks: list[ast.expr] = [
                ast.Compare(ast.Name(k, ast.Load()), [ast.IsNot()], [ast.Constant(None)]) for k in PERCALL_KEYWORDS
            ]
            if positional:
                # Compared with a slot of the state, not a constant: ``is not <constant>``
                # would make the compiler print a SyntaxWarning.
                not_given = ast.Attribute(state, "not_given", ast.Load())
                checks.insert(0, ast.Compare(ast.Name(OVERFLOW_PARAMETER, ast.Load()), [ast.IsNot()], [not_given]))
                names = (OVERFLOW_PARAMETER, *PERCALL_KEYWORDS, *params.positional)
                call = ast.Call(
                    ast.Attribute(state, "percall_or_overflow", ast.Load()), [ast.Name(n, ast.Load()) for n in names], []
                )
            else:
                call = forward_call(
                    ast.Attribute(state, "percall", ast.Load()), params, dict(zip(PERCALL_KEYWORDS, PERCALL_KEYWORDS))
                )
                call.args.insert(0, ast.Attribute(state, "fn", ast.Load()))
            stmts.append(ast.If(ast.BoolOp(ast.Or(), checks), return_forwarded(call, kind), []))
        if self.scoped_enabled:
            # Inline lookup (no Python-level call): a caller without a scope of its own
            # pays one ContextVar read while another thread/task has one open. Without
            # per-call keywords this code is only installed while a scope is open, so the
            # ``active`` test would be redundant; with them it skips the read when idle.
            lookup = ast.parse(
                f"__shellsvc_scope__ = {_SCOPES_PLACEHOLDER!r}.get()\n"
                "if __shellsvc_scope__ is not None:\n"
                f"    __shellsvc_replacement__ = __shellsvc_scope__.get({_PLACEHOLDER!r})\n"
                "    if __shellsvc_replacement__ is not None:\n"
                "        pass\n"
            ).body
            innermost = lookup[1].body[1]  # type: ignore[attr-defined]
            call = forward_call(ast.Name("__shellsvc_replacement__", ast.Load()), params)
            innermost.body = return_forwarded(call, kind)
            if self.percall_enabled:
                lookup = [ast.If(ast.Attribute(ast.Constant(_PLACEHOLDER), "active", ast.Load()), lookup, [])]
            stmts.extend(lookup)
        if generic:
            call = forward_call(ast.Attribute(ast.Constant(_FORWARD_PLACEHOLDER), "clone", ast.Load()), params)
            stmts.extend(return_forwarded(call, kind))
        return stmts

    def _compile(self, source: FunctionSource, class_name: str | None, positional: bool, *, with_body: bool) -> types.CodeType:
        """Compile the instrumented code, placeholders still in (see :meth:`_build`)."""
        base = self.base
        params = Params.of(base)
        kind = function_kind(base)
        prologue = self._prologue(params, kind, not with_body, positional)
        extra = PERCALL_KEYWORDS if self.percall_enabled and not positional else ()
        code, _ = compile_function(
            source,
            freevars=base.co_freevars,
            class_name=class_name,
            future_flags=base.co_flags,
            prologue=prologue,
            extra_kwonly=extra,
            extra_positional=(OVERFLOW_PARAMETER, *PERCALL_KEYWORDS) if positional else (),
            pad_freevars=not with_body,
            name=base.co_name,
            qualname=base.co_qualname,
        )
        if code.co_freevars != base.co_freevars:  # pragma: no cover - compile_function keeps them
            raise SyntaxError(f"instrumented code of {self} changed its free variables")
        return code

    def _generic_source(self) -> FunctionSource:
        base = self.base
        params = Params.of(base)
        prefix = "async def" if base.co_flags & (inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR) else "def"
        text = f"{prefix} {base.co_name}({params.signature_text()}):\n    pass\n"
        node = ast.parse(text).body[0]
        node.body = []  # the prologue supplies the whole body
        ast.increment_lineno(node, base.co_firstlineno - 1)
        return FunctionSource(node, base.co_filename, text)  # type: ignore[arg-type]


_KEEP: Any = object()


class _PreparedSignature(inspect.Signature):
    """``inspect.signature`` of a function whose per-call keywords are positional parameters.

    Its own parameters, then the keywords as keyword-only (how they must be passed);
    never the overflow parameter. Worked out on first use: preparing a class stays cheap.
    """

    __slots__ = ("_state_ref",)

    def __init__(self, state: FunctionState) -> None:  # the Signature slots are filled on first use
        self._state_ref = weakref.ref(state)

    def __getattr__(self, name: str) -> Any:
        state = self._state_ref() if name in ("_parameters", "_return_annotation") else None
        if state is None:
            raise AttributeError(name)
        own = state.own_signature()
        keywords = [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=None) for k in PERCALL_KEYWORDS]
        full = inspect.Signature([*own.parameters.values(), *keywords], return_annotation=own.return_annotation)
        self._parameters = full.parameters
        self._return_annotation = full.return_annotation
        return getattr(self, name)

    def replace(self, *, parameters: Any = _KEEP, return_annotation: Any = _KEEP) -> inspect.Signature:
        """A plain :class:`inspect.Signature` (``inspect`` uses this to drop ``self``)."""
        return inspect.Signature(
            self.parameters.values() if parameters is _KEEP else parameters,
            return_annotation=self.return_annotation if return_annotation is _KEEP else return_annotation,
        )

    def __reduce__(self) -> Any:
        return self.replace().__reduce__()

    def __repr__(self) -> str:
        return f"<Signature {self}>"


def _swap_code(
    fn: types.FunctionType,
    code: types.CodeType,
    defaults: tuple[Any, ...] | None,
    kwdefaults: dict[str, Any] | None,
) -> None:
    """Give ``fn`` new code and defaults in the order that is safe for a concurrent call.

    Defaults first when parameters are added, code first when they are removed: a call
    in between then finds spare defaults (harmless) rather than missing ones.
    """
    grows = code.co_argcount + code.co_kwonlyargcount >= fn.__code__.co_argcount + fn.__code__.co_kwonlyargcount
    if grows:
        fn.__defaults__, fn.__kwdefaults__ = defaults, kwdefaults
        fn.__code__ = code
    else:
        fn.__code__ = code
        fn.__defaults__, fn.__kwdefaults__ = defaults, kwdefaults


def _forget(key: int, ref: weakref.ReferenceType[types.FunctionType]) -> None:
    """An instrumented function died: drop its state (which holds no strong reference to it)."""
    with _registry_lock:
        state = _registry.get(key)
        if state is None or state._fn_ref is not ref:
            return
        del _registry[key]
        # Its instrumented code holds the state among its constants, and code objects are
        # invisible to the cycle collector: drop them, or the state would live forever.
        state._cache.clear()
        state._fast = None


def _lookup(fn: types.FunctionType) -> FunctionState | None:
    state = _registry.get(id(fn))
    return state if state is not None and state._fn_ref() is fn else None


def state_for(fn: types.FunctionType, create: bool = True) -> FunctionState | None:
    """The instrumentation state of ``fn`` (created on first use when ``create``)."""
    state = _lookup(fn)
    if state is None and create:
        with _registry_lock:
            state = _lookup(fn)
            if state is None:
                state = _registry[id(fn)] = FunctionState(fn)
    return state


def instrumented(fn: types.FunctionType) -> bool:
    """Whether ``fn`` takes part in scoped patches or per-call keywords."""
    return _lookup(fn) is not None


def base_code(fn: types.FunctionType) -> types.CodeType:
    """The code that really implements ``fn`` (its ``__code__`` unless instrumented)."""
    state = _lookup(fn)
    return fn.__code__ if state is None else state.base


def base_defaults(fn: types.FunctionType) -> tuple[Any, ...] | None:
    state = _lookup(fn)
    return fn.__defaults__ if state is None else state.base_defaults


def base_kwdefaults(fn: types.FunctionType) -> dict[str, Any] | None:
    state = _lookup(fn)
    return fn.__kwdefaults__ if state is None else state.base_kwdefaults


def set_base(
    fn: types.FunctionType,
    code: types.CodeType,
    source: FunctionSource | None,
    defaults: tuple[Any, ...] | None,
    kwdefaults: dict[str, Any] | None,
) -> None:
    """Make ``code`` (with these defaults) the implementation of ``fn``, keeping any instrumentation."""
    state = _lookup(fn)
    if state is None:
        _swap_code(fn, code, defaults, kwdefaults)
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
