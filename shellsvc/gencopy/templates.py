"""Tiny AST templating: parse a snippet, then splice user nodes into named placeholders.

Generated nodes carry no location; :func:`locate` gives them the location of the user
statement they were generated for, so tracebacks point at the original source lines.
"""

from __future__ import annotations

import ast
import copy
import textwrap
from typing import Any

__all__ = ["stmts", "expr", "locate", "load", "name"]

_LOCATION_FIELDS = ("lineno", "col_offset", "end_lineno", "end_col_offset")
_CACHE: dict[str, ast.Module] = {}


class _Substitute(ast.NodeTransformer):
    def __init__(self, subs: dict[str, Any]) -> None:
        self.subs = subs

    def visit_Expr(self, node: ast.Expr) -> Any:
        if isinstance(node.value, ast.Name) and isinstance(self.subs.get(node.value.id), list):
            return self.subs[node.value.id]
        return self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> Any:
        value = self.subs.get(node.id)
        if value is None:
            return node
        if isinstance(value, str):
            return ast.Name(id=value, ctx=node.ctx)
        if isinstance(value, ast.AST):
            return value
        raise TypeError(f"template placeholder {node.id} cannot take {value!r}")


def _parse(src: str) -> ast.Module:
    tree = _CACHE.get(src)
    if tree is None:
        tree = ast.parse(textwrap.dedent(src))
        for node in ast.walk(tree):
            for field in _LOCATION_FIELDS:
                if hasattr(node, field):
                    delattr(node, field)
        _CACHE[src] = tree
    return copy.deepcopy(tree)


def stmts(src: str, **subs: Any) -> list[ast.stmt]:
    """Statements of ``src`` with placeholders replaced.

    A placeholder ``NAME`` becomes ``subs['NAME']``: a ``str`` renames it, an expression
    node replaces it, and a list of statements replaces a statement consisting of ``NAME``.
    """
    tree = _Substitute(subs).visit(_parse(src))
    return tree.body


def expr(src: str, **subs: Any) -> ast.expr:
    """One expression built from ``src`` (see :func:`stmts`)."""
    (statement,) = stmts(src, **subs)
    assert isinstance(statement, ast.Expr)
    return statement.value


def name(identifier: str, store: bool = False) -> ast.Name:
    return ast.Name(id=identifier, ctx=ast.Store() if store else ast.Load())


def load(target: ast.expr) -> ast.expr:
    """A copy of assignment target ``target`` usable as an expression reading its value."""
    node = copy.deepcopy(target)
    for sub in ast.walk(node):
        if hasattr(sub, "ctx"):
            sub.ctx = ast.Load()
    return node


def locate(nodes: list[ast.stmt], origin: ast.AST) -> list[ast.stmt]:
    """Give generated top-level ``nodes`` the location of ``origin`` where they have none."""
    for node in nodes:
        if getattr(node, "lineno", None) is None:
            ast.copy_location(node, origin)
    return nodes
