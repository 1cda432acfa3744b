"""shellsvc.gencopy: decoration-time refusals, source versioning and migration, shell helpers."""

from __future__ import annotations

import importlib
import linecache
import os
import pickle
import stat
import subprocess
import sys
import textwrap

import pytest

import shellsvc
from shellsvc.gencopy import (
    SourceChangedError,
    UnsupportedGeneratorError,
    copy_generator,
    load_generator,
    resumable,
    save_generator,
    shell_names,
)


@pytest.fixture
def module_factory(tmp_path, monkeypatch):
    """Write real modules to disk and import them (fresh name per test)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    created = []

    def make(name, source):
        path = tmp_path / f"{name}.py"
        path.write_text(textwrap.dedent(source))
        linecache.checkcache(str(path))
        importlib.invalidate_caches()
        if name in sys.modules:
            module = importlib.reload(sys.modules[name])
        else:
            module = importlib.import_module(name)
        created.append(name)
        return module

    yield make
    for name in created:
        sys.modules.pop(name, None)


REFUSED = [
    ("yield inside and/or", "def g(a):\n    x = a or (yield 1)\n", "and/or/if-else", 3),
    ("yield in lambda-free f-string", "def g():\n    x = f'{(yield 1)}'\n", "JoinedStr", 3),
    ("nonlocal", "def outer():\n    v = 1\n    def g():\n        nonlocal v\n        yield v\n    return g\n", "nonlocal", 5),
    (
        "return from a with block through a yielding finally",
        "def g(cm):\n    try:\n        with cm:\n            return 1\n    finally:\n        yield 2\n",
        "'return' inside a 'with' block",
        5,
    ),
    (
        "break past a bare except to a yielding finally",
        "def g():\n    for i in range(3):\n        try:\n            try:\n                break\n            except:\n                pass\n        finally:\n            yield i\n",
        "'break' inside a 'try' whose handlers may catch BaseException",
        6,
    ),
    ("match", "def g(x):\n    match x:\n        case 1:\n            yield 1\n", "match", 3),
    ("assert", "def g():\n    x = 1\n    assert (yield x)\n", "a yield inside an 'assert' statement", 4),
    ("try/except*", "def g():\n    try:\n        yield 1\n    except* ValueError:\n        pass\n", "try/except*", 3),
    ("reserved name", "def g():\n    _gc_pc = 1\n    yield _gc_pc\n", "reserved name", 3),
    ("while-else with yield in condition", "def g():\n    while (yield):\n        pass\n    else:\n        pass\n", "while", 3),
]


@pytest.mark.parametrize(("what", "body", "construct", "line"), REFUSED, ids=[r[0] for r in REFUSED])
def test_unsupported_constructs_are_refused_at_decoration(module_factory, what, body, construct, line):
    source = "from shellsvc.gencopy import resumable\n\n" + body.replace("def g", "@resumable\ndef g", 1)
    if "def outer" in body:
        source = "from shellsvc.gencopy import resumable\n\n" + body.replace("    def g", "    @resumable\n    def g")
        module = module_factory("gencopy_refused_nested", source)
        with pytest.raises(UnsupportedGeneratorError) as info:
            module.outer()
    else:
        with pytest.raises(UnsupportedGeneratorError) as info:
            module_factory(f"gencopy_refused_{abs(hash(what))}", source)
    message = str(info.value)
    assert construct in message and f"line {line + 2}" in message, message


def test_non_generators_are_refused():
    with pytest.raises(UnsupportedGeneratorError, match="generator function"):
        resumable(len)

    def plain():
        return 1

    with pytest.raises(UnsupportedGeneratorError, match="generator function"):
        resumable(plain)


VERSION_1 = """
from shellsvc.gencopy import resumable

@resumable
def job(n):
    done = []
    for i in range(n):
        done.append(i)
        yield i  # gencopy: label=step
    return done
"""

VERSION_2 = """
from shellsvc.gencopy import resumable

def upgrade(state):
    state["locals"]["done"] = [f"v1:{x}" for x in state["locals"]["done"]]
    state["hidden"] = {"_gc_it1": state["hidden"].pop("_gc_it1")}
    return state

@resumable(code_change=upgrade)
def job(n):
    done = []
    # version 2 logs progress differently
    for i in range(n):
        done.append(i * 10)
        yield i  # gencopy: label=step
    return done
"""


def test_changed_source_is_refused_without_migration(module_factory):
    module = module_factory("gencopy_versioned", VERSION_1)
    gen = module.job(3)
    next(gen)
    data = pickle.dumps(gen)
    module_factory("gencopy_versioned", VERSION_1.replace("return done", "return list(done)"))
    with pytest.raises(SourceChangedError, match="code_change"):
        pickle.loads(data)


def test_code_change_migrates_by_yield_label(module_factory):
    module = module_factory("gencopy_migrated", VERSION_1)
    gen = module.job(3)
    next(gen)
    next(gen)
    data = pickle.dumps(gen)
    module_factory("gencopy_migrated", VERSION_2)
    migrated = pickle.loads(data)
    assert next(migrated) == 2
    with pytest.raises(StopIteration) as info:
        next(migrated)
    assert info.value.value == ["v1:0", "v1:1", 20]


VERSION_3 = """
from shellsvc.gencopy import resumable

def upgrade(state):
    if state["label"] == "step":
        state["locals"]["done"] = [f"v1:{x}" for x in state["locals"]["done"]]
    return state  # 'hidden' untouched: _gc_it1 becomes _gc_it2 (same kinds, same nesting)

@resumable(code_change=upgrade)
def job(n):
    for warmup in range(1):
        yield "warming up"  # gencopy: label=warmup
    done = []
    for i in range(n):
        done.append(i * 10)
        yield i  # gencopy: label=step
    return done
"""

SAVE_V1 = """
import sys
sys.path.insert(0, {directory!r})
from shellsvc.gencopy import save_generator
import gencopy_upgraded
gen = gencopy_upgraded.job(4)
next(gen); next(gen)
save_generator(gen, {path!r})
"""

LOAD = """
import sys
sys.path.insert(0, {directory!r})
from shellsvc.gencopy import load_generator
gen = load_generator({path!r})
values = []
try:
    while True:
        values.append(next(gen))
except StopIteration as stop:
    print(values)
    print("value", stop.value)
"""


def _python(code):
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    return completed


@pytest.mark.timeout(900)  # fresh interpreters import slowly on a loaded machine
def test_a_saved_state_loads_after_a_real_source_change_only_with_code_change(tmp_path):
    """An application upgrade: state saved by one process, source edited on disk, loaded by another."""
    module = tmp_path / "gencopy_upgraded.py"
    module.write_text(VERSION_1)
    saved = tmp_path / "job.state"
    done = _python(SAVE_V1.format(directory=str(tmp_path), path=str(saved)))
    assert done.returncode == 0, done.stderr

    module.write_text(VERSION_1.replace("done.append(i)", "done.append(i + 1)"))
    refused = _python(LOAD.format(directory=str(tmp_path), path=str(saved)))
    assert refused.returncode != 0
    assert "SourceChangedError" in refused.stderr and "gencopy_upgraded.job" in refused.stderr
    assert "code_change" in refused.stderr

    module.write_text(VERSION_3)
    migrated = _python(LOAD.format(directory=str(tmp_path), path=str(saved)))
    assert migrated.returncode == 0, migrated.stderr
    # resumed at the 'step' yield after i == 1, with v1's list converted and v3's loop body after it
    assert migrated.stdout.splitlines() == ["[2, 3]", "value ['v1:0', 'v1:1', 20, 30]"]


def test_code_change_must_name_a_yield_label_of_the_new_code(module_factory):
    module = module_factory("gencopy_relabelled", VERSION_1)
    gen = module.job(3)
    next(gen)
    data = pickle.dumps(gen)
    module_factory(
        "gencopy_relabelled",
        VERSION_2.replace("return state", "state['label'] = 'gone'\n    return state"),
    )
    with pytest.raises(SourceChangedError, match=r"label 'gone'.*labels: \['step'\]"):
        pickle.loads(data)


def test_pickles_reference_code_by_name_not_embed_it():
    from gencopy_cases import ten_locals

    gen = ten_locals(5)
    next(gen)
    data = pickle.dumps(gen)
    assert b"gencopy_cases" in data and b"ten_locals" in data
    assert b"co_code" not in data and len(data) < 600


def test_shell_helpers_save_load_and_copy_native_generators(tmp_path):
    from gencopy_cases import counting

    gen = counting(5)
    next(gen)
    path = save_generator(gen, tmp_path / "state.pickle")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert list(load_generator(path)) == [1, 2, 3, 4]
    native = counting.__wrapped__(4)
    next(native)
    assert list(copy_generator(native)) == [1, 2, 3]
    assert list(native) == [1, 2, 3]
    assert {"copy_generator", "save_generator", "load_generator", "capture", "resumable"} <= set(shell_names())
    assert shellsvc.resumable is resumable


@pytest.mark.timeout(900)  # fresh interpreters import slowly on a loaded machine
def test_saved_generator_loads_in_another_process(tmp_path):
    from gencopy_cases import accumulator

    gen = accumulator()
    next(gen)
    gen.send(5)
    path = save_generator(gen, tmp_path / "acc.pickle")
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    code = (
        f"import sys; sys.path.insert(0, {tests_dir!r}); from shellsvc.gencopy import load_generator; "
        f"g = load_generator({str(path)!r}); print(g.send(10)); g.send(None)"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert completed.stdout.strip() == "15", completed.stderr
    assert "StopIteration: 15" in completed.stderr


def test_docs_examples_run(module_factory, capsys):
    import re
    from pathlib import Path

    docs = Path(__file__).resolve().parent.parent / "docs" / "gencopy.md"
    blocks = re.findall(r"```python\n(.*?)```", docs.read_text(), re.S)
    runnable = [b for b in blocks if "save_generator(app." not in b]
    assert len(runnable) >= 4
    for index, block in enumerate(runnable):
        module_factory(f"gencopy_doc_example_{index}", block)
    out = capsys.readouterr().out
    assert "15.0 5.0" in out and "20.0" in out and "['b', 'c']" in out


PIPELINE = """
def pipeline(items):
    done = []
    for item in items:
        done.append(item)
        yield item.upper()
    return done
"""


async def test_an_admin_forks_saves_and_loads_an_app_generator_in_a_repl_session(module_factory, tmp_path):
    """What an admin types, run by the real execution engine with ``shell_names()`` seeded."""
    from shellsvc.engine import Engine, NamespaceRegistry, SessionIO

    module = module_factory("gencopy_app_pipeline", PIPELINE)

    class App:
        pipeline = module.pipeline(["a", "b", "c"])

    out: list[str] = []
    engine = Engine(NamespaceRegistry(lambda user: {"app": App, **shell_names()}))
    try:
        session = engine.open_session("admin", SessionIO(out.append, out.append))
        for line in (
            "next(app.pipeline)",
            f"path = save_generator(app.pipeline, {str(tmp_path / 'pipeline.state')!r})",
            "fork = copy_generator(app.pipeline)",
            "print('fork', next(fork), 'app', next(app.pipeline))",
            "restored = load_generator(path)",
            "print('restored', list(restored))",
        ):
            outcome = await session.run(line)
            assert outcome.ok, (line, outcome, "".join(out))
    finally:
        await engine.aclose()
    printed = "".join(out)
    assert "fork B app B" in printed and "restored ['B', 'C']" in printed, printed
    assert next(App.pipeline) == "C"  # the app's own generator moved only when the admin moved it
    assert stat.S_IMODE(os.stat(tmp_path / "pipeline.state").st_mode) == 0o600


def test_load_generator_refuses_files_others_could_have_written(tmp_path):
    from gencopy_cases import counting
    from shellsvc.gencopy import GeneratorStateError

    gen = counting(3)
    next(gen)
    path = save_generator(gen, tmp_path / "state")
    os.chmod(path, 0o620)
    with pytest.raises(GeneratorStateError, match=r"writable by group or others \(mode 0620\).*chmod go-w"):
        load_generator(path)
    os.chmod(path, 0o600)
    assert list(load_generator(path)) == [1, 2]

    (tmp_path / "not-a-generator").write_bytes(pickle.dumps({"a": 1}))
    os.chmod(tmp_path / "not-a-generator", 0o600)
    with pytest.raises(GeneratorStateError, match="holds a 'dict', not a saved generator"):
        load_generator(tmp_path / "not-a-generator")
    (tmp_path / "garbage").write_bytes(b"\x00not a pickle")
    os.chmod(tmp_path / "garbage", 0o600)
    with pytest.raises(GeneratorStateError, match="garbage: it is not a saved generator state"):
        load_generator(tmp_path / "garbage")


def test_save_generator_names_what_went_wrong(tmp_path):
    from gencopy_cases import CASES_BY_NAME
    from shellsvc.gencopy import GeneratorStateError

    gen = CASES_BY_NAME["closure_and_lambda"].func(1)
    next(gen)
    with pytest.raises(GeneratorStateError, match=r"cannot save generator 'closure_and_lambda'.*cannot be pickled.*copy_generator"):
        save_generator(gen, tmp_path / "state")
    assert not list(tmp_path.iterdir())  # nothing half-written
    with pytest.raises(FileNotFoundError, match="directory .*missing does not exist"):
        save_generator(gen, tmp_path / "missing" / "state")
