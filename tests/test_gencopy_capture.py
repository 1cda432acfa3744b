"""shellsvc.gencopy.capture: converting suspended native generators, and clear refusals."""

from __future__ import annotations

import copy
import importlib.util
import pickle
import sys
import textwrap
import threading

import pytest

from shellsvc.gencopy import GeneratorStateError, capture, is_resumable_generator

NATIVES = '''
def over_range(n):
    total = 0
    for i in range(n):
        total += i
        x = yield i
        if x:
            total += x
    return total

def over_list_and_dict_items(items, mapping):
    for a in items:
        for key, value in mapping.items():
            yield (a, key, value)

def over_enumerate_zip(xs, ys):
    try:
        raise KeyError("leaves gi_exc_state behind")
    except KeyError:
        pass
    for i, (x, y) in enumerate(zip(xs, ys)):
        yield i, x, y
    return "zipped"

def in_while(n):
    while n > 0:
        n -= 1
        if n == 1:
            continue
        yield n
    else:
        yield "else"

def with_finally(log):
    try:
        for i in range(3):
            yield i
    finally:
        log.append("finally")

def in_with(cm):
    with cm:
        yield 1

def in_except():
    try:
        raise ValueError("x")
    except ValueError:
        yield 1

def in_expression():
    x = [(yield 1), 2]
    yield x

def delegating():
    yield from range(3)

def closure_maker(k):
    def numbers():
        for i in range(3):
            yield i * k
    return numbers
'''


@pytest.fixture(scope="module")
def natives(tmp_path_factory):
    """A real module on disk (capture needs source; unpickling needs an importable module)."""
    directory = tmp_path_factory.mktemp("natives")
    (directory / "gencopy_natives.py").write_text(textwrap.dedent(NATIVES))
    sys.path.insert(0, str(directory))
    try:
        spec = importlib.util.spec_from_file_location("gencopy_natives", directory / "gencopy_natives.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["gencopy_natives"] = module
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(directory))
        sys.modules.pop("gencopy_natives", None)


def _drain(gen, sends=()):
    """Everything the generator still produces, then its return value."""
    out = []
    sends = list(sends)
    try:
        while True:
            out.append(gen.send(sends.pop(0)) if sends else next(gen))
    except StopIteration as stop:
        return out, stop.value


def _check_against_native(make, advance, sends=()):
    native = make()
    for _ in range(advance):
        next(native)
    captured = capture(native)
    assert is_resumable_generator(captured) and not is_resumable_generator(native)
    reference = make()
    for _ in range(advance):
        next(reference)
    expected = _drain(reference, sends)
    assert _drain(copy.copy(captured), sends) == expected
    assert _drain(pickle.loads(pickle.dumps(captured)), sends) == expected
    assert _drain(captured, sends) == expected
    assert _drain(native, sends) == expected  # the native generator was left untouched
    return expected


def test_capture_in_for_over_range_keeps_locals_and_send(natives):
    out, value = _check_against_native(lambda: natives.over_range(5), 2, sends=[10])
    assert out == [2, 3, 4] and value == 20


@pytest.mark.parametrize("advance", [1, 2, 3, 4])
def test_capture_in_nested_for_over_list_and_dict_items(natives, advance):
    _check_against_native(lambda: natives.over_list_and_dict_items([1, 2], {"a": 1, "b": 2}), advance)


@pytest.mark.parametrize("advance", [1, 2])
def test_capture_in_for_over_enumerate_zip(natives, advance):
    out, value = _check_against_native(lambda: natives.over_enumerate_zip("abc", "xyz"), advance)
    assert value == "zipped"


@pytest.mark.parametrize("advance", [1, 2])
def test_capture_in_while_loop(natives, advance):
    _check_against_native(lambda: natives.in_while(4), advance)


def test_capture_keeps_finally_and_closure_values(natives):
    log = []
    native = natives.with_finally(log)
    next(native)
    captured = capture(native)
    captured.close()
    assert log == ["finally"]
    gen = natives.closure_maker(10)()
    next(gen)
    assert list(capture(gen)) == [10, 20]


def test_capture_of_unstarted_generator(natives):
    assert list(capture(natives.over_range(3))) == [0, 1, 2]


@pytest.mark.parametrize(
    ("factory", "reason"),
    [
        (lambda m: m.in_with(threading.Lock()), "inside a 'with' block"),
        (lambda m: m.in_except(), "inside an 'except' block"),
        (lambda m: m.in_expression(), "part of a larger expression"),
        (lambda m: m.delegating(), "yield from"),
    ],
)
def test_capture_refuses_states_it_cannot_reconstruct(natives, factory, reason):
    gen = factory(natives)
    next(gen)
    with pytest.raises(GeneratorStateError, match=reason) as info:
        capture(gen)
    assert "line" in str(info.value)


def test_capture_refuses_finished_and_sourceless_generators(natives):
    gen = natives.over_range(1)
    list(gen)
    with pytest.raises(GeneratorStateError, match="finished"):
        capture(gen)
    namespace: dict = {}
    exec("def made_up():\n    yield 1\n", namespace)
    sourceless = namespace["made_up"]()
    next(sourceless)
    with pytest.raises(GeneratorStateError, match="source"):
        capture(sourceless)
