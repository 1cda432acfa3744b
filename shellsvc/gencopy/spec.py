"""Build and look up :class:`GeneratorSpec` — everything known about one compiled generator function.

A spec is created once per function (at decoration, or lazily for :func:`capture` and for
loading pickles of captured generators) and registered by the code objects of its twins,
so ``spec_for_generator(gen)`` is a dictionary lookup on ``gen.gi_code``.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import inspect
import logging
import threading
import types
from dataclasses import dataclass, field
from typing import Any, Callable

from .compiler import HIDDEN_PREFIX, STATE_ARG, YieldPoint, compile_generator, restore_prologue
from .specialize import RESUME
from .errors import GeneratorStateError, UnsupportedGeneratorError
from .runtime import HELPERS

__all__ = [
    "GeneratorSpec",
    "spec_for_function",
    "spec_for_code",
    "spec_for_generator",
    "resolve_spec",
    "CodeChange",
]

logger = logging.getLogger(__name__)

#: ``code_change(state) -> state``: migrates a saved state to changed source (see docs).
CodeChange = Callable[[dict[str, Any]], dict[str, Any]]

_lock = threading.RLock()
# Keyed by id(): code objects compare *by value* (not even by filename), so two identical
# functions in different modules would collide in a plain dict.  Values keep the code alive.
_by_twin_code: dict[int, tuple[types.CodeType, "GeneratorSpec"]] = {}
_by_source_code: dict[int, tuple[types.CodeType, "GeneratorSpec"]] = {}
# The latest decoration per (module, qualname): where pickles find their code_change hook.
_by_name: dict[tuple[str, str], "GeneratorSpec"] = {}


def _lookup(table: dict[int, tuple[types.CodeType, "GeneratorSpec"]], code: Any) -> "GeneratorSpec | None":
    entry = table.get(id(code))
    return entry[1] if entry is not None and entry[0] is code else None


@dataclass(eq=False)
class GeneratorSpec:
    """A generator function's code compiled into its two twins (one spec per code object).

    Closures are per function, not per code: :meth:`make_impl` binds the twin to the
    decorated function's cells, :meth:`make_restore` to fresh cells holding saved values.
    """

    module: str
    qualname: str
    name: str
    source_hash: str
    is_async: bool
    impl_code: types.CodeType
    restore_code: types.CodeType
    globals: dict[str, Any]
    #: The user's free variables (closure names), saved by value in every snapshot.
    freevars: tuple[str, ...]
    yield_points: dict[int, YieldPoint]
    user_locals: tuple[str, ...]
    code_change: CodeChange | None = None
    by_label: dict[str, YieldPoint] = field(default_factory=dict)
    by_position: dict[tuple[int, int, int, int], YieldPoint] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_label = {p.label: p for p in self.yield_points.values()}
        self.by_position = {p.position: p for p in self.yield_points.values()}

    @property
    def reference(self) -> tuple[str, str, str]:
        """What a pickle records: ``(module, qualname, source_hash)`` — never code."""
        return (self.module, self.qualname, self.source_hash)

    def _function(self, code: types.CodeType, cells: dict[str, types.CellType]) -> types.FunctionType:
        closure = tuple(_HELPER_CELLS[n] if n in _HELPER_CELLS else cells[n] for n in code.co_freevars)
        function = types.FunctionType(code, self.globals, self.name, None, closure)
        function.__qualname__ = self.qualname
        function.__module__ = self.module
        return function

    def make_impl(self, cells: dict[str, types.CellType]) -> types.FunctionType:
        """The function a decorated name is bound to, sharing ``cells`` with its defining scope."""
        return self._function(self.impl_code, cells)

    def make_restore(self, free_values: dict[str, Any]) -> types.FunctionType:
        """The restore twin with fresh closure cells holding ``free_values`` (closures by value)."""
        cells = {n: types.CellType(free_values[n]) if n in free_values else types.CellType() for n in self.freevars}
        return self._function(self.restore_code, cells)

    def __reduce__(self) -> tuple[Any, ...]:
        return (tuple, (self.reference,))

    def __copy__(self) -> "GeneratorSpec":
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> "GeneratorSpec":
        return self

    def __repr__(self) -> str:
        return f"<GeneratorSpec {self.module}.{self.qualname} source={self.source_hash}>"


_HELPER_CELLS = {name: types.CellType(value) for name, value in HELPERS.items()}


def _parse_function(code: types.CodeType, what: str) -> tuple[ast.FunctionDef | ast.AsyncFunctionDef, dict[int, str], str, str]:
    try:
        lines, first = inspect.getsourcelines(code)
        filename = inspect.getsourcefile(code) or code.co_filename
    except (OSError, TypeError) as exc:
        raise UnsupportedGeneratorError(
            f"cannot compile {what}: its source is not available ({exc}); "
            "define it in a module file (source is needed to compile it)"
        ) from exc
    source = "".join(lines)
    indented = bool(lines) and lines[0][:1] in (" ", "\t")
    text = ("if 1:\n" + source) if indented else source
    tree = ast.parse(text, filename=filename)
    ast.increment_lineno(tree, first - (2 if indented else 1))
    node: ast.AST = tree.body[0]
    if indented:
        node = node.body[0]  # type: ignore[attr-defined]
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or node.name != code.co_name:
        raise UnsupportedGeneratorError(
            f"cannot compile {what}: the source found at {filename}:{first} is not its 'def' "
            "(lambdas and dynamically created functions are not supported)"
        )
    numbered = {first + i: line for i, line in enumerate(lines)}
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    return node, numbered, filename, digest


def _build(
    code: types.CodeType,
    globals_: dict[str, Any],
    module: str,
    qualname: str,
    code_change: CodeChange | None,
) -> GeneratorSpec:
    what = f"{module}.{qualname}()"
    if not code.co_flags & (inspect.CO_GENERATOR | inspect.CO_ASYNC_GENERATOR):
        raise UnsupportedGeneratorError(f"cannot compile {what}: it is not a generator function")
    node, numbered, filename, digest = _parse_function(code, what)
    compiled = compile_generator(node, numbered, code.co_freevars, tuple(HELPERS))

    def compile_twins() -> tuple[types.CodeType, types.CodeType]:
        ast.fix_missing_locations(compiled.module)
        module_code = compile(compiled.module, filename, "exec", dont_inherit=True)
        factory = next(c for c in module_code.co_consts if isinstance(c, types.CodeType))
        twins = {c.co_name: c for c in factory.co_consts if isinstance(c, types.CodeType)}
        return twins[compiled.impl_name], twins[compiled.restore_name]

    impl_code, restore_code = compile_twins()
    names = impl_code.co_varnames + impl_code.co_cellvars + restore_code.co_varnames + restore_code.co_cellvars
    local_names = [n for n in dict.fromkeys(names) if n not in (RESUME, STATE_ARG)]
    factory_def = compiled.module.body[0]
    restore_def = factory_def.body[1]  # type: ignore[attr-defined]
    n_globals = sum(isinstance(s, ast.Global) for s in restore_def.body)
    restore_def.body[n_globals : n_globals + 1] = restore_prologue(local_names, node)
    impl_code, restore_code = compile_twins()
    impl_code = impl_code.replace(co_name=code.co_name, co_qualname=qualname)
    restore_code = restore_code.replace(co_name=code.co_name, co_qualname=qualname)
    spec = GeneratorSpec(
        module=module,
        qualname=qualname,
        name=code.co_name,
        source_hash=digest,
        is_async=compiled.is_async,
        impl_code=impl_code,
        restore_code=restore_code,
        globals=globals_,
        freevars=code.co_freevars,
        yield_points=compiled.yield_points,
        user_locals=tuple(n for n in local_names if not n.startswith(HIDDEN_PREFIX)),
        code_change=code_change,
    )
    with _lock:
        _by_twin_code[id(impl_code)] = (impl_code, spec)
        _by_twin_code[id(restore_code)] = (restore_code, spec)
        _by_source_code[id(code)] = (code, spec)
    logger.debug("compiled %s with %d yield points", what, len(spec.yield_points))
    return spec


def spec_for_function(func: types.FunctionType, code_change: CodeChange | None = None, register: bool = False) -> GeneratorSpec:
    """The spec of generator function ``func``'s code (compiled on first use)."""
    with _lock:
        spec = _lookup(_by_source_code, func.__code__)
    if spec is None or (code_change is not None and spec.code_change is not code_change):
        spec = _build(func.__code__, func.__globals__, func.__module__, func.__qualname__, code_change)
    if register:
        with _lock:
            _by_name[(spec.module, spec.qualname)] = spec
    return spec


def spec_for_code(code: types.CodeType, globals_: dict[str, Any]) -> GeneratorSpec:
    """The spec for a code object of a native generator (used by :func:`capture` and loading)."""
    with _lock:
        spec = _lookup(_by_source_code, code)
    if spec is not None:
        return spec
    return _build(code, globals_, globals_.get("__name__", "__main__"), code.co_qualname, None)


def spec_for_generator(gen: Any) -> GeneratorSpec | None:
    """The spec of a (async) generator object created by a compiled twin, else ``None``."""
    code = getattr(gen, "gi_code", None) or getattr(gen, "ag_code", None)
    return _lookup(_by_twin_code, code)


def resolve_spec(module: str, qualname: str) -> GeneratorSpec:
    """Find the spec a pickle refers to by module and qualified name.

    Nested functions (``outer.<locals>.inner``) are found as code constants of their
    enclosing function, so their generators load even before ``outer`` has run; their
    closure values come from the pickle.
    """
    with _lock:
        spec = _by_name.get((module, qualname))
    if spec is not None:
        return spec
    name = f"{module}.{qualname}"
    try:
        target: Any = importlib.import_module(module)
    except ImportError as exc:
        raise GeneratorStateError(f"cannot load generator {name}: module {module!r} cannot be imported ({exc})") from exc
    parts = qualname.split(".")
    for index, part in enumerate(parts):
        if part == "<locals>":
            return _nested_spec(target, qualname, name)
        try:
            target = getattr(target, part)
        except AttributeError as exc:
            raise GeneratorStateError(
                f"cannot load generator {name}: {'.'.join([module] + parts[:index])} has no attribute {part!r} "
                "(was the function renamed or removed?)"
            ) from exc
    target = inspect.unwrap(getattr(target, "__func__", target), stop=lambda f: hasattr(f, "__gencopy_spec__"))
    spec = getattr(target, "__gencopy_spec__", None)
    if spec is not None:
        return spec
    if isinstance(target, types.FunctionType) and (inspect.isgeneratorfunction(target) or inspect.isasyncgenfunction(target)):
        return spec_for_function(target)  # a captured native generator's function
    raise GeneratorStateError(f"cannot load generator {name}: it is not a generator function")


def _nested_spec(enclosing: Any, qualname: str, name: str) -> GeneratorSpec:
    function = inspect.unwrap(getattr(enclosing, "__func__", enclosing))
    code = getattr(function, "__code__", None)
    found = _find_code(code, qualname) if isinstance(code, types.CodeType) else None
    if found is None:
        raise GeneratorStateError(
            f"cannot load generator {name}: no function with that qualified name is defined inside "
            f"{getattr(function, '__qualname__', function)!r} (was it renamed or moved?)"
        )
    return spec_for_code(found, function.__globals__)


def _find_code(code: types.CodeType, qualname: str) -> types.CodeType | None:
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            if const.co_qualname == qualname:
                return const
            found = _find_code(const, qualname)
            if found is not None:
                return found
    return None
