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
    ("return through yielding finally", "def g():\n    try:\n        return 1\n    finally:\n        yield 2\n", "return", 4),
    ("match", "def g(x):\n    match x:\n        case 1:\n            yield 1\n", "match", 3),
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
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
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
