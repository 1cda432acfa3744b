"""Turning REPL input into code that runs off the app's event loop.

Top-level ``await``, ``async for`` and ``async with`` are rewritten into calls of
bridge helpers (``__shellsvc_await__`` …) that hand only the awaited object to the
app's loop and block the session's worker thread until it completes. The cell itself
is ordinary synchronous code, so none of the user's statements run on the loop thread.

Loops, comprehensions and function bodies also get a scheduler checkpoint (see
``scheduler``): one attribute test per iteration, through which a long-running command
gives the GIL's turn to other sessions.
"""

from __future__ import annotations

import ast
import codeop
import collections
import itertools
import linecache
import weakref
from dataclasses import dataclass
from types import CodeType
from typing import Any

from .scheduler import CHECKPOINT_NAME

__all__ = ["CompiledCell", "compile_cell", "is_complete", "AWAIT_NAME", "AITER_NAME", "AWITH_NAME"]

AWAIT_NAME = "__shellsvc_await__"
AITER_NAME = "__shellsvc_aiter__"
AWITH_NAME = "__shellsvc_awith__"

_cell_numbers = itertools.count(1)

#: Weak references to the code objects of each cell whose source is registered; the
#: source leaves linecache with the last of them (see :func:`_keep_source_while_used`).
_live_cells: dict[str, set[weakref.ref[CodeType]]] = {}
#: Sources of the latest cells that did not compile, kept for their error messages.
_failed_cells: collections.deque[str] = collections.deque()
_FAILED_KEPT = 64

_command_compiler = codeop.CommandCompiler()
_command_compiler.compiler.flags |= ast.PyCF_ALLOW_TOP_LEVEL_AWAIT


def is_complete(source: str) -> bool:
    """Whether ``source`` is a complete cell (a syntax error counts as complete: it is reported).

    Incomplete means the user is mid-statement: an open bracket, a trailing ``:``, a
    backslash continuation. The interactive front ends ask for another line then.
    """
    if not source.strip():
        return True
    try:
        return _command_compiler(source, "<input>", "exec") is not None
    except (SyntaxError, ValueError, OverflowError):
        return True


@dataclass(frozen=True)
class CompiledCell:
    """A cell ready to run: statements, then an optional trailing expression to echo."""

    filename: str
    body: CodeType | None
    last_expr: CodeType | None


class _AsyncRewriter(ast.NodeTransformer):
    """Rewrites top-level async constructs into synchronous bridge calls.

    Function and class bodies are left alone: an ``await`` inside ``async def`` belongs
    to that coroutine, which the user awaits (and so hands to the loop) as a whole.
    """

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        node.decorator_list = [self.visit(d) for d in node.decorator_list]
        return node

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> ast.AST:
        node.decorator_list = [self.visit(d) for d in node.decorator_list]
        return node

    def visit_Lambda(self, node: ast.Lambda) -> ast.AST:
        return node

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.AST:
        return node

    def visit_Await(self, node: ast.Await) -> ast.AST:
        value = self.visit(node.value)
        return ast.copy_location(
            ast.Call(func=ast.Name(AWAIT_NAME, ast.Load()), args=[value], keywords=[]), node
        )

    def visit_AsyncFor(self, node: ast.AsyncFor) -> ast.AST:
        self.generic_visit(node)
        iterator = ast.Call(func=ast.Name(AITER_NAME, ast.Load()), args=[node.iter], keywords=[])
        new = ast.For(target=node.target, iter=iterator, body=node.body, orelse=node.orelse,
                      type_comment=node.type_comment)
        return ast.copy_location(new, node)

    def visit_AsyncWith(self, node: ast.AsyncWith) -> ast.AST:
        self.generic_visit(node)
        items = [
            ast.withitem(
                context_expr=ast.Call(func=ast.Name(AWITH_NAME, ast.Load()), args=[item.context_expr],
                                      keywords=[]),
                optional_vars=item.optional_vars,
            )
            for item in node.items
        ]
        return ast.copy_location(ast.With(items=items, body=node.body, type_comment=node.type_comment), node)

    def visit_comprehension(self, node: ast.comprehension) -> ast.AST:
        self.generic_visit(node)
        if node.is_async:
            node.iter = ast.Call(func=ast.Name(AITER_NAME, ast.Load()), args=[node.iter], keywords=[])
            node.is_async = 0
        return node


def _position(anchor: ast.AST) -> dict[str, Any]:
    """``anchor``'s source position, for new nodes (tracebacks then show that line)."""
    return {"lineno": anchor.lineno, "col_offset": anchor.col_offset,  # type: ignore[attr-defined]
            "end_lineno": anchor.end_lineno, "end_col_offset": anchor.end_col_offset}  # type: ignore[attr-defined]


def _checkpoint_test(pos: dict[str, Any]) -> ast.expr:
    """``__shellsvc_tick__.preempt``"""
    return ast.Attribute(value=ast.Name(CHECKPOINT_NAME, ast.Load(), **pos), attr="preempt", ctx=ast.Load(), **pos)


def _checkpoint_call(pos: dict[str, Any]) -> ast.expr:
    """``__shellsvc_tick__()``"""
    return ast.Call(func=ast.Name(CHECKPOINT_NAME, ast.Load(), **pos), args=[], keywords=[], **pos)


def _prepend_checkpoint(body: list[ast.stmt]) -> None:
    index = 1 if len(body) > 1 and _is_docstring(body[0]) else 0
    pos = _position(body[index])
    body.insert(index, ast.If(test=_checkpoint_test(pos), body=[ast.Expr(_checkpoint_call(pos), **pos)],
                              orelse=[], **pos))


_SKIP = (ast.expr_context, ast.operator, ast.boolop, ast.unaryop, ast.cmpop, ast.Constant, ast.Name)


def _insert_checkpoints(tree: ast.Module) -> None:
    """Put ``if __shellsvc_tick__.preempt: __shellsvc_tick__()`` where code can spin.

    At the top of loop bodies and function bodies (recursion), and as the first
    condition of each comprehension. ``async def`` bodies are left alone: they run
    on the app's loop, where the scheduler has nothing to rotate. Mutates ``tree``;
    a hand-rolled walk because ``NodeTransformer`` costs ~5x more per cell.
    """
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.AsyncFunctionDef):
            stack.extend(node.decorator_list)
            continue
        for field in node._fields:
            value = getattr(node, field, None)
            if isinstance(value, list):
                stack.extend(v for v in value if isinstance(v, ast.AST) and not isinstance(v, _SKIP))
            elif isinstance(value, ast.AST) and not isinstance(value, _SKIP):
                stack.append(value)
        if isinstance(node, (ast.While, ast.For, ast.FunctionDef)):
            _prepend_checkpoint(node.body)
        elif isinstance(node, ast.comprehension) and not node.is_async:
            # ``not tick.preempt or tick()``: true either way, so no element is filtered.
            pos = _position(node.iter)
            test = ast.BoolOp(op=ast.Or(), values=[
                ast.UnaryOp(op=ast.Not(), operand=_checkpoint_test(pos), **pos), _checkpoint_call(pos)], **pos)
            node.ifs.insert(0, test)


def _is_docstring(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)


def cache_source(filename: str, source: str) -> None:
    """Put ``source`` into :mod:`linecache` as ``filename``, so tracebacks and
    ``inspect.getsource`` show the user's lines for code compiled from it."""
    lines = source.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    linecache.cache[filename] = (len(source), None, lines, filename)


def _keep_source_while_used(filename: str, codes: list[CodeType | None]) -> None:
    """Drop the cell's source from linecache once no code object compiled from it is alive.

    Functions defined in the cell, frames in a kept traceback and patches built from them
    keep their code objects - and so the source - alive; every other cell's text would
    otherwise stay in memory for as long as the process runs.
    """
    refs: set[weakref.ref[CodeType]] = set()

    def dead(ref: weakref.ref[CodeType]) -> None:  # any thread, any time: GIL-atomic steps only
        refs.discard(ref)
        if not refs:
            _live_cells.pop(filename, None)
            linecache.cache.pop(filename, None)

    stack = [code for code in codes if code is not None]
    while stack:
        code = stack.pop()
        refs.add(weakref.ref(code, dead))
        stack.extend(const for const in code.co_consts if isinstance(const, CodeType))
    if refs:
        _live_cells[filename] = refs
    else:
        linecache.cache.pop(filename, None)


def _keep_failed_source(filename: str) -> None:
    """A cell that did not compile: its source stays for the latest few error messages."""
    _failed_cells.append(filename)
    while len(_failed_cells) > _FAILED_KEPT:
        linecache.cache.pop(_failed_cells.popleft(), None)


def compile_cell(source: str, *, label: str = "shell", checkpoints: bool = True) -> CompiledCell:
    """Compile a complete cell; raises :class:`SyntaxError` pointing at the user's text."""
    filename = f"<{label}-{next(_cell_numbers)}>"
    cache_source(filename, source)
    try:
        cell = _compile_registered(source, filename, checkpoints)
    except BaseException:
        _keep_failed_source(filename)
        raise
    _keep_source_while_used(filename, [cell.body, cell.last_expr])
    return cell


def _compile_registered(source: str, filename: str, checkpoints: bool) -> CompiledCell:
    tree = ast.parse(source, filename, "exec")
    # The rewrites are Python-level tree walks (tens of µs): skip them when a cheap text
    # test shows there is nothing to rewrite (a false positive only costs the walk).
    if "async" in source or "await" in source:
        tree = ast.fix_missing_locations(_AsyncRewriter().visit(tree))
    if checkpoints and ("for" in source or "while" in source or "def" in source):
        _insert_checkpoints(tree)
    last_expr: ast.Expression | None = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last_expr = ast.Expression(tree.body[-1].value)
        del tree.body[-1]
    body = compile(tree, filename, "exec") if tree.body else None
    expr = compile(last_expr, filename, "eval") if last_expr is not None else None
    return CompiledCell(filename, body, expr)
