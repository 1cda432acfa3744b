"""Generator functions exercised by tests/test_gencopy.py's differential harness.

They live in an importable module so a fresh ``python -c`` subprocess can unpickle their
generators.  Each ``@resumable`` function's native original is ``func.__wrapped__``.
Side effects go to :data:`EVENTS` so the harness can compare them too.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Callable

from shellsvc.gencopy import resumable

#: Side effects of the running generator (cleared by the harness around every operation).
EVENTS: list[Any] = []


def note(event: Any) -> None:
    EVENTS.append(event)


class Boom(Exception):
    """A test exception that pickles (it only has args)."""


class Recorder:
    """A picklable context manager recording enter/exit into EVENTS."""

    def __init__(self, name: str, swallow: bool = False) -> None:
        self.name = name
        self.swallow = swallow

    def __enter__(self) -> str:
        note(("enter", self.name))
        return self.name.upper()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        note(("exit", self.name, exc_type.__name__ if exc_type else None))
        return self.swallow


class AsyncRecorder(Recorder):
    async def __aenter__(self) -> str:
        await asyncio.sleep(0)
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        await asyncio.sleep(0)
        return self.__exit__(exc_type, exc, tb)


class Countdown:
    """A picklable hand-written iterator without send/throw (for ``yield from``)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __iter__(self) -> "Countdown":
        return self

    def __next__(self) -> int:
        if self.n <= 0:
            raise StopIteration
        self.n -= 1
        return self.n


class Ticker:
    """A picklable asynchronous iterator (for ``async for``)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.i = 0

    def __aiter__(self) -> "Ticker":
        return self

    async def __anext__(self) -> int:
        await asyncio.sleep(0)
        if self.i >= self.n:
            raise StopAsyncIteration
        self.i += 1
        return self.i


def scale(value: Any, factor: int = 10) -> Any:
    return value * factor


def combine(*args: Any, **kwargs: Any) -> tuple[Any, ...]:
    return args, tuple(sorted(kwargs.items()))


# ---------------------------------------------------------------- loops


@resumable
def counting(n):
    for i in range(n):
        yield i


@resumable
def ten_locals(n):
    a, b, c, d, e = 1, 2.5, "three", [4], {"five": 5}
    f, g, h = (6,), None, True
    total = 0
    for i in range(n):
        total += i
        yield total


@resumable
def for_else(items):
    for item in items:
        yield item
    else:
        yield "else"
    yield "after"


@resumable
def for_break_else(items, stop):
    for item in items:
        if item == stop:
            yield "stopping"
            break
        yield item
    else:
        yield "exhausted"
    yield "done"


@resumable
def for_continue(n):
    for i in range(n):
        if i % 2:
            yield ("odd", i)
            continue
        yield ("even", i)
        note(i)


@resumable
def while_else(n):
    i = 0
    while i < n:
        i += 1
        yield i
    else:
        yield "while-else"


@resumable
def while_break(n):
    i = 0
    while True:
        i += 1
        if i > n:
            break
        yield i
        if i == 100:
            continue
    yield "end"


@resumable
def nested_loops(rows, cols):
    for r in range(rows):
        for c in cols:
            if c == "skip":
                continue
            yield (r, c)
        yield ("row", r)


@resumable
def dict_items_loop(mapping):
    for key, value in mapping.items():
        yield f"{key}={value}"


@resumable
def enumerate_zip(xs, ys):
    for index, (x, y) in enumerate(zip(xs, ys)):
        yield index, x + y


@resumable
def loop_var_rebound(n):
    for i in range(n):
        i = i * 100
        yield i
        yield i + 1


@resumable
def while_yield_condition():
    count = 0
    while (yield count) != "stop":
        count += 1
    yield ("stopped", count)


# ---------------------------------------------------------------- send / expressions


@resumable
def accumulator():
    total = 0
    while True:
        value = yield total
        if value is None:
            break
        total += value
    return total


@resumable
def running_sums():
    """Endless; ``total`` is always the sum of 0..i at a yield (for the threaded snapshot test)."""
    total = 0
    i = 0
    while True:
        yield total
        i += 1
        pause()  # a Python call: another thread may take over between the two updates
        total += i


@resumable
def counting_items(items):
    """``seen`` plus what the loop iterator has left is constant at a yield (threaded copy test)."""
    seen = 0
    for _ in items:
        seen += 1
        pause()
        yield seen


def pause() -> None:
    """Does nothing; calling it is a point where the interpreter may switch threads."""


@resumable
def send_in_for_loop(n):
    got = []
    for i in range(n):
        x = yield i
        got.append(x)
    return got


@resumable
def yields_in_expressions(base):
    result = scale(base, (yield "factor?"))
    pair = ((yield "left?"), base + (yield "right?"))
    total = [1, 2][0] + (yield "add?") * 2
    yield {"result": result, "pair": pair, "total": total}


@resumable
def augmented_yield():
    acc = 10
    acc += yield acc
    acc *= yield acc
    return acc


@resumable
def yields_in_calls_and_containers(table):
    call = combine(*(yield "args?"), key=(yield "kw?"))
    item = table[(yield "index?")]
    mapping = {"k": (yield "value?"), (yield "key?"): 1}
    yield [call, item, mapping, {(yield "set?")}]


@resumable
def nested_yield():
    x = yield (yield "inner")
    return x


@resumable
def yield_in_condition():
    if (yield "cond?"):
        yield "true branch"
    else:
        yield "false branch"


@resumable
def comprehension_user(n):
    squares = [i * i for i in range(n)]
    for value in squares:
        evens = {k: k % 2 == 0 for k in range(value)}
        yield len([k for k, even in evens.items() if even])


@resumable
def returns_value(n):
    for i in range(n):
        yield i
    return "returned"


@resumable
def early_return(n):
    for i in range(n):
        if i == 2:
            return ("early", i)
        yield i


# ---------------------------------------------------------------- try / with


@resumable
def try_except_else_finally(fail):
    try:
        yield "try"
        if fail:
            raise Boom("inside")
        yield "try-2"
    except Boom as exc:
        yield ("caught", str(exc))
        yield "caught-2"
    else:
        yield "else"
    finally:
        note("finally")
    yield "after"


@resumable
def finally_on_close():
    try:
        yield 1
        yield 2
    finally:
        note("cleanup")


@resumable
def yield_in_finally():
    try:
        yield "body"
    finally:
        note("finally-start")
        yield "in-finally"
        note("finally-end")
    yield "after"


@resumable
def yield_in_finally_with_exception():
    try:
        yield "body"
        raise Boom("pending")
    finally:
        yield "cleanup-yield"
        note("cleanup-done")


@resumable
def throw_handled():
    while True:
        try:
            yield "waiting"
        except Boom as exc:
            yield ("handled", str(exc))
        except KeyError:
            yield "key"
            return "key-return"


@resumable
def bare_except_handler():
    try:
        yield 1
        raise KeyError("k")
    except:  # noqa: E722 - the construct under test
        yield "bare"
        note("in-bare")
    yield "after"


@resumable
def reraise_in_handler():
    try:
        yield "body"
        raise Boom("original")
    except Boom:
        yield "handling"
        raise


@resumable
def break_through_finally(n):
    for i in range(n):
        try:
            yield i
            if i == 1:
                break
        finally:
            note(("finally", i))
    yield "after-loop"


@resumable
def continue_through_finally(n):
    for i in range(n):
        try:
            if i % 2 == 0:
                continue
            yield i
        finally:
            note(("finally", i))


@resumable
def return_through_finally():
    try:
        yield 1
        return "from-try"
    finally:
        note("finally-runs")


@resumable
def jumps_through_yielding_finally(n):
    for i in range(n):
        try:
            if i == 2:
                return ("returned", i)
            command = yield i
            if command == "break":
                break
            if command == "continue":
                continue
            note(("body-done", i))
        finally:
            got = yield ("finally", i)
            note(("cleanup", i, got))
    else:
        yield "loop-else"
    yield "after-loop"


@resumable
def return_through_two_yielding_finally():
    try:
        try:
            yield "inner-body"
            return (yield "return-value?")
        finally:
            yield "inner-finally"
    finally:
        yield "outer-finally"
        note("outer-finally-done")


@resumable
def return_in_yielding_finally():
    try:
        yield "body"
        raise Boom("swallowed by return")
    finally:
        yield "finally"
        return "from-finally"


@resumable
def jump_from_handler_through_yielding_finally(items):
    for item in items:
        try:
            try:
                yield item
                raise Boom(item)
            except Boom as exc:
                if str(exc) == "b":
                    break
                yield ("handled", str(exc))
                continue
        finally:
            yield ("finally", item)
    yield "end"


@resumable
def nested_try(depth):
    try:
        try:
            yield "inner"
            raise Boom("deep")
        except Boom:
            yield "inner-handler"
            raise ValueError("converted")
        finally:
            note("inner-finally")
    except ValueError as exc:
        yield ("outer", str(exc))
    yield depth


@resumable
def with_block(name):
    with Recorder(name) as value:
        yield value
        yield value + "!"
    yield "outside"


@resumable
def with_two_managers():
    with Recorder("a") as a, Recorder("b", swallow=True) as b:
        yield a + b
        raise Boom("swallowed")
    yield "after-with"


@resumable
def with_without_target():
    with Recorder("plain"):
        for i in range(2):
            yield i


# ---------------------------------------------------------------- yield from / recursion


@resumable
def sub_generator(n):
    try:
        for i in range(n):
            received = yield ("sub", i)
            if received is not None:
                note(("sub-got", received))
    except Boom as exc:
        yield ("sub-caught", str(exc))
    finally:
        note("sub-finally")
    return ("sub-return", n)


@resumable
def delegating(n):
    result = yield from sub_generator(n)
    yield ("delegated", result)
    return result


@resumable
def delegating_twice():
    first = yield from sub_generator(1)
    second = yield from delegating(2)
    return first, second


@resumable
def delegate_to_list():
    yield from [10, 20, 30]
    yield from range(2)
    yield from Countdown(2)
    return "lists"


def native_sub(n):
    """Not decorated: copies of a generator delegating to it capture it (see state._detach)."""
    for i in range(n):
        got = yield ("native", i)
        if got is not None:
            note(("native-got", got))
    return "native-done"


@resumable
def delegate_to_native(n):
    result = yield from native_sub(n)
    yield result


@resumable
def delegate_close_forwarding():
    try:
        yield from sub_generator(5)
    finally:
        note("outer-finally")


@resumable
def tree_walk(tree):
    if isinstance(tree, list):
        for child in tree:
            yield from tree_walk(child)
    else:
        yield tree


@resumable
def recursive_countdown(n):
    if n <= 0:
        return 0
    yield n
    rest = yield from recursive_countdown(n - 1)
    return rest + n


@resumable
def closure_and_lambda(k):
    offset = k * 2

    def shift(x):
        return x + offset

    for i in range(3):
        yield shift(i)


def make_closure_generator(prefix):
    @resumable
    def inner(n):
        for i in range(n):
            yield f"{prefix}{i}"

    return inner


closure_generator = make_closure_generator("p-")
#: Same code, other closure: each decorated closure keeps its own cells.
closure_generator_q = make_closure_generator("q-")


#: How often :func:`make_late_counter` ran in this process.
LATE_FACTORY_CALLS = [0]


def make_late_counter(prefix):
    """Never called at import: a pickle of its generator must load before it ever ran."""
    LATE_FACTORY_CALLS[0] += 1

    @resumable
    def late(n):
        total = 0
        for i in range(n):
            total += i
            yield f"{prefix}{i}:{total}"

    return late


def make_recursive_walker(label):
    """A closure that recurses through its own free variable."""

    @resumable
    def walk(tree):
        if isinstance(tree, list):
            for child in tree:
                yield from walk(child)
        else:
            yield (label, tree)

    return walk


walker = make_recursive_walker("leaf")


class Machine:
    """A method generator (resolved by qualified name ``Machine.run``)."""

    def __init__(self, start):
        self.start = start

    @resumable
    def run(self, steps):
        state = self.start
        for _ in range(steps):
            command = yield state
            state = (state, command)

    @resumable
    @staticmethod
    def countdown(n):
        while n:
            n -= 1
            yield n

    @resumable
    @classmethod
    def named(cls, names):
        for name in names:
            yield f"{cls.__name__}.{name}"


# ---------------------------------------------------------------- async


@resumable
async def async_counter(n):
    for i in range(n):
        await asyncio.sleep(0)
        received = yield i
        if received:
            note(("async-got", received))


@resumable
async def async_with_block():
    async with AsyncRecorder("actx") as value:
        yield value
        await asyncio.sleep(0)
        yield value.lower()
    yield "after"


@resumable
async def async_try():
    try:
        yield "a"
        yield "b"
    except Boom:
        yield "async-caught"
    finally:
        note("async-finally")


@resumable
async def async_for_loop(n):
    async for tick in Ticker(n):
        command = yield tick
        if command == "stop":
            break
    else:
        yield "async-for-else"
    yield "after"


@resumable
async def async_jumps_through_finally(n):
    for i in range(n):
        try:
            if i == 1:
                continue
            await asyncio.sleep(0)
            yield i
            if i == 2:
                return
        finally:
            yield ("finally", i)
            note(("async-cleanup", i))
    yield "unreachable"


@resumable
def delegate_with_expression_result():
    total = (yield from sub_generator(2))[1] + 100
    yield total
    empty = yield from empty_delegate()
    return (total, empty)


@resumable
def empty_delegate():
    return "empty-return"
    yield  # noqa: makes this a generator


# ---------------------------------------------------------------- the case table


@dataclass
class Case:
    name: str
    func: Callable[..., Any]
    args: tuple[Any, ...] = ()
    #: ("next",) / ("send", v) / ("throw", "ExcName", "message") / ("close",); None: next until done
    ops: list[tuple[Any, ...]] | None = None
    is_async: bool = False
    factory: Callable[[], Any] | None = None
    native_factory: Callable[[], Any] | None = None
    tags: set[str] = field(default_factory=set)


def _c(name, func, *args, ops=None, **kw):
    return Case(name, func, args, ops, **kw)


NEXT = ("next",)
machine = Machine("s0")

CASES = [
    _c("counting", counting, 4),
    _c("ten_locals", ten_locals, 4),
    _c("for_else", for_else, [1, 2]),
    _c("for_break_else_break", for_break_else, [1, 2, 3], 2),
    _c("for_break_else_exhausted", for_break_else, [1, 2], 9),
    _c("for_continue", for_continue, 4),
    _c("while_else", while_else, 3),
    _c("while_break", while_break, 3),
    _c("nested_loops", nested_loops, 2, ["x", "skip", "y"]),
    _c("dict_items_loop", dict_items_loop, {"a": 1, "b": 2, "c": 3}),
    _c("enumerate_zip", enumerate_zip, [1, 2, 3], [10, 20, 30]),
    _c("loop_var_rebound", loop_var_rebound, 3),
    _c("while_yield_condition", while_yield_condition, ops=[NEXT, ("send", "go"), ("send", "go"), ("send", "stop"), NEXT]),
    _c("accumulator", accumulator, ops=[NEXT, ("send", 5), ("send", 7), ("send", None), NEXT]),
    _c("send_in_for_loop", send_in_for_loop, 3, ops=[NEXT, ("send", "a"), ("send", "b"), ("send", "c"), NEXT]),
    _c("yields_in_expressions", yields_in_expressions, 3, ops=[NEXT, ("send", 2), ("send", "L"), ("send", 4), ("send", 5), NEXT, NEXT]),
    _c("augmented_yield", augmented_yield, ops=[NEXT, ("send", 5), ("send", 3), NEXT]),
    _c("nested_yield", nested_yield, ops=[NEXT, ("send", "outer"), ("send", "final"), NEXT]),
    _c(
        "yields_in_calls_and_containers",
        yields_in_calls_and_containers,
        {"i": "item"},
        ops=[NEXT, ("send", (1, 2)), ("send", "K"), ("send", "i"), ("send", "V"), ("send", "key"), ("send", "S"), NEXT],
    ),
    _c("yield_in_condition_true", yield_in_condition, ops=[NEXT, ("send", 1), NEXT, NEXT]),
    _c("yield_in_condition_false", yield_in_condition, ops=[NEXT, ("send", 0), NEXT]),
    _c("comprehension_user", comprehension_user, 4),
    _c("returns_value", returns_value, 2),
    _c("early_return", early_return, 5),
    _c("try_ok", try_except_else_finally, False),
    _c("try_fail", try_except_else_finally, True),
    _c("try_throw_into_body", try_except_else_finally, False, ops=[NEXT, ("throw", "Boom", "thrown"), NEXT, NEXT, NEXT]),
    _c("finally_on_close", finally_on_close, ops=[NEXT, ("close",), NEXT]),
    _c("finally_on_exhaust", finally_on_close),
    _c("yield_in_finally", yield_in_finally),
    _c("yield_in_finally_throw", yield_in_finally, ops=[NEXT, ("throw", "Boom", "x"), NEXT, NEXT]),
    _c("yield_in_finally_with_exception", yield_in_finally_with_exception),
    _c("throw_handled", throw_handled, ops=[NEXT, ("throw", "Boom", "one"), NEXT, ("throw", "KeyError", "k"), NEXT, NEXT]),
    _c("throw_unhandled", throw_handled, ops=[NEXT, ("throw", "IndexError", "nope"), NEXT]),
    _c("bare_except_handler", bare_except_handler),
    _c("reraise_in_handler", reraise_in_handler),
    _c("break_through_finally", break_through_finally, 4),
    _c("continue_through_finally", continue_through_finally, 5),
    _c("return_through_finally", return_through_finally),
    _c("return_through_finally_close", return_through_finally, ops=[NEXT, ("close",)]),
    _c("nested_try", nested_try, 1),
    _c("return_through_yielding_finally", jumps_through_yielding_finally, 4),
    _c("break_through_yielding_finally", jumps_through_yielding_finally, 4, ops=[NEXT, NEXT, ("send", "break"), ("send", "b"), NEXT, NEXT]),
    _c("continue_through_yielding_finally", jumps_through_yielding_finally, 2, ops=[NEXT, ("send", "continue"), NEXT, ("send", "c"), NEXT, NEXT]),
    _c("throw_into_yielding_finally_body", jumps_through_yielding_finally, 3, ops=[NEXT, ("throw", "Boom", "t"), ("send", "x"), NEXT]),
    _c("close_in_yielding_finally", jumps_through_yielding_finally, 3, ops=[NEXT, NEXT, ("close",), NEXT]),
    _c("loop_else_after_yielding_finally", jumps_through_yielding_finally, 2),
    _c("return_through_two_yielding_finally", return_through_two_yielding_finally, ops=[NEXT, NEXT, ("send", "R"), NEXT, NEXT, NEXT]),
    _c("return_in_yielding_finally", return_in_yielding_finally),
    _c("jump_from_handler_through_yielding_finally", jump_from_handler_through_yielding_finally, ["a", "b", "c"]),
    _c("with_block", with_block, "cm"),
    _c("with_block_throw", with_block, "cm", ops=[NEXT, ("throw", "Boom", "in-with"), NEXT]),
    _c("with_block_close", with_block, "cm", ops=[NEXT, NEXT, ("close",)]),
    _c("with_two_managers", with_two_managers),
    _c("with_without_target", with_without_target),
    _c("delegating", delegating, 3),
    _c("delegating_send", delegating, 3, ops=[NEXT, ("send", "s1"), ("send", "s2"), NEXT, NEXT, NEXT]),
    _c("pep380_throw_caught_by_delegate", delegating, 3, ops=[NEXT, ("throw", "Boom", "fwd"), NEXT, NEXT, NEXT]),
    _c("pep380_throw_uncaught", delegating, 3, ops=[NEXT, ("throw", "KeyError", "kk"), NEXT]),
    _c("pep380_close_forwarding", delegate_close_forwarding, ops=[NEXT, NEXT, ("close",), NEXT]),
    _c("pep380_return_value", delegating_twice),
    _c("pep380_iterators_without_throw", delegate_to_list),
    _c("pep380_throw_into_plain_iterator", delegate_to_list, ops=[NEXT, ("throw", "Boom", "plain"), NEXT]),
    _c("pep380_send_to_iterator_without_send", delegate_to_list, ops=[NEXT, ("send", "no-send"), NEXT]),
    _c("pep380_close_plain_iterator", delegate_to_list, ops=[NEXT, NEXT, ("close",), NEXT]),
    _c("pep380_native_delegate_captured", delegate_to_native, 3, ops=[NEXT, ("send", "x"), NEXT, NEXT, NEXT, NEXT]),
    _c("pep380_result_in_expression_and_empty_delegate", delegate_with_expression_result),
    _c("pep380_throw_stopiteration_value", delegate_with_expression_result, ops=[NEXT, ("throw", "Boom", "x"), NEXT, NEXT, NEXT]),
    _c("tree_walk_recursion", tree_walk, [1, [2, [3, 4]], 5]),
    _c("recursive_countdown", recursive_countdown, 3),
    _c("closure_and_lambda", closure_and_lambda, 5, tags={"unpicklable-local-function"}),
    _c("closure_generator", closure_generator, 3),
    _c("closure_generator_same_code_other_cells", closure_generator_q, 3),
    _c("recursive_closure", walker, [1, [2, [3]], 4], tags={"unpicklable-local-function"}),
    _c("method_generator", machine.run, 3, ops=[NEXT, ("send", "go"), ("send", "stop"), ("send", "x"), NEXT]),
    _c("staticmethod_generator", Machine.countdown, 3),
    _c("classmethod_generator", Machine.named, ["a", "b"]),
    _c("async_counter", async_counter, 3, ops=[NEXT, ("send", "hi"), NEXT, NEXT, NEXT], is_async=True),
    _c("async_with_block", async_with_block, is_async=True),
    _c("async_try_throw", async_try, ops=[NEXT, ("throw", "Boom", "a"), NEXT, NEXT], is_async=True),
    _c("async_try_close", async_try, ops=[NEXT, ("close",), NEXT], is_async=True),
    _c("async_for_loop", async_for_loop, 3, is_async=True),
    _c("async_for_break", async_for_loop, 3, ops=[NEXT, ("send", "stop"), NEXT, NEXT], is_async=True),
    _c("async_for_throw", async_for_loop, 3, ops=[NEXT, ("throw", "Boom", "af"), NEXT], is_async=True),
    _c("async_jumps_through_finally", async_jumps_through_finally, 4, is_async=True),
    _c("async_close_in_finally", async_jumps_through_finally, 4, ops=[NEXT, NEXT, ("close",), NEXT], is_async=True),
]

CASES_BY_NAME = {case.name: case for case in CASES}
assert len(CASES_BY_NAME) == len(CASES), "duplicate case names"

#: Which cases cover each construct issue #7 lists (checked by test_the_harness_covers_enough_cases).
COVERAGE = {
    "for/while with else": ["for_else", "for_break_else_exhausted", "while_else", "async_for_loop"],
    "break/continue": ["for_break_else_break", "for_continue", "while_break", "async_for_break"],
    "nested loops": ["nested_loops", "jump_from_handler_through_yielding_finally"],
    "try/except/else/finally with yields": ["try_ok", "try_fail", "try_throw_into_body", "yield_in_finally", "nested_try"],
    "break/continue/return through finally": [
        "break_through_finally",
        "continue_through_finally",
        "return_through_finally",
        "return_through_yielding_finally",
        "break_through_yielding_finally",
        "continue_through_yielding_finally",
        "return_through_two_yielding_finally",
        "async_jumps_through_finally",
    ],
    "with blocks whose managers pickle": ["with_block", "with_two_managers", "with_block_close", "async_with_block"],
    "x = yield": ["accumulator", "send_in_for_loop", "while_yield_condition"],
    "yields inside expressions": ["yields_in_expressions", "yields_in_calls_and_containers", "nested_yield", "augmented_yield"],
    "yield from": ["delegating", "delegating_send", "pep380_iterators_without_throw", "pep380_native_delegate_captured"],
    "PEP 380 throw/close forwarding": ["pep380_throw_caught_by_delegate", "pep380_throw_uncaught", "pep380_close_forwarding"],
    "PEP 380 return value": ["pep380_return_value", "pep380_result_in_expression_and_empty_delegate"],
    "return values": ["returns_value", "early_return"],
    "recursion": ["tree_walk_recursion", "recursive_countdown", "recursive_closure"],
    "closures": ["closure_generator", "closure_generator_same_code_other_cells", "closure_and_lambda"],
    "comprehensions": ["comprehension_user"],
    "async generators": ["async_counter", "async_try_throw", "async_try_close", "async_close_in_finally"],
}
