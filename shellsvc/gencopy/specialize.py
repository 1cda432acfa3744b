"""Partial evaluation of the generated body for a fresh call (``_gc_r == 0``).

Re-entry guards are only needed by the restore twin; folding them away gives the fresh
twin — what calling a ``@resumable`` function runs — the user's code plus one local store
per yield.
"""

from __future__ import annotations

import ast
import copy

__all__ = ["specialize_fresh"]

#: The re-entry target local of generated code (see :mod:`.compiler`).
RESUME = "_gc_r"

_COMPARE = {
    ast.Eq: lambda a, b: a == b,
    ast.NotEq: lambda a, b: a != b,
    ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b,
    ast.Gt: lambda a, b: a > b,
    ast.GtE: lambda a, b: a >= b,
}
_NONEMPTY_BODIES = (ast.For, ast.AsyncFor, ast.While, ast.If, ast.With, ast.AsyncWith, ast.Try, ast.ExceptHandler)


class _Specializer(ast.NodeTransformer):
    """Partially evaluate generated code for ``_gc_r == 0``: the twin a fresh call runs.

    Every re-entry guard folds away, so a fresh ``@resumable`` generator runs the user's
    code plus one local store per yield; only restored generators run the guarded twin.
    """

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id == RESUME and isinstance(node.ctx, ast.Load):
            return ast.copy_location(ast.Constant(value=0), node)
        return node

    def visit_Assign(self, node: ast.Assign) -> ast.AST | None:
        if len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) and node.targets[0].id == RESUME:
            return None
        return self.generic_visit(node)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.AST:
        self.generic_visit(node)
        if isinstance(node.op, ast.Not) and isinstance(node.operand, ast.Constant):
            return ast.copy_location(ast.Constant(value=not node.operand.value), node)
        return node

    def visit_BoolOp(self, node: ast.BoolOp) -> ast.AST:
        self.generic_visit(node)
        is_or = isinstance(node.op, ast.Or)
        values = list(node.values)
        while len(values) > 1 and isinstance(values[0], ast.Constant):
            if bool(values[0].value) == is_or:
                return values[0]  # short-circuits: the rest is never evaluated
            values.pop(0)
        if len(values) == 1:
            return values[0]
        node.values = values
        return node

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        self.generic_visit(node)
        if (
            len(node.ops) == 1
            and type(node.ops[0]) in _COMPARE
            and isinstance(node.left, ast.Constant)
            and isinstance(node.comparators[0], ast.Constant)
        ):
            value = _COMPARE[type(node.ops[0])](node.left.value, node.comparators[0].value)
            return ast.copy_location(ast.Constant(value=value), node)
        return node

    def visit_IfExp(self, node: ast.IfExp) -> ast.AST:
        self.generic_visit(node)
        if isinstance(node.test, ast.Constant):
            return node.body if node.test.value else node.orelse
        return node

    def visit_If(self, node: ast.If) -> ast.AST | list[ast.stmt]:
        self.generic_visit(node)
        if isinstance(node.test, ast.Constant):
            return node.body if node.test.value else node.orelse
        return self._nonempty(node)

    def generic_visit(self, node: ast.AST) -> ast.AST:
        super().generic_visit(node)
        return self._nonempty(node)

    @staticmethod
    def _nonempty(node: ast.AST) -> ast.AST:
        if isinstance(node, _NONEMPTY_BODIES) and not node.body:
            node.body = [ast.Pass()]
        return node


def specialize_fresh(body: list[ast.stmt], origin: ast.AST) -> list[ast.stmt]:
    """``body`` with every re-entry guard folded for a fresh call (see :class:`_Specializer`).

    Locations are completed first: a guard's statements inherit the guard's line (the
    user's statement), not the line of whatever encloses them once the guard is gone.
    """
    holder = ast.copy_location(ast.If(test=ast.Constant(value=True), body=copy.deepcopy(body), orelse=[]), origin)
    ast.fix_missing_locations(holder)
    module = _Specializer().visit(ast.Module(body=holder.body, type_ignores=[]))
    return module.body or [ast.Pass()]
