"""shellsvc.gencopy: differential tests of copy/deepcopy/pickle against native generators.

Every case in tests/gencopy_cases.py runs natively and as ``@resumable`` with the same
operations; at *every* cut point the resumable generator is copied, deep-copied and
pickled, and each continuation must match the native continuation (values, return
values, exceptions and side effects).  Pickles are also continued in one fresh
subprocess for all cases.
"""

from __future__ import annotations

import copy
import inspect
import pickle
import types
import warnings

import pytest

import gencopy_harness as h
from gencopy_cases import CASES, CASES_BY_NAME, COVERAGE, Recorder, delegating, sub_generator

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def _cut_run(case, cut, ops):
    gen = h.fresh(case)
    prefix = h.run(gen, ops[:cut], case.is_async)
    return gen, prefix


def _picklable(case):
    return "unpicklable-local-function" not in case.tags


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_copies_continue_like_native_at_every_yield(case):
    ops = h.ops_for(case)
    native = h.run(h.fresh(case, native=True), ops, case.is_async)
    assert any(o[0] == "yield" for o in native), "a case must yield"
    for cut in range(len(ops) + 1):
        expected = native[cut:]
        reference = h.fresh(case, native=True)
        h.run(reference, ops[:cut], case.is_async)
        looks = h.introspect(reference, case.is_async)
        gen, prefix = _cut_run(case, cut, ops)
        assert prefix == native[:cut], f"resumable diverged from native before cut {cut}"
        assert h.introspect(gen, case.is_async) == looks, f"gi_* introspection at cut {cut}"
        # restored generators delegate natively to generators; plain iterators go through a proxy
        shown = 2 if looks[2] == "iterator" else 3
        shallow = copy.copy(gen)
        assert h.introspect(shallow, case.is_async)[:shown] == looks[:shown], f"copy's introspection at cut {cut}"
        assert h.run(shallow, ops[cut:], case.is_async) == expected, f"copy.copy at cut {cut}"

        gen, _ = _cut_run(case, cut, ops)
        deep = copy.deepcopy(gen)
        assert h.run(gen, ops[cut:], case.is_async) == expected, f"original after deepcopy at cut {cut}"
        assert h.run(deep, ops[cut:], case.is_async) == expected, f"deepcopy at cut {cut} (after the original ran)"

        gen, _ = _cut_run(case, cut, ops)
        second = copy.copy(copy.deepcopy(gen))  # copying a restored generator (the re-entry twin)
        assert h.introspect(second, case.is_async)[:shown] == looks[:shown], f"second-generation copy at cut {cut}"
        assert h.run(second, ops[cut:], case.is_async) == expected, f"copy of a deepcopy at cut {cut}"

        if not _picklable(case):
            continue
        gen, _ = _cut_run(case, cut, ops)
        data = pickle.dumps(gen)
        assert h.run(gen, ops[cut:], case.is_async) == expected, f"original after pickling at cut {cut}"
        loaded = pickle.loads(data)
        assert h.introspect(loaded, case.is_async)[:shown] == looks[:shown], f"unpickled introspection at cut {cut}"
        assert h.run(loaded, ops[cut:], case.is_async) == expected, f"unpickled at cut {cut}"


@pytest.fixture(scope="module")
def subprocess_results(tmp_path_factory):
    """Pickle every picklable case at every cut point; continue them all in ONE fresh interpreter."""
    jobs, expected = [], {}
    for case in filter(_picklable, CASES):
        ops = h.ops_for(case)
        native = h.run(h.fresh(case, native=True), ops, case.is_async)
        for cut in range(len(ops) + 1):
            gen, _ = _cut_run(case, cut, ops)
            jobs.append((case.name, cut, pickle.dumps(gen)))
            expected[(case.name, cut)] = native[cut:]
    results = h.run_in_subprocess(jobs, tmp_path_factory.mktemp("gencopy-subprocess"))
    return expected, results


@pytest.mark.timeout(900)  # the first one starts a fresh interpreter: slow on a loaded machine
@pytest.mark.parametrize("case", [c for c in CASES if _picklable(c)], ids=[c.name for c in CASES if _picklable(c)])
def test_pickles_continue_like_native_in_a_fresh_subprocess(case, subprocess_results):
    expected, results = subprocess_results
    cuts = sorted(cut for name, cut in expected if name == case.name)
    assert cuts == list(range(len(h.ops_for(case)) + 1)), "every cut point was pickled"
    for cut in cuts:
        assert results.get((case.name, cut)) == expected[(case.name, cut)], f"continuation after pickling at cut {cut}"


@pytest.mark.timeout(900)  # may be the one that starts the fresh interpreter
def test_the_harness_covers_enough_cases(subprocess_results):
    expected, results = subprocess_results
    assert len(CASES) >= 40
    for construct, names in COVERAGE.items():
        assert names and all(name in CASES_BY_NAME for name in names), construct
    assert sum(c.name.startswith("pep380") for c in CASES) >= 5
    assert sum(c.is_async for c in CASES) >= 5
    assert len(expected) == len(results) >= 400  # cut points continued in the subprocess


def test_local_functions_in_state_refuse_pickle_but_copy():
    gen = CASES_BY_NAME["closure_and_lambda"].func(1)
    assert next(gen) == 2
    with pytest.raises((AttributeError, pickle.PicklingError), match="shift"):
        pickle.dumps(gen)
    assert list(copy.copy(gen)) == [3, 4]


def test_resumable_generators_are_native_generators():
    gen = sub_generator(2)
    assert inspect.isgenerator(gen) and type(gen) is types.GeneratorType
    assert gen.gi_code.co_name == "sub_generator"
    assert gen.__qualname__ == "sub_generator"
    assert inspect.isgeneratorfunction(sub_generator)
    assert sub_generator.__wrapped__.__name__ == "sub_generator"
    outer = delegating(2)
    assert next(outer) == ("sub", 0)
    assert outer.gi_yieldfrom is not None and outer.gi_yieldfrom.gi_code.co_name == "sub_generator"
    assert inspect.getgeneratorstate(outer) == inspect.GEN_SUSPENDED


def test_copy_has_its_own_position_but_shares_objects():
    from gencopy_cases import send_in_for_loop

    gen = send_in_for_loop(4)
    next(gen)
    gen.send("a")
    twin = copy.copy(gen)
    assert twin.send("b") == 2 and twin.send("c") == 3
    assert gen.send("B") == 2  # the original did not move
    # `got` is shared by copy.copy: both appended to the same list
    assert gen.gi_frame.f_locals["got"] is twin.gi_frame.f_locals["got"]
    assert gen.gi_frame.f_locals["got"] == ["a", "b", "c", "B"]
    deep = copy.deepcopy(gen)
    assert deep.gi_frame.f_locals["got"] is not gen.gi_frame.f_locals["got"]


def test_copy_of_delegating_generator_copies_the_delegate():
    gen = delegating(3)
    next(gen)
    twin = copy.copy(gen)
    assert next(twin) == ("sub", 1)
    assert next(twin) == ("sub", 2)
    assert next(gen) == ("sub", 1)


def test_with_manager_exits_once_per_copy():
    from gencopy_cases import EVENTS, with_block

    gen = with_block("m")
    EVENTS.clear()
    assert next(gen) == "M"
    twin = copy.deepcopy(gen)
    EVENTS.clear()
    twin.close()
    gen.close()
    assert EVENTS == [("exit", "m", "GeneratorExit"), ("exit", "m", "GeneratorExit")]
    assert isinstance(Recorder("x"), Recorder)


def test_non_resumable_generators_still_refuse_with_a_hint():
    def plain():
        yield 1

    gen = plain()
    for action in (copy.copy, copy.deepcopy, pickle.dumps):
        with pytest.raises(TypeError, match="resumable"):
            action(gen)


def test_snapshotting_a_running_generator_is_refused():
    from shellsvc.gencopy import GeneratorStateError, resumable

    holder = {}

    @resumable
    def selfish():
        yield copy.copy(holder["gen"])

    holder["gen"] = gen = selfish()
    with pytest.raises(GeneratorStateError, match="running"):
        next(gen)


def test_finished_and_unstarted_generators_copy():
    gen = sub_generator(1)
    twin = copy.copy(gen)  # not started: starts from the top with the same arguments
    assert list(twin) == [("sub", 0)]
    list(gen)
    done = pickle.loads(pickle.dumps(gen))
    with pytest.raises(StopIteration):
        next(done)


def test_tracebacks_point_at_the_original_source_lines():
    from gencopy_cases import Boom, reraise_in_handler

    gen = reraise_in_handler()
    next(gen)
    next(gen)
    restored = pickle.loads(pickle.dumps(gen))
    with pytest.raises(Boom, match="original") as info:  # the handled exception, re-raised by the copy
        next(restored)
    lines = inspect.getsource(reraise_in_handler.__wrapped__)
    frame_line = info.traceback[-1].statement
    assert str(frame_line).strip() in lines


def test_warnings_are_not_emitted_on_import():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        import shellsvc.gencopy  # noqa: F401


def test_closures_are_captured_by_value_in_copies():
    from shellsvc.gencopy import resumable

    step = 1

    @resumable
    def stepping(n):
        for i in range(n):
            yield i * step

    gen = stepping(4)
    assert next(gen) == 0
    twin = copy.copy(gen)
    step = 10
    assert next(gen) == 10  # the original shares its defining scope's cell, as natively
    assert next(twin) == 1  # the copy holds the value `step` had when it was copied
    assert gen.gi_frame.f_locals["step"] == 10 and twin.gi_frame.f_locals["step"] == 1


def test_two_closures_over_the_same_code_keep_their_own_values():
    from gencopy_cases import closure_generator, closure_generator_q, make_closure_generator

    assert list(closure_generator(2)) == ["p-0", "p-1"]
    assert list(closure_generator_q(2)) == ["q-0", "q-1"]
    gen = make_closure_generator("r-")(3)
    next(gen)
    assert list(pickle.loads(pickle.dumps(gen))) == ["r-1", "r-2"]


@pytest.mark.timeout(900)  # fresh interpreters import slowly on a loaded machine
def test_a_nested_generator_loads_before_its_enclosing_function_ran():
    import os
    import subprocess
    import sys

    from gencopy_cases import make_late_counter

    gen = make_late_counter("n-")(3)
    next(gen)
    tests = os.path.dirname(os.path.abspath(__file__))
    code = (
        f"import sys, pickle; sys.path.insert(0, {tests!r}); gen = pickle.loads({pickle.dumps(gen)!r}); "
        "import gencopy_cases; print(list(gen), gencopy_cases.LATE_FACTORY_CALLS[0])"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert completed.stdout.strip() == "['n-1:1', 'n-2:3'] 0", completed.stderr


def _race(gen, check, seconds=1.0):
    """Advance ``gen`` on a thread while this one calls ``check()``; (consistent, refused) counts."""
    import sys
    import threading
    import time

    from shellsvc.gencopy import GeneratorStateError

    stop = threading.Event()

    def drive():
        while not stop.is_set():
            next(gen)

    consistent = refused = 0
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    driver = threading.Thread(target=drive)
    driver.start()
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                check()
            except GeneratorStateError as exc:
                assert "running" in str(exc) or "ran while being read" in str(exc)
                refused += 1
                continue
            consistent += 1
    finally:
        stop.set()
        driver.join()
        sys.setswitchinterval(interval)
    return consistent, refused


def test_snapshots_taken_while_another_thread_drives_the_generator_are_consistent_or_refused():
    """The admin's REPL thread reads a generator the app's thread keeps advancing."""
    from gencopy_cases import running_sums
    from shellsvc.gencopy import snapshot

    gen = running_sums()
    next(gen)

    def check():
        values = snapshot(gen)["locals"]
        assert values["total"] == values["i"] * (values["i"] + 1) // 2, values

    consistent, refused = _race(gen, check)
    assert consistent > 0, (consistent, refused)


def test_copies_made_while_another_thread_drives_the_generator_are_consistent_or_refused():
    """Copying also copies the loop iterator after reading the locals: a whole loop
    iteration in between (same yield, same f_lasti) must be noticed too."""
    import itertools

    from gencopy_cases import counting_items
    from shellsvc.gencopy import snapshot

    total = 10**12
    gen = counting_items(itertools.repeat(None, total))
    next(gen)

    def check():
        state = snapshot(copy.copy(gen))
        (iterator,) = state["hidden"].values()
        assert state["locals"]["seen"] + iterator.__length_hint__() == total, state

    consistent, refused = _race(gen, check)
    assert consistent > 0, (consistent, refused)


def test_async_generators_copy_at_a_yield_but_not_while_awaiting():
    from gencopy_cases import async_counter
    from shellsvc.gencopy import GeneratorStateError, generator_state

    agen = async_counter(3)
    step = agen.asend(None)
    step.send(None)  # suspended inside `await asyncio.sleep(0)`, before its first yield
    assert generator_state(agen) == "running"
    with pytest.raises(GeneratorStateError, match="running \\(or awaiting\\)"):
        copy.copy(agen)
    with pytest.raises(StopIteration) as first:
        step.send(None)
    assert first.value.value == 0 and generator_state(agen) == "suspended"
    twin = pickle.loads(pickle.dumps(agen))
    assert h.run(twin, [("send", "x"), ("next",), ("next",)], True) == [
        ("yield", 1, (("async-got", "x"),)),
        ("yield", 2, ()),
        ("return", None, ()),
    ]
