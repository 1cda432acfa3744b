"""Jumps out of a ``try`` whose ``finally`` contains a yield, carried as exceptions.

The compiler turns such a ``finally`` into "catch, run the block, re-raise" so that the
block can be re-entered; a ``return``/``break``/``continue`` leaving the ``try`` then has
to reach the block as an exception (a :class:`~.runtime.JumpSignal`), and the code after
the block turns it back into the jump.
"""

from __future__ import annotations

import ast
import copy
from typing import Callable

from . import templates as T

__all__ = ["JumpConverter", "may_catch_signals"]


def may_catch_signals(handler: ast.ExceptHandler) -> bool:
    """Whether ``except <type>`` might catch a jump signal (a ``BaseException`` subclass)."""
    kind = handler.type
    if kind is None:
        return True
    names = kind.elts if isinstance(kind, ast.Tuple) else [kind]
    for item in names:
        if not isinstance(item, (ast.Name, ast.Attribute)):
            return True  # computed at run time: cannot tell
        if (item.id if isinstance(item, ast.Name) else item.attr) == "BaseException":
            return True
    return False


class JumpConverter:
    """Turn ``return``/``break``/``continue`` leaving a ``try`` into raised jump signals.

    A ``finally`` containing a yield is compiled as "catch, run the block, re-raise", so a
    jump out of its ``try`` must travel as an exception to reach that block; the code after
    the block turns the signal back into the jump.  Refused where something between the
    jump and the ``try`` would see the signal: a ``with`` block (its ``__exit__`` would get
    an exception instead of ``None``) or a handler that may catch ``BaseException``.
    """

    def __init__(self, reject: Callable[[ast.AST, str], Exception]) -> None:
        self.reject = reject
        #: The kinds of jump converted (``"Return"``, ``"Break"``, ``"Continue"``).
        self.kinds: set[str] = set()

    def signal(self, node: ast.stmt) -> ast.stmt:
        kind = type(node).__name__
        self.kinds.add(kind)
        args = [] if kind != "Return" else [node.value if node.value is not None else ast.Constant(value=None)]
        call = ast.Call(func=T.name(f"_gc_{kind}"), args=args, keywords=[])
        return ast.copy_location(ast.Raise(exc=call, cause=None), node)

    def convert(self, body: list[ast.stmt], in_loop: bool, blocker: str) -> list[ast.stmt]:
        out: list[ast.stmt] = []
        for node in body:
            out.append(self.statement(node, in_loop, blocker))
        return out

    def statement(self, node: ast.stmt, in_loop: bool, blocker: str) -> ast.stmt:
        if isinstance(node, ast.Return) or (isinstance(node, (ast.Break, ast.Continue)) and not in_loop):
            if blocker:
                kind = type(node).__name__.lower()
                raise self.reject(node, f"a '{kind}' inside {blocker} leaving a try block whose 'finally' contains a yield")
            return self.signal(node)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            return node
        node = copy.copy(node)
        if isinstance(node, (ast.For, ast.AsyncFor, ast.While)):
            node.body = self.convert(node.body, True, blocker)
            node.orelse = self.convert(node.orelse, in_loop, blocker)
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            node.body = self.convert(node.body, in_loop, blocker or "a 'with' block")
        elif isinstance(node, ast.Try):
            catching = any(may_catch_signals(h) for h in node.handlers)
            node.body = self.convert(node.body, in_loop, blocker or ("a 'try' whose handlers may catch BaseException" if catching else ""))
            node.handlers = [self.handler(h, in_loop, blocker) for h in node.handlers]
            node.orelse = self.convert(node.orelse, in_loop, blocker)
            node.finalbody = self.convert(node.finalbody, in_loop, blocker)
        elif type(node).__name__ == "TryStar":
            node.body = self.convert(node.body, in_loop, blocker or "try/except*")  # type: ignore[attr-defined]
            node.handlers = [self.handler(h, in_loop, blocker or "try/except*") for h in node.handlers]  # type: ignore[attr-defined]
            node.orelse = self.convert(node.orelse, in_loop, blocker)  # type: ignore[attr-defined]
            node.finalbody = self.convert(node.finalbody, in_loop, blocker)  # type: ignore[attr-defined]
        elif isinstance(node, ast.If):
            node.body = self.convert(node.body, in_loop, blocker)
            node.orelse = self.convert(node.orelse, in_loop, blocker)
        elif isinstance(node, ast.Match):
            node.cases = [copy.copy(case) for case in node.cases]
            for case in node.cases:
                case.body = self.convert(case.body, in_loop, blocker)
        return node

    def handler(self, handler: ast.ExceptHandler, in_loop: bool, blocker: str) -> ast.ExceptHandler:
        handler = copy.copy(handler)
        handler.body = self.convert(handler.body, in_loop, blocker)
        return handler
