"""Compile a generator function's AST into two re-enterable twins.

Both twins are ordinary (native) generator functions built from one guarded body:

* before every ``yield`` the body stores the yield point's number in the local ``_gc_pc``;
* every statement that contains a yield can be *re-entered*: when ``_gc_r = k`` (k != 0)
  guards skip straight-line code, re-enter loops, ``try`` and ``with`` blocks without
  re-running their set-up, and stop at yield point ``k``, where it yields
  :data:`~.runtime.RESTORE_MARK` once.  From there on ``_gc_r`` is 0.

The *restore* twin is that guarded body behind a prologue assigning saved locals.  The
*fresh* twin (what calling the decorated function runs) is the body partially evaluated
for ``_gc_r == 0`` (:func:`specialize_fresh`): every guard folds away, leaving the user's
code plus one local store per yield — straight-line code at native speed.

Everything a suspended twin needs to continue is in its frame's locals: user variables
plus a few hidden ``_gc_*`` slots (loop iterators, context managers, delegates, caught
exceptions, a pending exception or jump of a ``finally`` block).  Snapshotting is reading
``gi_frame.f_locals``; restoring is calling the restore twin.  See ``docs/gencopy.md``
for the supported constructs.
"""

from __future__ import annotations

import ast
import copy
import re
from dataclasses import dataclass, field

from . import templates as T
from .errors import UnsupportedGeneratorError
from .jumps import JumpConverter, may_catch_signals
from .specialize import specialize_fresh

__all__ = ["YieldPoint", "CompiledModule", "compile_generator", "HIDDEN_PREFIX"]

HIDDEN_PREFIX = "_gc_"
STATE_ARG = "_gc_L"
#: Counts the yields a generator has made, so a reader on another thread can tell that the
#: generator moved while it was being snapshotted (see :mod:`.state`).
COUNTER = "_gc_n"
_LABEL_RE = re.compile(r"#\s*gencopy:\s*label\s*=\s*([A-Za-z_][\w.-]*)")


@dataclass
class YieldPoint:
    """One resumption point of a compiled generator."""

    index: int
    label: str
    lineno: int
    #: ``(lineno, end_lineno, col_offset, end_col_offset)`` of the original ``yield`` node.
    position: tuple[int, int, int, int]
    is_delegation: bool = False
    #: Hidden locals the continuation needs (iterators, managers, delegates, temporaries …).
    hidden: tuple[str, ...] = ()
    #: What a native generator suspended here holds on its value stack, outermost first, as
    #: ``(kind, slot)``: ``("iter", slot)`` a ``for`` loop's iterator, ``("exit", slot)`` a
    #: ``with`` block's bound ``__exit__`` (its ``__self__`` is the manager), ``("exc", name)``
    #: the exception state saved by an ``except`` handler whose exception is in ``name``.
    native_stack: tuple[tuple[str, str], ...] = ()
    #: Hidden locals that are ``NO_EXCEPTION`` whenever a native generator is here.
    finally_slots: tuple[str, ...] = ()
    #: Why a suspended *native* generator at this point cannot be captured ("" if it can).
    capture_obstacle: str = ""


@dataclass
class CompiledModule:
    """The generated module: ``def _gc_factory(...): def <impl>; def <restore>``."""

    module: ast.Module
    impl_name: str
    restore_name: str
    factory_params: tuple[str, ...]
    yield_points: dict[int, YieldPoint] = field(default_factory=dict)
    is_async: bool = False


@dataclass
class _Context:
    """What encloses the statement being compiled."""

    hidden: tuple[str, ...] = ()
    native_stack: tuple[tuple[str, str], ...] = ()
    finally_slots: tuple[str, ...] = ()
    obstacle: str = ""

    def with_(self, **changes: object) -> "_Context":
        values = {**self.__dict__, **changes}
        return _Context(**values)  # type: ignore[arg-type]


def _contains_yield(node: ast.AST) -> bool:
    """Whether ``node`` contains a yield of *this* function (not of nested scopes)."""
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, (ast.Yield, ast.YieldFrom)):
            return True
        for child in ast.iter_child_nodes(current):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
                continue
            stack.append(child)
    return False


_KEYWORDS = {"Assert": "an 'assert'", "Delete": "a 'del'", "Import": "an 'import'", "ImportFrom": "a 'from ... import'"}


class _Compiler:
    def __init__(self, func: ast.FunctionDef | ast.AsyncFunctionDef, source_lines: dict[int, str]) -> None:
        self.func = func
        self.source_lines = source_lines
        self.is_async = isinstance(func, ast.AsyncFunctionDef)
        self.next_yield = 1
        self.next_slot = 1
        self.points: dict[int, YieldPoint] = {}
        self.labels: set[str] = set()

    # -- helpers -------------------------------------------------------------------------

    def reject(self, node: ast.AST, what: str) -> UnsupportedGeneratorError:
        line = getattr(node, "lineno", self.func.lineno)
        return UnsupportedGeneratorError(
            f"@resumable cannot compile {self.func.name}(): {what} at line {line}; "
            "rewrite that part (see docs/gencopy.md, 'Supported constructs')"
        )

    def slot(self, kind: str) -> str:
        identifier = f"{HIDDEN_PREFIX}{kind}{self.next_slot}"
        self.next_slot += 1
        return identifier

    def label_for(self, node: ast.AST, index: int) -> str:
        line = self.source_lines.get(node.lineno, "")
        match = _LABEL_RE.search(line)
        label = match.group(1) if match else f"yield{index}"
        if label in self.labels:
            raise self.reject(node, f"duplicate yield label {label!r}")
        self.labels.add(label)
        return label

    # -- blocks --------------------------------------------------------------------------

    def block(self, body: list[ast.stmt], ctx: _Context, overshoot: bool = False) -> list[ast.stmt]:
        """Compile a statement list; guards make re-entry skip what precedes the target.

        ``overshoot``: the block may be entered during re-entry although the target lies
        *after* it (a ``try`` body when resuming in its ``else``), so guard everything.
        """
        if not any(_contains_yield(s) for s in body):
            if overshoot and body:
                return T.locate(T.stmts("if not _gc_r:\n    BODY", BODY=body), body[0])
            return body
        units: list[tuple[bool, list[ast.stmt], int]] = []  # (has_yield, code, hi)
        run: list[ast.stmt] = []
        for statement in body:
            for unit_has_yield, code, hi in self.statement(statement, ctx):
                if not unit_has_yield:
                    run.extend(code)
                    continue
                if run:
                    units.append((False, run, 0))
                    run = []
                units.append((True, code, hi))
        if run:
            units.append((False, run, 0))
        last_yield_unit = max(i for i, unit in enumerate(units) if unit[0])
        out: list[ast.stmt] = []
        for i, (has_yield, code, hi) in enumerate(units):
            if i > last_yield_unit and not overshoot:
                out.extend(code)  # the target is behind us: _gc_r is 0 here
            elif not has_yield:
                out.extend(T.locate(T.stmts("if not _gc_r:\n    BODY", BODY=code), code[0]))
            elif i == last_yield_unit and not overshoot:
                out.extend(code)
            else:
                guard = T.stmts(f"if not _gc_r or _gc_r <= {hi}:\n    BODY", BODY=code)
                out.extend(T.locate(guard, code[0]))
        return out

    def statement(self, node: ast.stmt, ctx: _Context) -> list[tuple[bool, list[ast.stmt], int]]:
        """Units of ``node``: ``(contains_yield, code, highest yield index)``."""
        if not _contains_yield(node):
            return [(False, [node], 0)]
        method = getattr(self, f"stmt_{type(node).__name__}", None)
        if method is None:
            keyword = _KEYWORDS.get(type(node).__name__, type(node).__name__)
            raise self.reject(node, f"a yield inside {keyword} statement")
        return method(node, ctx)

    # -- simple statements: linearise yields out of expressions --------------------------

    def simple(self, node: ast.stmt, ctx: _Context, pre: list, final: ast.stmt | None) -> list:
        units: list[tuple[bool, list[ast.stmt], int]] = []
        temps: list[str] = []
        for item in pre:
            if isinstance(item, ast.stmt):
                units.append((False, T.locate([item], node), 0))
                if isinstance(item, ast.Assign) and isinstance(item.targets[0], ast.Name):
                    temps.append(item.targets[0].id)
            else:
                target, value, is_from, origin = item
                local_ctx = ctx.with_(
                    hidden=ctx.hidden + tuple(temps),
                    obstacle=ctx.obstacle or ("at a yield that is part of a larger expression" if temps else ""),
                )
                code, index = self.yield_point(node, target, value, is_from, origin, local_ctx)
                units.append((True, code, index))
                if target is not None and isinstance(target, ast.Name) and target.id.startswith(HIDDEN_PREFIX):
                    temps.append(target.id)
        if final is not None:
            units.append((False, T.locate([final], node), 0))
        return units

    def stmt_Expr(self, node: ast.Expr, ctx: _Context) -> list:
        if isinstance(node.value, (ast.Yield, ast.YieldFrom)):
            pre, value = self.expression(node.value.value) if node.value.value is not None else ([], None)
            return self.simple(node, ctx, pre + [(None, value, isinstance(node.value, ast.YieldFrom), node.value)], None)
        pre, value = self.expression(node.value)
        return self.simple(node, ctx, pre, ast.Expr(value=value))

    def stmt_Assign(self, node: ast.Assign, ctx: _Context) -> list:
        for target in node.targets:
            if _contains_yield(target):
                raise self.reject(node, "a yield inside an assignment target")
        if len(node.targets) == 1 and isinstance(node.value, (ast.Yield, ast.YieldFrom)):
            inner = node.value
            pre, value = self.expression(inner.value) if inner.value is not None else ([], None)
            point = (node.targets[0], value, isinstance(inner, ast.YieldFrom), inner)
            return self.simple(node, ctx, pre + [point], None)
        pre, value = self.expression(node.value)
        return self.simple(node, ctx, pre, ast.Assign(targets=node.targets, value=value))

    def stmt_AugAssign(self, node: ast.AugAssign, ctx: _Context) -> list:
        if _contains_yield(node.target):
            raise self.reject(node, "a yield inside an assignment target")
        pre, value = self.expression(node.value, force_temp=True)
        return self.simple(node, ctx, pre, ast.AugAssign(target=node.target, op=node.op, value=value))

    def stmt_AnnAssign(self, node: ast.AnnAssign, ctx: _Context) -> list:
        if node.value is None or _contains_yield(node.target) or _contains_yield(node.annotation):
            raise self.reject(node, "a yield inside an annotation")
        pre, value = self.expression(node.value)
        return self.simple(node, ctx, pre, ast.Assign(targets=[node.target], value=value))

    def stmt_Return(self, node: ast.Return, ctx: _Context) -> list:
        pre, value = self.expression(node.value)  # type: ignore[arg-type]
        return self.simple(node, ctx, pre, ast.Return(value=value))

    def stmt_Raise(self, node: ast.Raise, ctx: _Context) -> list:
        if node.cause is not None and _contains_yield(node.cause):
            raise self.reject(node, "a yield inside 'raise ... from'")
        pre, value = self.expression(node.exc)  # type: ignore[arg-type]
        return self.simple(node, ctx, pre, ast.Raise(exc=value, cause=node.cause))

    def expression(self, node: ast.expr, force_temp: bool = False) -> tuple[list, ast.expr]:
        """Hoist the yields of ``node`` (and whatever is evaluated before them) into temporaries.

        Returns ``(items, expr)``: items are statements (temporary assignments) or yield
        points ``(target, value, is_from, origin)``, in evaluation order.
        """
        if not _contains_yield(node):
            return [], node
        if isinstance(node, (ast.Yield, ast.YieldFrom)):
            items, value = self.expression(node.value) if node.value is not None else ([], None)
            temp = self.slot("t")
            items.append((T.name(temp, store=True), value, isinstance(node, ast.YieldFrom), node))
            return items, T.name(temp)
        slots = self.operand_slots(node)
        last = max(i for i, (_, _, child) in enumerate(slots) if child is not None and _contains_yield(child))
        node = copy.copy(node)
        items: list = []
        containers: dict[tuple[int, str], list] = {}
        for i, (holder_key, setter, child) in enumerate(slots):
            if child is None or i > last:
                continue
            sub_items, sub_expr = self.expression(child)
            items.extend(sub_items)
            if i < last and not isinstance(sub_expr, ast.Constant):
                # ``*x`` is unpacked when the call/display is built: keep the star, save ``x``
                starred = sub_expr if isinstance(sub_expr, ast.Starred) else None
                temp = self.slot("t")
                value = starred.value if starred is not None else sub_expr
                items.append(ast.Assign(targets=[T.name(temp, store=True)], value=value))
                sub_expr = ast.Starred(value=T.name(temp), ctx=ast.Load()) if starred is not None else T.name(temp)
            setter(node, sub_expr, containers)
        if force_temp:
            temp = self.slot("t")
            items.append(ast.Assign(targets=[T.name(temp, store=True)], value=node))
            return items, T.name(temp)
        return items, node

    def operand_slots(self, node: ast.expr) -> list:
        """``(key, setter, child)`` for each operand of ``node`` in evaluation order."""

        def attr(field_name: str):
            return (field_name, lambda n, v, c: setattr(n, field_name, v), getattr(node, field_name))

        def item(field_name: str, index: int, wrap=None):
            def setter(n, v, containers):
                key = (id(n), field_name)
                if key not in containers:
                    containers[key] = list(getattr(n, field_name))
                    setattr(n, field_name, containers[key])
                containers[key][index] = wrap(v, index) if wrap else v

            return (field_name, setter, getattr(node, field_name)[index])

        if isinstance(node, ast.BinOp):
            return [attr("left"), attr("right")]
        if isinstance(node, ast.UnaryOp):
            return [attr("operand")]
        if isinstance(node, ast.Await):
            return [attr("value")]
        if isinstance(node, ast.Compare) and len(node.ops) == 1:
            return [attr("left"), item("comparators", 0)]
        if isinstance(node, (ast.Attribute, ast.Starred, ast.NamedExpr)):
            return [attr("value")]
        if isinstance(node, ast.Subscript):
            return [attr("value"), attr("slice")]
        if isinstance(node, ast.Slice):
            return [attr("lower"), attr("upper"), attr("step")]
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return [item("elts", i) for i in range(len(node.elts))]
        if isinstance(node, ast.Call):
            slots = [attr("func")] + [item("args", i) for i in range(len(node.args))]
            for i, keyword in enumerate(node.keywords):

                def set_keyword(n, v, containers, i=i):
                    key = (id(n), "keywords")
                    if key not in containers:
                        containers[key] = [copy.copy(k) for k in n.keywords]
                        n.keywords = containers[key]
                    containers[key][i].value = v

                slots.append(("keywords", set_keyword, keyword.value))
            return slots
        if isinstance(node, ast.Dict):
            slots = []
            for i in range(len(node.keys)):
                if node.keys[i] is not None:
                    slots.append(item("keys", i))
                slots.append(item("values", i))
            return slots
        if isinstance(node, (ast.BoolOp, ast.IfExp)):
            rest = node.values[1:] if isinstance(node, ast.BoolOp) else [node.body, node.orelse]
            if any(_contains_yield(r) for r in rest):
                raise self.reject(node, "a yield in a conditionally evaluated operand of and/or/if-else")
            if isinstance(node, ast.BoolOp):
                return [item("values", 0)]
            return [attr("test")]
        raise self.reject(node, f"a yield inside a {type(node).__name__} expression")

    # -- yield points ------------------------------------------------------------------

    def yield_point(self, stmt: ast.stmt, target, value, is_from: bool, origin: ast.AST, ctx: _Context):
        index = self.next_yield
        self.next_yield += 1
        label = self.label_for(origin, index)
        obstacle = ctx.obstacle
        if not obstacle and is_from:
            obstacle = "in a 'yield from'"
        if not obstacle and origin is not getattr(stmt, "value", None):
            obstacle = "at a yield that is part of a larger expression"
        if not obstacle and target is not None and not isinstance(target, ast.Name):
            obstacle = "at a yield whose value is assigned to a non-name target"
        hidden = ctx.hidden
        if is_from:
            if self.is_async:
                raise self.reject(origin, "'yield from' in an async generator")
            delegate = self.slot("d")
            hidden = hidden + (delegate,)
            code = T.stmts(
                f"""
                if not _gc_r:
                    DELEGATE = _gc_yf_iter(VALUE)
                    _gc_pc = {index}
                    _gc_n += 1
                    TARGET = yield from DELEGATE
                elif _gc_r == {index}:
                    _gc_r = 0
                    TARGET = yield from _gc_resumed(DELEGATE)
                """,
                DELEGATE=delegate,
                VALUE=value,
                TARGET=target if target is not None else T.name(self.slot("t"), store=True),
            )
        else:
            yield_value = value if value is not None else ast.Constant(value=None)
            if target is None:
                source = f"""
                if not _gc_r:
                    _gc_pc = {index}
                    _gc_n += 1
                    yield VALUE
                elif _gc_r == {index}:
                    _gc_r = 0
                    yield _gc_MARK
                """
            else:
                source = f"""
                if not _gc_r:
                    _gc_pc = {index}
                    _gc_n += 1
                    TARGET = yield VALUE
                elif _gc_r == {index}:
                    _gc_r = 0
                    TARGET = yield _gc_MARK
                """
            code = T.stmts(source, VALUE=yield_value, TARGET=target)
        self.points[index] = YieldPoint(
            index=index,
            label=label,
            lineno=origin.lineno,
            position=(origin.lineno, origin.end_lineno, origin.col_offset, origin.end_col_offset),  # type: ignore[arg-type]
            is_delegation=is_from,
            hidden=hidden,
            native_stack=ctx.native_stack,
            finally_slots=ctx.finally_slots,
            capture_obstacle=obstacle,
        )
        return T.locate(code, stmt), index

    # -- compound statements -----------------------------------------------------------

    def _range(self, start: int) -> tuple[int, int]:
        return start, self.next_yield - 1

    def stmt_If(self, node: ast.If, ctx: _Context) -> list:
        pre, test = self.expression(node.test)
        units = self.simple(node, ctx, pre, None)
        first = self.next_yield
        body = self.block(node.body, ctx)
        body_hi = self.next_yield - 1
        orelse = self.block(node.orelse, ctx)
        hi = self.next_yield - 1
        if body_hi >= first:
            new_test = T.expr(f"(_gc_r <= {body_hi} if _gc_r else TEST)", TEST=test)
        else:
            new_test = T.expr("(not _gc_r and TEST)", TEST=test)
        code = ast.If(test=new_test, body=body, orelse=orelse)
        if hi >= first:
            units.append((True, T.locate([code], node), hi))
        else:
            units.append((False, T.locate([code], node), 0))
        return units

    def stmt_While(self, node: ast.While, ctx: _Context) -> list:
        loop_ctx = ctx.with_()
        if _contains_yield(node.test):
            if node.orelse:
                raise self.reject(node, "a yield in the condition of a 'while' loop that has an 'else'")
            rewritten = ast.While(
                test=ast.Constant(value=True),
                body=[ast.If(test=ast.UnaryOp(op=ast.Not(), operand=node.test), body=[ast.Break()], orelse=[])]
                + node.body,
                orelse=[],
            )
            T.locate([rewritten], node)
            for child in rewritten.body[:1]:
                ast.copy_location(child, node)
                ast.copy_location(child.body[0], node)  # type: ignore[attr-defined]
                ast.copy_location(child.test, node.test)  # type: ignore[attr-defined]
            node = rewritten
        first = self.next_yield
        body = self.block(node.body, loop_ctx)
        body_hi = self.next_yield - 1
        orelse = self.block(node.orelse, ctx)
        hi = self.next_yield - 1
        if body_hi >= first:
            test = T.expr(f"(_gc_r <= {body_hi} if _gc_r else TEST)", TEST=node.test)
        else:
            test = T.expr("(not _gc_r and TEST)", TEST=node.test)
        code = ast.While(test=test, body=body, orelse=orelse)
        return [(True, T.locate([code], node), hi)]

    def stmt_For(self, node: ast.For, ctx: _Context) -> list:
        return self._for(node, ctx, is_async=False)

    def stmt_AsyncFor(self, node: ast.AsyncFor, ctx: _Context) -> list:
        return self._for(node, ctx, is_async=True)

    def _for(self, node: ast.For | ast.AsyncFor, ctx: _Context, is_async: bool) -> list:
        if _contains_yield(node.target):
            raise self.reject(node, "a yield inside a for-loop target")
        pre, iterable = self.expression(node.iter)
        units = self.simple(node, ctx, pre, None)
        iterator = self.slot("ait" if is_async else "it")
        first = self.next_yield
        body_ctx = ctx.with_(
            hidden=ctx.hidden + (iterator,),
            native_stack=ctx.native_stack + (("iter", iterator),),
            obstacle=ctx.obstacle or ("inside an 'async for' loop" if is_async else ""),
        )
        body = self.block(node.body, body_ctx)
        body_hi = self.next_yield - 1
        orelse = self.block(node.orelse, ctx)
        current = T.load(node.target)
        if body_hi >= first:
            chain = "_gc_achain" if is_async else "_gc_chain"
            empty = "_gc_aempty()" if is_async else "()"
            source = f"(IT if not _gc_r else ({chain}(CURRENT, IT) if _gc_r <= {body_hi} else {empty}))"
            setup = T.stmts(
                f"if not _gc_r:\n    IT = {'aiter' if is_async else 'iter'}(ITERABLE)",
                IT=iterator,
                ITERABLE=iterable,
            )
            loop_iter = T.expr(source, IT=iterator, CURRENT=current)
        else:
            setup = []
            loop_iter = T.expr("(ITERABLE if not _gc_r else ())", ITERABLE=iterable)
        if is_async and body_hi < first:
            raise self.reject(node, "a yield in the 'else' of an 'async for' loop")
        loop_type = ast.AsyncFor if is_async else ast.For
        code = loop_type(target=node.target, iter=loop_iter, body=body, orelse=orelse, type_comment=None)
        units.append((True, T.locate(setup + [code], node), self.next_yield - 1))
        return units

    def stmt_With(self, node: ast.With, ctx: _Context) -> list:
        return self._with(node, ctx, is_async=False)

    def stmt_AsyncWith(self, node: ast.AsyncWith, ctx: _Context) -> list:
        return self._with(node, ctx, is_async=True)

    def _with(self, node: ast.With | ast.AsyncWith, ctx: _Context, is_async: bool) -> list:
        with_type = ast.AsyncWith if is_async else ast.With
        if len(node.items) > 1:
            inner = with_type(items=node.items[1:], body=node.body, type_comment=None)
            ast.copy_location(inner, node)
            node = with_type(items=node.items[:1], body=[inner], type_comment=None)
            ast.copy_location(node, inner)
        (item,) = node.items
        if item.optional_vars is not None and _contains_yield(item.optional_vars):
            raise self.reject(node, "a yield inside a with-statement target")
        pre, manager = self.expression(item.context_expr)
        units = self.simple(node, ctx, pre, None)
        slot = self.slot("acm" if is_async else "cm")
        body_ctx = ctx.with_(
            hidden=ctx.hidden + (slot,),
            native_stack=ctx.native_stack + (("exit", slot),),
            obstacle=ctx.obstacle or ("inside an 'async with' block" if is_async else ""),
        )
        body = self.block(node.body, body_ctx)
        current = T.load(item.optional_vars) if item.optional_vars is not None else ast.Constant(value=None)
        reenter = "_gc_reenter_acm" if is_async else "_gc_reenter_cm"
        setup = T.stmts("if not _gc_r:\n    CM = MANAGER", CM=slot, MANAGER=manager)
        context = T.expr(f"(CM if not _gc_r else {reenter}(CM, CURRENT))", CM=slot, CURRENT=current)
        code = with_type(items=[ast.withitem(context_expr=context, optional_vars=item.optional_vars)], body=body, type_comment=None)
        units.append((True, T.locate(setup + [code], node), self.next_yield - 1))
        return units

    def stmt_Try(self, node: ast.Try, ctx: _Context) -> list:
        if _contains_yield_any(node.finalbody):
            return self._try_with_yielding_finally(node, ctx)
        first = self.next_yield
        body = self.block(node.body, ctx, overshoot=True)
        body_hi = self.next_yield - 1
        handlers: list[ast.ExceptHandler] = []
        reraise: list[tuple[int, str]] = []
        for handler in node.handlers:
            if handler.type is not None and _contains_yield(handler.type):
                raise self.reject(handler, "a yield inside an except clause's exception type")
            start = self.next_yield
            handler_name = handler.name
            if _contains_yield_any(handler.body) and handler_name is None:
                handler_name = self.slot("ex")
            handler_ctx = ctx.with_(
                hidden=ctx.hidden + ((handler_name,) if handler_name and handler_name.startswith(HIDDEN_PREFIX) else ()),
                native_stack=ctx.native_stack + (("exc", handler_name or ""),),
            )
            handler_body = self.block(handler.body, handler_ctx)
            if self.next_yield > start:
                reraise.append((self.next_yield - 1, handler_name))  # type: ignore[arg-type]
            new_handler = ast.ExceptHandler(type=handler.type, name=handler_name, body=handler_body)
            handlers.append(ast.copy_location(new_handler, handler))
        orelse = self.block(node.orelse, ctx)
        finalbody = node.finalbody
        if reraise:
            chain: list[ast.stmt] = []
            for hi, handler_name in reversed(reraise):
                chain = T.stmts(f"if _gc_r <= {hi}:\n    raise EXC\nelse:\n    REST", EXC=handler_name, REST=chain or [ast.Pass()])
            prologue = T.stmts(f"if _gc_r > {body_hi}:\n    CHAIN", CHAIN=chain)
            body = T.locate(prologue, node) + body
        code = ast.Try(body=body, handlers=handlers, orelse=orelse, finalbody=finalbody)
        return [(True, T.locate([code], node), self.next_yield - 1)] if self.next_yield > first else [(False, [node], 0)]

    def _try_with_yielding_finally(self, node: ast.Try, ctx: _Context) -> list:
        converter = JumpConverter(self.reject)
        own_catch = "a 'try' whose handlers may catch BaseException" if any(may_catch_signals(h) for h in node.handlers) else ""
        node = ast.copy_location(
            ast.Try(
                body=converter.convert(node.body, False, own_catch),
                handlers=[converter.handler(h, False, "") for h in node.handlers],
                orelse=converter.convert(node.orelse, False, ""),
                finalbody=node.finalbody,
            ),
            node,
        )
        pending = self.slot("fx")
        inner_ctx = ctx.with_(hidden=ctx.hidden + (pending,), finally_slots=ctx.finally_slots + (pending,))
        first = self.next_yield
        if node.handlers or node.orelse:
            inner = ast.Try(body=node.body, handlers=node.handlers, orelse=node.orelse, finalbody=[])
            ast.copy_location(inner, node)
            guarded = self.block([inner], inner_ctx, overshoot=True)
        else:
            guarded = self.block(node.body, inner_ctx, overshoot=True)
        final_ctx = inner_ctx.with_(obstacle=ctx.obstacle or "inside a 'finally' block")
        final = self.block(node.finalbody, final_ctx)
        dispatch: list[ast.stmt] = []
        if "Return" in converter.kinds:
            value = "" if self.is_async else " PENDING.args[0]"
            dispatch += T.stmts(f"if PENDING.__class__ is _gc_Return:\n    return{value}", PENDING=pending)
        for kind in ("Break", "Continue"):
            if kind in converter.kinds:
                dispatch += T.stmts(f"if PENDING.__class__ is _gc_{kind}:\n    {kind.lower()}", PENDING=pending)
        code = T.stmts(
            """
            if not _gc_r:
                PENDING = _gc_NOEXC
            try:
                GUARDED
            except BaseException as _gc_caught:
                PENDING = _gc_caught
            FINAL
            if PENDING is not _gc_NOEXC:
                DISPATCH
                raise PENDING
            """,
            PENDING=pending,
            GUARDED=guarded or [ast.Pass()],
            FINAL=final,
            DISPATCH=dispatch,
        )
        return [(True, T.locate(code, node), self.next_yield - 1)] if self.next_yield > first else [(False, [node], 0)]

    def stmt_TryStar(self, node: ast.AST, ctx: _Context) -> list:
        raise self.reject(node, "a yield inside try/except*")

    def stmt_Match(self, node: ast.AST, ctx: _Context) -> list:
        raise self.reject(node, "a yield inside a match statement")

    # -- function ------------------------------------------------------------------------

    def compile(self, freevars: tuple[str, ...], helpers: tuple[str, ...]) -> CompiledModule:
        func = self.func
        for sub in ast.walk(func):
            if isinstance(sub, ast.Nonlocal):
                raise self.reject(sub, "a 'nonlocal' statement")
            if isinstance(sub, ast.Name) and sub.id.startswith(HIDDEN_PREFIX):
                raise self.reject(sub, f"the reserved name {sub.id!r}")
            if isinstance(sub, ast.arg) and sub.arg.startswith(HIDDEN_PREFIX):
                raise self.reject(sub, f"the reserved name {sub.arg!r}")
        globals_ = [s for s in func.body if isinstance(s, ast.Global)]
        body = [s for s in func.body if not isinstance(s, ast.Global)]
        body = self.block(body, _Context())
        if not self.points:
            raise UnsupportedGeneratorError(f"{func.name}() is not a generator function (it has no yield)")
        def_type = ast.AsyncFunctionDef if self.is_async else ast.FunctionDef
        args = copy.deepcopy(func.args)
        args.defaults = []
        args.kw_defaults = [None] * len(args.kwonlyargs)
        for arg in args.posonlyargs + args.args + args.kwonlyargs + [a for a in (args.vararg, args.kwarg) if a]:
            arg.annotation = None
        impl = def_type(
            name=f"{HIDDEN_PREFIX}impl_{func.name}",
            args=args,
            body=globals_ + T.locate(T.stmts(f"{COUNTER} = 0"), func) + specialize_fresh(body, func),
            decorator_list=[],
            returns=None,
            type_comment=None,
        )
        ast.copy_location(impl, func)
        # co_firstlineno (what an unstarted generator's f_lineno shows) is the first decorator's line
        impl.lineno = min([d.lineno for d in func.decorator_list] + [func.lineno])
        restore = def_type(
            name=f"{HIDDEN_PREFIX}restore_{func.name}",
            args=ast.arguments(posonlyargs=[], args=[ast.arg(arg=STATE_ARG)], vararg=None, kwonlyargs=[], kw_defaults=[], kwarg=None, defaults=[]),
            body=globals_ + [ast.Pass()] + copy.deepcopy(body),  # Pass replaced by the prologue later
            decorator_list=[],
            returns=None,
            type_comment=None,
        )
        ast.copy_location(restore, func)
        restore.lineno = impl.lineno
        params = tuple(freevars) + tuple(helpers)
        factory = ast.FunctionDef(
            name=f"{HIDDEN_PREFIX}factory",
            args=ast.arguments(posonlyargs=[], args=[ast.arg(arg=p) for p in params], vararg=None, kwonlyargs=[], kw_defaults=[], kwarg=None, defaults=[]),
            body=[impl, restore],
            decorator_list=[],
            returns=None,
            type_comment=None,
        )
        ast.copy_location(factory, func)
        module = ast.Module(body=[factory], type_ignores=[])
        return CompiledModule(
            module=module,
            impl_name=impl.name,
            restore_name=restore.name,
            factory_params=params,
            yield_points=self.points,
            is_async=self.is_async,
        )


def _contains_yield_any(body: list[ast.stmt]) -> bool:
    return any(_contains_yield(s) for s in body)


def restore_prologue(local_names: list[str], origin: ast.AST) -> list[ast.stmt]:
    """Statements assigning every saved local from the state mapping ``_gc_L``."""
    code: list[ast.stmt] = []
    for local in local_names:
        code.extend(T.stmts(f"if {local!r} in _gc_L:\n    {local} = _gc_L[{local!r}]"))
    code.extend(T.stmts(f"{COUNTER} = 0\n_gc_r = _gc_L['_gc_pc']"))
    return T.locate(code, origin)


def compile_generator(
    func_node: ast.FunctionDef | ast.AsyncFunctionDef,
    source_lines: dict[int, str],
    freevars: tuple[str, ...],
    helpers: tuple[str, ...],
) -> CompiledModule:
    """Compile ``func_node`` (already positioned at its real line numbers) into a module AST."""
    return _Compiler(func_node, source_lines).compile(freevars, helpers)
