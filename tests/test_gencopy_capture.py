"""shellsvc.gencopy.capture: converting suspended native generators, and clear refusals."""

from __future__ import annotations

import copy
import importlib.util
import inspect
import pickle
import sys
import textwrap

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

LOG = []

class Managed:
    """A picklable context manager."""
    def __init__(self, name):
        self.name = name
    def __enter__(self):
        LOG.append(("enter", self.name))
        return self.name
    def __exit__(self, kind, exc, tb):
        LOG.append(("exit", self.name, kind.__name__ if kind else None))
        return False

def in_with(name):
    with Managed(name) as value, Managed(name + "2"):
        for i in range(2):
            got = yield (value, i)
            if got:
                raise KeyError(got)
    yield "after"

def in_except():
    try:
        raise ValueError("first")
    except ValueError as exc:
        yield ("named", str(exc))
        try:
            raise KeyError("second")
        except KeyError:
            yield "unnamed"
            try:
                raise
            except KeyError as again:
                yield ("re-raised", str(again))
        yield "after-inner"
        raise

def in_finally():
    try:
        yield 0
    finally:
        yield "cleanup"

async def asynchronous():
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


CAPTURABLE = [
    ("over_range", (5,)),
    ("over_list_and_dict_items", ([1, 2], {"a": 1, "b": 2})),
    ("over_enumerate_zip", ("abc", "xyz")),
    ("in_while", (4,)),
    ("with_finally", ([],)),
    ("in_with", ("m",)),
    ("in_except", ()),
]


def _yield_count(natives, name, args):
    return len(_outcome(getattr(natives, name)(*args))[0])


def _at(natives, name, args, advance):
    gen = getattr(natives, name)(*args)
    for _ in range(advance):
        next(gen)
    return gen


@pytest.mark.parametrize(("name", "args"), CAPTURABLE, ids=[c[0] for c in CAPTURABLE])
def test_capture_at_every_yield_point_continues_like_native(natives, name, args):
    points = _yield_count(natives, name, args)
    assert points >= 2
    for advance in range(points + 1):  # 0: not started
        expected = _outcome(_at(natives, name, args, advance))
        native = _at(natives, name, args, advance)
        captured = capture(native)
        assert is_resumable_generator(captured) and not is_resumable_generator(native)
        assert captured.gi_frame.f_lineno == native.gi_frame.f_lineno, f"line at yield {advance}"
        assert _outcome(copy.copy(captured)) == expected, f"copy at yield {advance}"
        assert _outcome(copy.deepcopy(captured)) == expected, f"deepcopy at yield {advance}"
        assert _outcome(pickle.loads(pickle.dumps(captured))) == expected, f"pickle at yield {advance}"
        assert _outcome(captured) == expected, f"captured at yield {advance}"
        assert _outcome(native) == expected, f"native left untouched at yield {advance}"


SUBPROCESS = """
import pickle, sys
sys.path.insert(0, {directory!r})
jobs = pickle.load(open({jobs!r}, "rb"))
def outcome(gen):
    values = []
    try:
        while True:
            values.append(next(gen))
    except StopIteration as stop:
        return values, ("return", stop.value)
    except Exception as exc:
        return values, ("raise", type(exc).__name__, str(exc))
results = {{key: outcome(pickle.loads(data)) for key, data in jobs.items()}}
pickle.dump(results, open({results!r}, "wb"))
"""


@pytest.mark.timeout(900)  # fresh interpreters import slowly on a loaded machine
def test_captured_generators_continue_in_a_fresh_process(natives, tmp_path):
    import subprocess

    jobs, expected = {}, {}
    for name, args in CAPTURABLE:
        for advance in range(_yield_count(natives, name, args) + 1):
            expected[(name, advance)] = _outcome(_at(natives, name, args, advance))
            jobs[(name, advance)] = pickle.dumps(capture(_at(natives, name, args, advance)))
    (tmp_path / "jobs").write_bytes(pickle.dumps(jobs))
    directory = str(natives.__file__).rsplit("/", 1)[0]
    code = SUBPROCESS.format(directory=directory, jobs=str(tmp_path / "jobs"), results=str(tmp_path / "results"))
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    results = pickle.loads((tmp_path / "results").read_bytes())
    assert results == expected
    assert len(results) >= 30


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


def _outcome(gen, sends=()):
    """Values produced until the end, then how it ended."""
    values, sends = [], list(sends)
    try:
        while True:
            values.append(gen.send(sends.pop(0)) if sends else next(gen))
    except StopIteration as stop:
        return values, ("return", stop.value)
    except Exception as exc:  # noqa: BLE001 - the outcome under test
        return values, ("raise", type(exc).__name__, str(exc))


@pytest.mark.parametrize("advance", [1, 2, 3])
@pytest.mark.parametrize("sends", [(), ("boom",)], ids=["next", "send-raises"])
def test_capture_inside_with_blocks_uses_the_live_managers(natives, advance, sends):
    natives.LOG.clear()
    reference = natives.in_with("m")
    for _ in range(advance):
        next(reference)
    expected_log_start = len(natives.LOG)
    expected = _outcome(reference, sends)
    expected_log = natives.LOG[expected_log_start:]

    native = natives.in_with("m")
    for _ in range(advance):
        next(native)
    captured = capture(native)
    natives.LOG.clear()
    assert _outcome(pickle.loads(pickle.dumps(captured)), sends) == expected
    assert _outcome(captured, sends) == expected
    assert natives.LOG == expected_log * 2  # __enter__ is not re-run; each generator exits its managers
    natives.LOG.clear()
    assert _outcome(native, sends) == expected and natives.LOG == expected_log  # the original is untouched


@pytest.mark.parametrize("advance", [1, 2, 3, 4])
def test_capture_inside_except_handlers_keeps_the_handled_exceptions(natives, advance):
    reference = natives.in_except()
    for _ in range(advance):
        next(reference)
    expected = _outcome(reference)
    assert expected[1] == ("raise", "ValueError", "first")  # the final bare raise re-raises the outer exception
    native = natives.in_except()
    for _ in range(advance):
        next(native)
    captured = capture(native)
    assert _outcome(copy.deepcopy(captured)) == expected
    assert _outcome(pickle.loads(pickle.dumps(captured))) == expected
    assert _outcome(captured) == expected
    assert _outcome(native) == expected


@pytest.mark.parametrize(
    ("factory", "advance", "reason"),
    [
        (lambda m: m.in_finally(), 2, "inside a 'finally' block"),
        (lambda m: m.in_expression(), 1, "part of a larger expression"),
        (lambda m: m.delegating(), 1, "yield from"),
    ],
    ids=["finally", "expression", "yield-from"],
)
def test_capture_refuses_states_it_cannot_reconstruct(natives, factory, advance, reason):
    gen = factory(natives)
    for _ in range(advance):
        next(gen)
    with pytest.raises(GeneratorStateError, match=reason) as info:
        capture(gen)
    assert "cannot capture" in str(info.value) and "line" in str(info.value) and "@resumable" in str(info.value)
    assert inspect.getgeneratorstate(gen) == inspect.GEN_SUSPENDED  # left as it was
    gen.close()


def test_capture_refuses_async_and_running_generators(natives):
    agen = natives.asynchronous()
    with pytest.raises(TypeError, match="async_generator"):
        capture(agen)
    holder = {}

    def selfish():
        yield capture(holder["gen"])

    holder["gen"] = gen = selfish()
    with pytest.raises(GeneratorStateError, match="running"):
        next(gen)


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
