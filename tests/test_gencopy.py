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
from gencopy_cases import CASES, CASES_BY_NAME, Recorder, delegating, sub_generator

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def _cut_run(case, cut, ops):
    gen = h.fresh(case)
    prefix = h.run(gen, ops[:cut], case.is_async)
    return gen, prefix


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_copies_continue_like_native_at_every_yield(case):
    ops = h.ops_for(case)
    native = h.run(h.fresh(case, native=True), ops, case.is_async)
    assert any(o[0] == "yield" for o in native), "a case must yield"
    for cut in range(len(ops) + 1):
        expected = native[cut:]
        gen, prefix = _cut_run(case, cut, ops)
        assert prefix == native[:cut], f"resumable diverged from native before cut {cut}"
        assert h.run(copy.copy(gen), ops[cut:], case.is_async) == expected, f"copy.copy at cut {cut}"

        gen, _ = _cut_run(case, cut, ops)
        deep = copy.deepcopy(gen)
        assert h.run(gen, ops[cut:], case.is_async) == expected, f"original after deepcopy at cut {cut}"
        assert h.run(deep, ops[cut:], case.is_async) == expected, f"deepcopy at cut {cut} (after the original ran)"

        if "unpicklable-local-function" in case.tags:
            continue
        gen, _ = _cut_run(case, cut, ops)
        data = pickle.dumps(gen)
        assert h.run(gen, ops[cut:], case.is_async) == expected, f"original after pickling at cut {cut}"
        assert h.run(pickle.loads(data), ops[cut:], case.is_async) == expected, f"unpickled at cut {cut}"


def test_pickles_continue_like_native_in_a_fresh_subprocess(tmp_path):
    jobs, expected = [], {}
    for case in CASES:
        if "unpicklable-local-function" in case.tags:
            continue
        ops = h.ops_for(case)
        native = h.run(h.fresh(case, native=True), ops, case.is_async)
        for cut in range(len(ops) + 1):
            gen, _ = _cut_run(case, cut, ops)
            jobs.append((case.name, cut, pickle.dumps(gen)))
            expected[(case.name, cut)] = native[cut:]
    results = h.run_in_subprocess(jobs, tmp_path)
    mismatches = {key: (results.get(key), want) for key, want in expected.items() if results.get(key) != want}
    assert not mismatches, f"{len(mismatches)} of {len(jobs)} continuations differ, e.g. {next(iter(mismatches.items()))}"
    assert len(jobs) > 300


def test_the_harness_covers_enough_cases():
    assert len(CASES) >= 40
    pep380 = [c for c in CASES if c.name.startswith("pep380")]
    assert len(pep380) >= 5


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
    from gencopy_cases import reraise_in_handler

    gen = reraise_in_handler()
    next(gen)
    next(gen)
    restored = pickle.loads(pickle.dumps(gen))
    with pytest.raises(Exception) as info:
        next(restored)
    lines = inspect.getsource(reraise_in_handler.__wrapped__)
    frame_line = info.traceback[-1].statement
    assert str(frame_line).strip() in lines


def test_warnings_are_not_emitted_on_import():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        import shellsvc.gencopy  # noqa: F401
