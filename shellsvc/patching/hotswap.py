"""In-place hot swap: new code for an existing function object, so every reference runs it.

``importlib.reload`` creates *new* function objects and leaves every from-import, bound
method and stored callback pointing at the old ones. Assigning ``fn.__code__`` instead
keeps the object and changes what it runs (jurigged's approach); this module adds what
jurigged lacks: a plan that is fully compiled and checked before anything changes, an exact
revert (the original code object goes back), and cooperation with the scoped/per-call
instrumentation (the *base* code is swapped, the instrumentation stays).

Running frames keep executing the code they started with; the next call runs the new code.
"""

from __future__ import annotations

import ast
import builtins
import dis
import inspect
import sys
import textwrap
import types
import weakref
from dataclasses import dataclass, field
from typing import Any

from . import instrument
from .compiling import (
    FunctionDef,
    FunctionSource,
    Params,
    class_name_of,
    compile_function,
    function_kind,
    parse_function_source,
    register_source,
    remember_source,
    running_source,
)
from .errors import PatchCompileError, PatchRefused
from .targets import describe, dotted_path, unwrap_function

__all__ = ["Change", "CompiledReplacement", "Plan", "compile_replacement", "plan_patch"]


@dataclass
class CompiledReplacement:
    """A replacement body ready to be assigned to one function."""

    code: types.CodeType
    source: FunctionSource | None
    defaults: tuple[Any, ...] | None
    kwdefaults: dict[str, Any] | None
    annotations: dict[str, Any]

    @property
    def text(self) -> str | None:
        return self.source.text if self.source is not None else None


def _function_text(fn: types.FunctionType, text: str) -> tuple[str, FunctionDef | None]:
    """Accept a whole ``def`` or a bare body; return the text of a complete ``def``.

    Also returns the parsed ``def`` when the text was one already (it is not parsed twice).
    """
    dedented = textwrap.dedent(text).strip("\n") + "\n"
    tree = None
    if dedented.startswith(("def", "async", "@")):  # else it cannot be a def: spare a failing parse
        try:
            tree = ast.parse(dedented)
        except SyntaxError:
            tree = None
    if tree is not None and len(tree.body) == 1 and isinstance(tree.body[0], (ast.FunctionDef, ast.AsyncFunctionDef)):
        return dedented, tree.body[0]
    base = instrument.base_code(fn)
    body = textwrap.indent(dedented, "    ")
    original = running_source(base, class_name_of(fn))  # None if the file changed: trust the code's signature
    if original is not None and original.node.body and original.node.body[0].lineno > original.node.lineno:
        # Keep the original header (defaults, annotations) so a commit keeps them too.
        node = original.node
        first = node.decorator_list[0].lineno if node.decorator_list else node.lineno
        header = original.text.splitlines()[node.lineno - first : node.body[0].lineno - first]
        return "\n".join(header) + "\n" + body, None
    prefix = "async def" if base.co_flags & (inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR) else "def"
    return f"{prefix} {fn.__name__}({Params.of(base).signature_text()}):\n{body}", None


def compile_replacement(fn: types.FunctionType, replacement: Any) -> CompiledReplacement:
    """Compile ``replacement`` (source text or a function) for ``fn``; refuse if it cannot fit."""
    base = instrument.base_code(fn)
    if isinstance(replacement, str):
        text, node = _function_text(fn, replacement)
        filename = register_source(text, describe(fn))
        source = FunctionSource(node, filename, text) if node is not None else parse_function_source(text, filename)
        code, outer = compile_function(
            source,
            freevars=base.co_freevars,
            class_name=class_name_of(fn),
            future_flags=base.co_flags,
            pad_freevars=True,
            name=base.co_name,
            qualname=base.co_qualname,
        )
        made = _make(outer, fn.__globals__, describe(fn))
        defaults, kwdefaults = _keep_unchanged_defaults(fn, base, source, made)
        remember_source(code, source, class_name_of(fn))
        result = CompiledReplacement(code, source, defaults, kwdefaults, dict(made.__annotations__))
    elif callable(replacement):
        new_fn = unwrap_function(replacement)
        code = instrument.base_code(new_fn)
        if code.co_freevars != base.co_freevars:
            raise PatchRefused(
                f"cannot swap {describe(fn)}: its free variables {base.co_freevars} differ from the "
                f"replacement's {code.co_freevars}; closures cannot be re-wired in place - pass source text "
                "that uses the same enclosing variables, or replace the enclosing function"
            )
        source = running_source(code, class_name_of(new_fn))  # None if its file changed since
        code = code.replace(co_name=base.co_name, co_qualname=base.co_qualname)
        result = CompiledReplacement(code, source, new_fn.__defaults__, new_fn.__kwdefaults__, dict(new_fn.__annotations__))
    else:
        raise PatchRefused(f"replacement for {describe(fn)} must be source text or a function, not {type(replacement).__name__}")
    if function_kind(result.code) != function_kind(base):
        raise PatchRefused(
            f"cannot swap {describe(fn)}: it is a {function_kind(base)} and the replacement is a "
            f"{function_kind(result.code)}; callers would break"
        )
    check_globals(fn, result.code, base, elsewhere=None if isinstance(replacement, str) else unwrap_function(replacement))
    if result.code.co_freevars != base.co_freevars:
        raise PatchRefused(f"cannot swap {describe(fn)}: free variables changed from {base.co_freevars} to {result.code.co_freevars}")
    return result


_LOAD_GLOBAL = dis.opmap["LOAD_GLOBAL"]
_LOAD_NAME = dis.opmap["LOAD_NAME"]
_STORES = frozenset((dis.opmap["STORE_GLOBAL"], dis.opmap["STORE_NAME"]))
_EXTENDED_ARG = dis.EXTENDED_ARG
#: Since 3.11 LOAD_GLOBAL's argument is the name index shifted left (the low bit: "push NULL").
_GLOBAL_SHIFT = 1 if sys.version_info >= (3, 11) else 0
_names_cache: weakref.WeakKeyDictionary[types.CodeType, tuple[frozenset[str], frozenset[str]]] = weakref.WeakKeyDictionary()


def _global_names(code: types.CodeType) -> tuple[frozenset[str], frozenset[str]]:
    """Global names ``code`` (and code nested in it) reads, and those it assigns.

    Reads the raw bytecode (two bytes per unit; inline caches are zero units) rather than
    :func:`dis.get_instructions`, which builds an object per instruction: a hot swap
    scans every replacement.
    """
    cached = _names_cache.get(code)
    if cached is not None:
        return cached
    loads: set[str] = set()
    stores: set[str] = set()
    names = code.co_names
    raw = code.co_code
    extended = 0
    for op, arg in zip(raw[::2], raw[1::2]):
        if op == _EXTENDED_ARG:
            extended = (extended | arg) << 8
            continue
        arg |= extended
        extended = 0
        if op == _LOAD_GLOBAL:
            loads.add(names[arg >> _GLOBAL_SHIFT])
        elif op == _LOAD_NAME:
            loads.add(names[arg])
        elif op in _STORES:
            stores.add(names[arg])
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            inner_loads, inner_stores = _global_names(const)
            loads |= inner_loads
            stores |= inner_stores
    found = frozenset(loads), frozenset(stores)
    _names_cache[code] = found
    return found


def check_globals(
    fn: types.FunctionType, new: types.CodeType, old: types.CodeType | None, elsewhere: types.FunctionType | None = None
) -> None:
    """Refuse new code that reads a global its function's module does not have.

    Swapped code runs in the *target's* module globals: a helper defined next to the
    replacement (in the REPL, say) or a typo would otherwise surface as a ``NameError`` in
    production. Names the running code already reads are not held against the patch.
    """
    loads, stores = _global_names(new)
    module_globals = fn.__globals__
    builtin = _builtin_names(module_globals)
    missing = [name for name in loads if name not in module_globals and name not in builtin and name not in stores]
    if missing and old is not None:
        already = _global_names(old)[0]
        missing = [name for name in missing if name not in already]
    if not missing:
        return
    missing.sort()
    module = fn.__globals__.get("__name__", "?")
    hint = (
        f" (they exist where the replacement was defined, {elsewhere.__globals__.get('__name__', '?')}, "
        "but swapped code runs in the target's globals)"
        if elsewhere is not None and all(name in elsewhere.__globals__ for name in missing)
        else ""
    )
    raise PatchRefused(
        f"cannot swap {describe(fn)}: the replacement uses {', '.join(repr(n) for n in missing)}, which module "
        f"{module!r} does not define{hint}; define them in {module} first, or import them inside the function"
    )


def _make(outer: types.CodeType, module_globals: dict[str, Any], what: str) -> types.FunctionType:
    """Run the compiled ``def`` (evaluating its default values) to get the new function."""
    try:
        made: types.FunctionType = types.FunctionType(outer, module_globals)()
    except Exception as exc:
        raise PatchRefused(f"evaluating the default values of the replacement for {what} raised {exc!r}") from exc
    return made


def _builtin_names(module_globals: dict[str, Any]) -> set[str] | Any:
    found = module_globals.get("__builtins__", builtins)
    return (found if isinstance(found, dict) else vars(found)).keys()


def _keep_unchanged_defaults(
    fn: types.FunctionType, base: types.CodeType, source: FunctionSource, made: types.FunctionType
) -> tuple[tuple[Any, ...] | None, dict[str, Any] | None]:
    """New default values, except where the default's expression is textually unchanged.

    Keeps the *same object* for an unchanged ``cache={}`` default, so a patch does not
    silently reset state held in defaults.
    """
    defaults = made.__defaults__
    kwdefaults = made.__kwdefaults__
    old_source = running_source(base, class_name_of(fn))
    if old_source is None:
        return defaults, kwdefaults
    old_args, new_args = old_source.node.args, source.node.args
    old_map = {
        name: (ast.dump(expr), value)
        for name, expr, value in zip(_defaulted(old_args), old_args.defaults, instrument.base_defaults(fn) or ())
    }
    new_pos = _defaulted(new_args)
    if defaults and new_args.defaults:
        kept = list(defaults)
        for i, (name, expr) in enumerate(zip(new_pos, new_args.defaults)):
            if name in old_map and old_map[name][0] == ast.dump(expr):
                kept[i] = old_map[name][1]
        defaults = tuple(kept)
    old_kw = instrument.base_kwdefaults(fn) or {}
    if kwdefaults:
        old_exprs = {a.arg: ast.dump(d) for a, d in zip(old_args.kwonlyargs, old_args.kw_defaults) if d is not None}
        for arg, expr in zip(new_args.kwonlyargs, new_args.kw_defaults):
            if expr is not None and arg.arg in old_kw and old_exprs.get(arg.arg) == ast.dump(expr):
                kwdefaults[arg.arg] = old_kw[arg.arg]
    return defaults, kwdefaults


def _defaulted(args: ast.arguments) -> list[str]:
    """Names of the positional parameters that have defaults, in order."""
    names = [a.arg for a in args.posonlyargs + args.args]
    return names[len(names) - len(args.defaults) :] if args.defaults else []


class Change:
    """One reversible change; ``apply`` and ``revert`` never fail half-way for valid input.

    What is replaced is captured when the change is *applied*, so ``revert`` restores
    exactly what was there then.
    """

    def apply(self) -> None:
        raise NotImplementedError

    def revert(self) -> None:
        raise NotImplementedError

    @property
    def key(self) -> tuple[Any, ...]:
        """What this change touches; two operations touching the same key must not overlap."""
        raise NotImplementedError


@dataclass
class FunctionChange(Change):
    fn: types.FunctionType
    new: CompiledReplacement
    old: tuple[types.CodeType, FunctionSource | None, Any, Any, dict[str, Any]] | None = field(init=False, default=None)

    @property
    def key(self) -> tuple[Any, ...]:
        return ("function", id(self.fn))

    def apply(self) -> None:
        state = instrument.state_for(self.fn, create=False)
        self.old = (
            instrument.base_code(self.fn),
            state.base_source if state is not None else None,
            instrument.base_defaults(self.fn),
            instrument.base_kwdefaults(self.fn),
            self.fn.__annotations__,
        )
        instrument.set_base(self.fn, self.new.code, self.new.source, self.new.defaults, self.new.kwdefaults)
        self.fn.__annotations__ = self.new.annotations

    def revert(self) -> None:
        assert self.old is not None, "revert() before apply()"
        code, source, defaults, kwdefaults, annotations = self.old
        instrument.set_base(self.fn, code, source, defaults, kwdefaults)
        self.fn.__annotations__ = annotations


_MISSING = object()


@dataclass
class AttributeChange(Change):
    """Add (or replace a non-function) class attribute."""

    owner: type
    name: str
    value: Any
    old: Any = field(init=False, default=_MISSING)

    @property
    def key(self) -> tuple[Any, ...]:
        return ("attribute", id(self.owner), self.name)

    def apply(self) -> None:
        self.old = self.owner.__dict__.get(self.name, _MISSING)
        setattr(self.owner, self.name, self.value)

    def revert(self) -> None:
        if self.old is _MISSING:
            delattr(self.owner, self.name)
        else:
            setattr(self.owner, self.name, self.old)


@dataclass
class Plan:
    """Everything a patch will change, compiled and checked before anything changes."""

    target: Any  # the function or class patched
    path: str | None  # "module:qualname" to re-resolve after a restart
    description: str
    kind: str  # "function" or "class"
    before_source: str | None
    after_source: str | None
    changes: list[Change]

    def apply(self) -> None:
        done: list[Change] = []
        try:
            for change in self.changes:
                change.apply()
                done.append(change)
        except BaseException:
            for change in reversed(done):
                change.revert()
            raise

    def revert(self) -> None:
        for change in reversed(self.changes):
            change.revert()

    @property
    def keys(self) -> frozenset[tuple[Any, ...]]:
        """What this plan touches (functions, class attributes), for conflicts and rollback order."""
        return frozenset(change.key for change in self.changes)


def plan_patch(target: Any, replacement: Any) -> Plan:
    """Compile and check a hot swap of ``target``; nothing is changed yet."""
    if isinstance(target, str):
        from .resolve import resolve_target

        target = resolve_target(target)
    if isinstance(target, type):
        return _plan_class(target, replacement)
    fn = unwrap_function(target)
    base = instrument.base_code(fn)
    before = running_source(base, class_name_of(fn))  # None if the file no longer holds the running code
    compiled = compile_replacement(fn, replacement)
    return Plan(
        fn,
        dotted_path(fn),
        describe(fn),
        "function",
        before.text if before else None,
        compiled.text,
        [FunctionChange(fn, compiled)],
    )


# -- classes ----------------------------------------------------------------------

_DESCRIPTORS = {"classmethod": classmethod, "staticmethod": staticmethod}


def _plan_class(cls: type, replacement: Any) -> Plan:
    """Replace or add methods of ``cls`` so that existing instances see them."""
    if isinstance(replacement, type):
        members = {k: v for k, v in vars(replacement).items() if isinstance(v, (types.FunctionType, classmethod, staticmethod))}
        changes = [_member_change(cls, name, value) for name, value in members.items()]
        try:
            after = inspect.getsource(replacement)
        except (OSError, TypeError):
            after = None
    elif isinstance(replacement, str):
        changes, after = _class_source_changes(cls, replacement)
    else:
        raise PatchRefused(f"replacement for class {describe(cls)} must be class source text or a class, not {type(replacement).__name__}")
    if not changes:
        raise PatchRefused(f"the replacement for class {describe(cls)} defines no methods; nothing to do")
    try:
        before = inspect.getsource(cls)
    except (OSError, TypeError):
        before = None
    return Plan(cls, dotted_path(cls), describe(cls), "class", before, after, changes)


def _member_change(cls: type, name: str, value: Any) -> Change:
    existing = cls.__dict__.get(name, _MISSING)
    new_fn = value.__func__ if isinstance(value, (classmethod, staticmethod)) else value
    if existing is not _MISSING and isinstance(existing, (types.FunctionType, classmethod, staticmethod)):
        if type(existing) is not type(value):
            raise PatchRefused(
                f"{describe(cls)}.{name} is a {type(existing).__name__} and the replacement is a "
                f"{type(value).__name__}; change of method kind is not supported in place"
            )
        return FunctionChange(unwrap_function(existing), compile_replacement(unwrap_function(existing), new_fn))
    rebound = _rebind_class_cell(new_fn, cls)
    return AttributeChange(cls, name, type(value)(rebound) if isinstance(value, (classmethod, staticmethod)) else rebound)


def _rebind_class_cell(fn: types.FunctionType, cls: type) -> types.FunctionType:
    """A copy of ``fn`` whose ``super()`` refers to ``cls``."""
    if "__class__" not in fn.__code__.co_freevars:
        return fn
    if fn.__code__.co_freevars != ("__class__",):
        raise PatchRefused(f"new method {fn.__qualname__} uses enclosing variables {fn.__code__.co_freevars}; define it at class level")
    new = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__, fn.__defaults__, (types.CellType(cls),))
    new.__kwdefaults__ = fn.__kwdefaults__
    new.__qualname__ = f"{cls.__qualname__}.{fn.__name__}"
    new.__module__ = cls.__module__
    return new


def _class_source_changes(cls: type, text: str) -> tuple[list[Change], str]:
    dedented = textwrap.dedent(text).strip("\n") + "\n"
    try:
        tree = ast.parse(dedented)
    except SyntaxError as exc:
        raise PatchCompileError(f"replacement source for class {describe(cls)} does not compile: {exc}") from exc
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.ClassDef):
        raise PatchRefused(f"replacement for class {describe(cls)} must be one 'class' statement")
    filename = register_source(dedented, describe(cls))
    module_globals = vars(inspect.getmodule(cls)) if inspect.getmodule(cls) else {}
    changes: list[Change] = []
    for node in tree.body[0].body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        method_text = ast.get_source_segment(dedented, node, padded=False) or ""
        decorator_names = [d.id for d in node.decorator_list if isinstance(d, ast.Name)]
        fsource = FunctionSource(node, filename, method_text)
        existing = cls.__dict__.get(node.name, _MISSING)
        if existing is not _MISSING and isinstance(existing, (types.FunctionType, classmethod, staticmethod)):
            wanted = next((d for d in decorator_names if d in _DESCRIPTORS), None)
            have = next((k for k, v in _DESCRIPTORS.items() if isinstance(existing, v)), None)
            if wanted != have:
                raise PatchRefused(f"{describe(cls)}.{node.name} is {have or 'a plain method'}; the replacement is {wanted or 'a plain method'}")
            fn = unwrap_function(existing)
            changes.append(FunctionChange(fn, _compile_method(fn, fsource)))
        else:
            changes.append(AttributeChange(cls, node.name, _new_method(cls, fsource, module_globals)))
    return changes, dedented


def _compile_method(fn: types.FunctionType, fsource: FunctionSource) -> CompiledReplacement:
    base = instrument.base_code(fn)
    code, outer = compile_function(
        fsource, freevars=base.co_freevars, class_name=class_name_of(fn), future_flags=base.co_flags,
        pad_freevars=True, name=base.co_name, qualname=base.co_qualname,
    )
    made = _make(outer, fn.__globals__, describe(fn))
    if function_kind(code) != function_kind(base):
        raise PatchRefused(f"cannot swap {describe(fn)}: a {function_kind(base)} cannot become a {function_kind(code)}")
    check_globals(fn, code, base)
    defaults, kwdefaults = _keep_unchanged_defaults(fn, base, fsource, made)
    remember_source(code, fsource, class_name_of(fn))
    return CompiledReplacement(code, fsource, defaults, kwdefaults, dict(made.__annotations__))


def _new_method(cls: type, fsource: FunctionSource, module_globals: dict[str, Any]) -> Any:
    code, outer = compile_function(fsource, freevars=("__class__",), class_name=cls.__name__, pad_freevars=True)
    label = f"{describe(cls)}.{fsource.name}"
    made = _make(outer, module_globals, label)
    fn = types.FunctionType(code, module_globals, fsource.name, made.__defaults__, (types.CellType(cls),))
    fn.__kwdefaults__ = made.__kwdefaults__
    fn.__qualname__ = f"{cls.__qualname__}.{fsource.name}"
    fn.__module__ = cls.__module__
    fn.__annotations__ = made.__annotations__
    check_globals(fn, code, None)
    value: Any = fn
    for decorator in reversed(fsource.node.decorator_list):
        expr = ast.Expression(decorator)
        ast.fix_missing_locations(expr)
        try:
            value = eval(compile(expr, fsource.filename, "eval"), module_globals)(value)
        except Exception as exc:
            raise PatchRefused(f"applying decorator {ast.unparse(decorator)!r} to new method {label} raised {exc!r}") from exc
    return value

