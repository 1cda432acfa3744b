"""Compile a function body so its code object can be assigned to an existing function.

``func.__code__ = code`` only works when ``code`` has the same free variables (closure
cells) as the function, and a method body needs its class around it for ``super()``
and private-name mangling. This module compiles a ``def`` inside a synthetic enclosing
function (defining the target's free variables) and, for methods, a synthetic class, then
picks the inner code object out. It also builds the small prologues that the scoped and
per-call machinery put in front of a body (see :mod:`shellsvc.patching.instrument`).
"""

from __future__ import annotations

import __future__
import ast
import copy
import inspect
import itertools
import linecache
import threading
import textwrap
import types
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from shellsvc.engine.compiler import cache_source

from .errors import PatchCompileError, PatchRefused

__all__ = [
    "FunctionSource",
    "Params",
    "class_name_of",
    "compile_function",
    "forward_call",
    "function_kind",
    "parse_function_source",
    "register_source",
    "remember_source",
    "running_source",
    "source_of_code",
]

FunctionDef = ast.FunctionDef | ast.AsyncFunctionDef

_FUTURE_MASK = 0
for _feature in __future__.all_feature_names:
    _FUTURE_MASK |= getattr(__future__, _feature).compiler_flag

_OUTER_NAME = "__shellsvc_outer__"
_patch_counter = itertools.count(1)


@dataclass(frozen=True)
class FunctionSource:
    """A parsed ``def`` with absolute line numbers, and where it came from."""

    node: FunctionDef
    filename: str
    text: str  # the def's source text, dedented, decorators included

    @property
    def name(self) -> str:
        return self.node.name


@dataclass(frozen=True)
class Params:
    """The parameter names of a code object, enough to forward a call unchanged."""

    positional: tuple[str, ...]
    varargs: str | None
    kwonly: tuple[str, ...]
    varkw: str | None
    posonly_count: int

    @classmethod
    def of(cls, code: types.CodeType) -> Params:
        names = code.co_varnames
        npos = code.co_argcount
        nkw = code.co_kwonlyargcount
        index = npos + nkw
        varargs = varkw = None
        if code.co_flags & inspect.CO_VARARGS:
            varargs = names[index]
            index += 1
        if code.co_flags & inspect.CO_VARKEYWORDS:
            varkw = names[index]
        return cls(names[:npos], varargs, names[npos : npos + nkw], varkw, code.co_posonlyargcount)

    @property
    def simple(self) -> bool:
        """No ``*args``, keyword-only or ``**kwargs``: CPython specialises calls to such functions."""
        return not (self.varargs or self.kwonly or self.varkw)

    def signature_text(self, extra_kwonly: tuple[str, ...] = (), extra_positional: tuple[str, ...] = ()) -> str:
        """A parameter list without defaults (defaults live on the function object)."""
        parts = list(self.positional) + list(extra_positional)
        if self.posonly_count:
            parts.insert(self.posonly_count, "/")
        kwonly = self.kwonly + extra_kwonly
        if self.varargs:
            parts.append("*" + self.varargs)
        elif kwonly:
            parts.append("*")
        parts.extend(kwonly)
        if self.varkw:
            parts.append("**" + self.varkw)
        return ", ".join(parts)


def function_kind(code: types.CodeType) -> str:
    """``"function"``, ``"coroutine"``, ``"generator"`` or ``"async generator"``."""
    if code.co_flags & inspect.CO_COROUTINE:
        return "coroutine"
    if code.co_flags & inspect.CO_ASYNC_GENERATOR:
        return "async generator"
    if code.co_flags & inspect.CO_GENERATOR:
        return "generator"
    return "function"


def forward_call(func: ast.expr, params: Params, extra: dict[str, str] | None = None) -> ast.Call:
    """``func(a, b, *args, c=c, **kw)``: call ``func`` with this frame's own arguments."""
    args: list[ast.expr] = [ast.Name(name, ast.Load()) for name in params.positional]
    if params.varargs:
        args.append(ast.Starred(ast.Name(params.varargs, ast.Load()), ast.Load()))
    keywords = [ast.keyword(name, ast.Name(name, ast.Load())) for name in params.kwonly]
    for key, local in (extra or {}).items():
        keywords.append(ast.keyword(key, ast.Name(local, ast.Load())))
    if params.varkw:
        keywords.append(ast.keyword(None, ast.Name(params.varkw, ast.Load())))
    return ast.Call(func, args, keywords)


def return_forwarded(call: ast.expr, kind: str) -> list[ast.stmt]:
    """Statements that hand this frame's result over to ``call``, for each kind of function."""
    if kind == "coroutine":
        return [ast.Return(ast.Await(call))]
    if kind == "generator":
        return [ast.Return(ast.YieldFrom(call))]
    if kind == "async generator":
        item = "__shellsvc_item__"
        loop = ast.AsyncFor(
            ast.Name(item, ast.Store()), call, [ast.Expr(ast.Yield(ast.Name(item, ast.Load())))], []
        )
        return [loop, ast.Return(None)]
    return [ast.Return(call)]


def register_source(text: str, label: str) -> str:
    """Put ``text`` into :mod:`linecache` under a unique pseudo file name; return the name.

    Tracebacks, ``inspect.getsource`` and the tracer then show patched code.
    """
    filename = f"<shellsvc-patch-{next(_patch_counter)} {label}>"
    cache_source(filename, text)
    return filename


def parse_function_source(text: str, filename: str, first_line: int = 1) -> FunctionSource:
    """Parse source text holding one ``def`` (decorators allowed) at ``first_line`` of ``filename``."""
    dedented = textwrap.dedent(text)
    try:
        tree = ast.parse(dedented, filename)
    except SyntaxError as exc:
        raise PatchCompileError(f"replacement source does not compile: {exc}") from exc
    defs = [node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
    if len(tree.body) != 1 or len(defs) != 1:
        raise PatchRefused(
            "replacement source must hold exactly one 'def' (or be a bare function body); "
            f"found {len(tree.body)} top-level statement(s)"
        )
    if first_line != 1:
        ast.increment_lineno(tree, first_line - 1)
    return FunctionSource(defs[0], filename, dedented)


_source_cache: weakref.WeakKeyDictionary[types.CodeType, tuple[int, FunctionSource | None]] = weakref.WeakKeyDictionary()


def source_of_code(code: types.CodeType) -> FunctionSource | None:
    """The ``def`` a code object was compiled from, or None when no source is available.

    Cached per code object while the file's cached text (linecache) is unchanged.
    """
    stamp = _stamp(code.co_filename)
    cached = _source_cache.get(code)
    if cached is not None and cached[0] == stamp and stamp:
        return cached[1]
    found = _find_source(code)
    _source_cache[code] = (_stamp(code.co_filename), found)  # _find_source may have refreshed linecache
    return found


def _stamp(filename: str) -> int:
    """Identifies the text linecache holds for ``filename`` (0: none); changes when it is reloaded."""
    lines = linecache.cache.get(filename)
    return id(lines[2]) if lines else 0


_verified: weakref.WeakKeyDictionary[types.CodeType, tuple[int, str | None, FunctionSource | None]] = weakref.WeakKeyDictionary()


def running_source(code: types.CodeType, class_name: str | None) -> FunctionSource | None:
    """The ``def`` of ``code`` if its source still compiles to exactly this code, else None.

    A file edited since import no longer describes the running code; patches built from
    it would silently change more than asked. Cached per code object and file text.
    """
    source = source_of_code(code)
    if source is None:
        return None
    stamp = _stamp(code.co_filename)
    cached = _verified.get(code)
    if cached is not None and stamp and cached[0] == stamp and cached[1] == class_name:
        return cached[2]
    try:
        compiled, _ = compile_function(source, freevars=code.co_freevars, class_name=class_name, future_flags=code.co_flags)
    except PatchCompileError:
        result = None
    else:
        result = source if same_body(compiled, code) else None
    _verified[code] = (stamp, class_name, result)
    return result


def remember_source(code: types.CodeType, source: FunctionSource, class_name: str | None) -> None:
    """Record that ``code`` was just compiled from ``source``: patching it again needs no check."""
    stamp = _stamp(code.co_filename)
    if stamp:
        _source_cache[code] = (stamp, source)
        _verified[code] = (stamp, class_name, source)


def class_name_of(fn: types.FunctionType) -> str | None:
    """The innermost class in ``fn``'s qualname (needed for private-name mangling), if any."""
    parts = fn.__qualname__.split(".")
    owner = parts[-2] if len(parts) > 1 else "<"
    return None if owner.startswith("<") else owner  # "<locals>": defined in a function, not a class


_DEF_INDEX_SIZE = 32
#: The fields holding statements (or handlers / match cases, which hold statements).
_STATEMENT_LISTS = ("body", "orelse", "finalbody", "handlers", "cases")
#: filename -> (the linecache lines it was built from, first line -> defs starting there).
_def_index: OrderedDict[str, tuple[list[str], dict[int, list[FunctionDef]] | None]] = OrderedDict()
_def_index_lock = threading.Lock()


def _defs_of(filename: str, lines: list[str]) -> dict[int, list[FunctionDef]] | None:
    """Every ``def`` in a file by its first line (its first decorator's, if any): one parse per file text.

    Patching many functions of one module (or preparing a plugin class) then finds each
    one's source without re-reading and re-tokenizing the file per function.
    """
    with _def_index_lock:
        cached = _def_index.get(filename)
        if cached is not None and cached[0] is lines:
            _def_index.move_to_end(filename)
            return cached[1]
    try:
        tree = ast.parse("".join(lines), filename)
    except (SyntaxError, ValueError):  # mid-edit, or not Python: the slower search may still isolate the def
        index = None
    else:
        index = {}
        stack: list[Any] = list(tree.body)
        while stack:  # statements only: a def is never inside an expression (ast.walk would visit them all)
            node = stack.pop()
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = node.decorator_list[0].lineno if node.decorator_list else node.lineno
                index.setdefault(first, []).append(node)
            for field in _STATEMENT_LISTS:
                children = getattr(node, field, None)
                if children:
                    stack.extend(children)
    with _def_index_lock:
        _def_index[filename] = (lines, index)
        _def_index.move_to_end(filename)
        while len(_def_index) > _DEF_INDEX_SIZE:
            _def_index.popitem(last=False)
    return index


def _find_source(code: types.CodeType) -> FunctionSource | None:
    filename = code.co_filename
    linecache.checkcache(filename)
    lines = linecache.getlines(filename)
    index = _defs_of(filename, lines) if lines else None
    if index is None:
        return _find_source_with_inspect(code)  # e.g. a loader-provided source (zip import) needs the module
    first = code.co_firstlineno
    for node in index.get(first, ()):
        if node.name == code.co_name:
            return FunctionSource(node, filename, textwrap.dedent("".join(lines[first - 1 : node.end_lineno])))
    return None


def _find_source_with_inspect(code: types.CodeType) -> FunctionSource | None:
    try:
        lines, first_line = inspect.getsourcelines(code)
    except (OSError, TypeError):
        return None
    try:
        found = parse_function_source("".join(lines), code.co_filename, first_line)
    except PatchRefused:  # a lambda, or a def whose text inspect could not isolate
        return None
    return found if found.name == code.co_name else None


def compile_function(
    source: FunctionSource,
    *,
    freevars: tuple[str, ...],
    class_name: str | None,
    future_flags: int = 0,
    prologue: list[ast.stmt] | None = None,
    extra_kwonly: tuple[str, ...] = (),
    extra_positional: tuple[str, ...] = (),
    pad_freevars: bool = False,
    name: str | None = None,
    qualname: str | None = None,
) -> tuple[types.CodeType, types.CodeType]:
    """Compile ``source`` so its code fits a function with ``freevars``.

    Returns ``(function_code, outer_code)``; ``outer_code`` run with the target's globals
    returns the new function object (used to evaluate new default values).
    ``prologue`` statements go first (after a docstring); ``extra_kwonly`` parameters are
    appended with ``None`` defaults. ``pad_freevars`` references every free variable
    so a body that no longer uses one still has the closure layout of the target.
    """
    # Shallow copies of the nodes we change: compile() never mutates the AST it is given.
    fdef: FunctionDef = copy.copy(source.node)
    fdef.args = copy.copy(fdef.args)
    fdef.args.args = list(fdef.args.args)
    fdef.args.defaults = list(fdef.args.defaults)
    fdef.args.kwonlyargs = list(fdef.args.kwonlyargs)
    fdef.args.kw_defaults = list(fdef.args.kw_defaults)
    fdef.decorator_list = []
    line = fdef.lineno
    body = list(fdef.body)
    first = body[0] if body else None
    has_doc = (
        isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str)
    )
    head = body[:1] if has_doc else []
    rest = body[1:] if has_doc else body
    extra: list[ast.stmt] = []
    if pad_freevars and freevars:
        names = [ast.Name(v, ast.Load()) for v in freevars]
        extra.append(ast.If(ast.Constant(False), [ast.Expr(ast.Tuple(names, ast.Load()))], []))
    for stmt in extra + (prologue or []):
        _place(stmt, line)
    # Padding goes last: before a 'nonlocal' statement it would be a syntax error.
    fdef.body = head + (prologue or []) + rest + extra
    for name in extra_positional:
        fdef.args.args.append(ast.arg(name, None, lineno=line, col_offset=0, end_lineno=line, end_col_offset=0))
        fdef.args.defaults.append(ast.Constant(None, lineno=line, col_offset=0, end_lineno=line, end_col_offset=0))
    for kw in extra_kwonly:
        fdef.args.kwonlyargs.append(ast.arg(kw, None, lineno=line, col_offset=0, end_lineno=line, end_col_offset=0))
        fdef.args.kw_defaults.append(ast.Constant(None, lineno=line, col_offset=0, end_lineno=line, end_col_offset=0))

    # The synthetic nodes around the def are positioned one by one: walking the whole
    # tree (the def's body included) would cost as much as compiling it.
    outer_body: list[ast.stmt] = []
    plain_free = [v for v in freevars if not (v == "__class__" and class_name)]
    if plain_free:
        outer_body.append(_place(ast.Assign([ast.Name(v, ast.Store()) for v in plain_free], ast.Constant(None)), line))
    if class_name:
        outer_body.append(_place(ast.ClassDef(class_name, [], [], [fdef], []), line, deep=False))
        getter: ast.expr = ast.Subscript(
            ast.Attribute(ast.Name(class_name, ast.Load()), "__dict__", ast.Load()),
            ast.Constant(fdef.name),
            ast.Load(),
        )
    else:
        outer_body.append(fdef)
        getter = ast.Name(fdef.name, ast.Load())
    outer_body.append(_place(ast.Return(getter), line))
    outer = ast.FunctionDef(_OUTER_NAME, ast.arguments([], [], None, [], [], None, []), outer_body, [], None)
    module = ast.Module([_place(outer, line, deep=False)], [])
    try:
        module_code = compile(module, source.filename, "exec", flags=future_flags & _FUTURE_MASK, dont_inherit=True)
    except SyntaxError as exc:
        raise PatchCompileError(f"replacement for {qualname or fdef.name} does not compile: {exc}") from exc
    outer_code = _find_code(module_code, _OUTER_NAME)
    inner = _find_code(outer_code, fdef.name, through=class_name)
    if inner is None or outer_code is None:
        raise PatchCompileError(f"could not find the compiled body of {fdef.name!r}")
    inner = inner.replace(co_name=name or inner.co_name, co_qualname=qualname or inner.co_qualname)
    return inner, outer_code


def _place(node: Any, line: int, *, deep: bool = True) -> Any:
    """Give a synthetic node (and, if ``deep``, everything in it) the position ``line``.

    A plain stack instead of :func:`ast.walk` (generators within generators): this runs
    for every prologue compiled, on every method of a newly loaded plugin class.
    """
    stack = [node]
    while stack:
        item = stack.pop()
        if item._attributes:  # stmt, expr, arg, keyword...: the nodes with a position
            item.lineno = item.end_lineno = line
            item.col_offset = item.end_col_offset = 0
        if deep:
            for name in item._fields:
                value = getattr(item, name, None)
                if isinstance(value, list):
                    stack.extend(v for v in value if isinstance(v, ast.AST))  # not Global.names (str)
                elif isinstance(value, ast.AST):
                    stack.append(value)
    return node


def _find_code(code: types.CodeType, name: str, through: str | None = None) -> Any:
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            if through is not None and const.co_name == through:
                return _find_code(const, name)
            if through is None and const.co_name == name:
                return const
    return None


def same_body(a: types.CodeType, b: types.CodeType) -> bool:
    """Whether two code objects run the same instructions (line numbers aside)."""
    if (a.co_code, a.co_names, a.co_varnames, a.co_freevars, a.co_cellvars) != (
        b.co_code,
        b.co_names,
        b.co_varnames,
        b.co_freevars,
        b.co_cellvars,
    ):
        return False
    if len(a.co_consts) != len(b.co_consts):
        return False
    for x, y in zip(a.co_consts, b.co_consts):
        if isinstance(x, types.CodeType) and isinstance(y, types.CodeType):
            if not same_body(x, y):
                return False
        elif type(x) is not type(y) or x != y:
            return False
    return True


def swap_constant(code: types.CodeType, placeholder: str, value: object) -> types.CodeType:
    """Replace the string constant ``placeholder`` in ``code`` by an arbitrary object."""
    consts = tuple(value if (type(c) is str and c == placeholder) else c for c in code.co_consts)
    return code.replace(co_consts=consts)
