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
import inspect
import textwrap
import types
from dataclasses import dataclass, field
from typing import Any

from . import instrument
from .compiling import (
    FunctionSource,
    Params,
    compile_function,
    function_kind,
    parse_function_source,
    register_source,
    same_body,
    source_of_code,
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


def _class_name(fn: types.FunctionType) -> str | None:
    return instrument._class_name(fn)


def _function_text(fn: types.FunctionType, text: str) -> str:
    """Accept a whole ``def`` or a bare body; return the text of a complete ``def``."""
    dedented = textwrap.dedent(text).strip("\n") + "\n"
    try:
        tree = ast.parse(dedented)
    except SyntaxError:
        tree = None
    if tree is not None and len(tree.body) == 1 and isinstance(tree.body[0], (ast.FunctionDef, ast.AsyncFunctionDef)):
        return dedented
    base = instrument.base_code(fn)
    body = textwrap.indent(dedented, "    ")
    original = source_of_code(base)
    if original is not None and not _source_matches(fn, base, original):
        original = None  # the file changed since import: trust the code's own signature
    if original is not None and original.node.body and original.node.body[0].lineno > original.node.lineno:
        # Keep the original header (defaults, annotations) so a commit keeps them too.
        node = original.node
        first = node.decorator_list[0].lineno if node.decorator_list else node.lineno
        header = original.text.splitlines()[node.lineno - first : node.body[0].lineno - first]
        return "\n".join(header) + "\n" + body
    prefix = "async def" if base.co_flags & (inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR) else "def"
    return f"{prefix} {fn.__name__}({Params.of(base).signature_text()}):\n{body}"


def _source_matches(fn: types.FunctionType, base: types.CodeType, source: FunctionSource) -> bool:
    try:
        code, _ = compile_function(
            source, freevars=base.co_freevars, class_name=_class_name(fn), future_flags=base.co_flags
        )
    except PatchCompileError:
        return False
    return same_body(code, base)


def compile_replacement(fn: types.FunctionType, replacement: Any) -> CompiledReplacement:
    """Compile ``replacement`` (source text or a function) for ``fn``; refuse if it cannot fit."""
    base = instrument.base_code(fn)
    if isinstance(replacement, str):
        text = _function_text(fn, replacement)
        filename = register_source(text, describe(fn))
        source = parse_function_source(text, filename)
        code, outer = compile_function(
            source,
            freevars=base.co_freevars,
            class_name=_class_name(fn),
            future_flags=base.co_flags,
            pad_freevars=True,
            name=base.co_name,
            qualname=base.co_qualname,
        )
        try:
            made = types.FunctionType(outer, fn.__globals__)()
        except Exception as exc:
            raise PatchRefused(f"evaluating the default values of the replacement for {describe(fn)} raised {exc!r}") from exc
        defaults, kwdefaults = _keep_unchanged_defaults(fn, base, source, made)
        result = CompiledReplacement(code, source, defaults, kwdefaults, dict(made.__annotations__))
    elif callable(replacement):
        new_fn = unwrap_function(replacement)
        code = new_fn.__code__ if not instrument.instrumented(new_fn) else instrument.base_code(new_fn)
        if code.co_freevars != base.co_freevars:
            raise PatchRefused(
                f"cannot swap {describe(fn)}: its free variables {base.co_freevars} differ from the "
                f"replacement's {code.co_freevars}; closures cannot be re-wired in place - pass source text "
                "that uses the same enclosing variables, or replace the enclosing function"
            )
        code = code.replace(co_name=base.co_name, co_qualname=base.co_qualname)
        result = CompiledReplacement(
            code, source_of_code(code), new_fn.__defaults__, new_fn.__kwdefaults__, dict(new_fn.__annotations__)
        )
    else:
        raise PatchRefused(f"replacement for {describe(fn)} must be source text or a function, not {type(replacement).__name__}")
    if function_kind(result.code) != function_kind(base):
        raise PatchRefused(
            f"cannot swap {describe(fn)}: it is a {function_kind(base)} and the replacement is a "
            f"{function_kind(result.code)}; callers would break"
        )
    if result.code.co_freevars != base.co_freevars:
        raise PatchRefused(f"cannot swap {describe(fn)}: free variables changed from {base.co_freevars} to {result.code.co_freevars}")
    return result


def _keep_unchanged_defaults(
    fn: types.FunctionType, base: types.CodeType, source: FunctionSource, made: types.FunctionType
) -> tuple[tuple[Any, ...] | None, dict[str, Any] | None]:
    """New default values, except where the default's expression is textually unchanged.

    Keeps the *same object* for an unchanged ``cache={}`` default, so a patch does not
    silently reset state held in defaults.
    """
    defaults = made.__defaults__
    kwdefaults = made.__kwdefaults__
    old_source = source_of_code(base)
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
    """One reversible change; ``apply`` and ``revert`` never fail half-way for valid input."""

    def apply(self) -> None:
        raise NotImplementedError

    def revert(self) -> None:
        raise NotImplementedError


@dataclass
class FunctionChange(Change):
    fn: types.FunctionType
    new: CompiledReplacement
    old_code: types.CodeType = field(init=False)
    old_source: FunctionSource | None = field(init=False)
    old_defaults: tuple[Any, ...] | None = field(init=False)
    old_kwdefaults: dict[str, Any] | None = field(init=False)
    old_annotations: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        state = instrument.state_for(self.fn, create=False)
        self.old_code = instrument.base_code(self.fn)
        self.old_source = state.base_source if state is not None else None
        self.old_defaults = instrument.base_defaults(self.fn)
        self.old_kwdefaults = instrument.base_kwdefaults(self.fn)
        self.old_annotations = self.fn.__annotations__

    def apply(self) -> None:
        instrument.set_base(self.fn, self.new.code, self.new.source, self.new.defaults, self.new.kwdefaults)
        self.fn.__annotations__ = self.new.annotations

    def revert(self) -> None:
        instrument.set_base(self.fn, self.old_code, self.old_source, self.old_defaults, self.old_kwdefaults)
        self.fn.__annotations__ = self.old_annotations


_MISSING = object()


@dataclass
class AttributeChange(Change):
    """Add (or replace a non-function) class attribute."""

    owner: type
    name: str
    value: Any
    old: Any = field(init=False)

    def __post_init__(self) -> None:
        self.old = self.owner.__dict__.get(self.name, _MISSING)

    def apply(self) -> None:
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


def plan_patch(target: Any, replacement: Any) -> Plan:
    """Compile and check a hot swap of ``target``; nothing is changed yet."""
    if isinstance(target, str):
        from .resolve import resolve_target

        target = resolve_target(target)
    if isinstance(target, type):
        return _plan_class(target, replacement)
    fn = unwrap_function(target)
    base = instrument.base_code(fn)
    before = source_of_code(base)
    if before is not None and not _source_matches(fn, base, before):
        before = None  # the file no longer holds the running code
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
        fsource, freevars=base.co_freevars, class_name=_class_name(fn), future_flags=base.co_flags,
        pad_freevars=True, name=base.co_name, qualname=base.co_qualname,
    )
    made = types.FunctionType(outer, fn.__globals__)()
    if function_kind(code) != function_kind(base):
        raise PatchRefused(f"cannot swap {describe(fn)}: a {function_kind(base)} cannot become a {function_kind(code)}")
    defaults, kwdefaults = _keep_unchanged_defaults(fn, base, fsource, made)
    return CompiledReplacement(code, fsource, defaults, kwdefaults, dict(made.__annotations__))


def _new_method(cls: type, fsource: FunctionSource, module_globals: dict[str, Any]) -> Any:
    code, outer = compile_function(fsource, freevars=("__class__",), class_name=cls.__name__, pad_freevars=True)
    made: types.FunctionType = types.FunctionType(outer, module_globals)()
    fn = types.FunctionType(code, module_globals, fsource.name, made.__defaults__, (types.CellType(cls),))
    fn.__kwdefaults__ = made.__kwdefaults__
    fn.__qualname__ = f"{cls.__qualname__}.{fsource.name}"
    fn.__module__ = cls.__module__
    fn.__annotations__ = made.__annotations__
    value: Any = fn
    for decorator in reversed(fsource.node.decorator_list):
        expr = ast.Expression(decorator)
        ast.fix_missing_locations(expr)
        value = eval(compile(expr, fsource.filename, "eval"), module_globals)(value)
    return value

