"""Costs of shellsvc.patching, as ratios against plain calls measured in the same run.

Run: ``python benchmarks/bench_patching.py`` (about 30 s). Loop overhead (timing ``pass``)
is subtracted from every figure, so a ratio compares the calls themselves.
"""

from __future__ import annotations

import functools
import importlib
import sys
import tempfile
import textwrap
import threading
import time
import timeit
import unittest.mock
from pathlib import Path
from typing import Any

import wrapt

from shellsvc.patching import PatchManager, percall, prepare_plugin_class, scoped_patch

NUMBER = 200_000
REPEAT = 7

MODULE = '''
def plain(x):
    return x + 1

def trampolined(x):
    return x + 1

def mocked(x):
    return x + 1

class PlainService:
    def method(self, x):
        return x + 1

class PreparedService:
    def method(self, x):
        return x + 1

class PlainWork:
    def method(self, x):
        record = {"id": x, "name": f"item-{x}", "tags": [x, x + 1]}
        return len(record["name"]) + sum(record["tags"])

class PreparedWork:
    def method(self, x):
        record = {"id": x, "name": f"item-{x}", "tags": [x, x + 1]}
        return len(record["name"]) + sum(record["tags"])
'''


def best(stmt: str, env: dict[str, Any], number: int = NUMBER) -> float:
    """Best per-call time in ns, loop overhead subtracted."""
    timer = timeit.Timer(stmt, globals=env)
    empty = timeit.Timer("pass", globals=env)
    raw = min(timer.repeat(REPEAT, number)) / number
    overhead = min(empty.repeat(REPEAT, number)) / number
    return max(raw - overhead, 1e-12) * 1e9


def row(label: str, ns: float, base_ns: float, target: str = "") -> None:
    note = f"   (target {target})" if target else ""
    print(f"  {label:<58} {ns:8.1f} ns  {ns / base_ns:6.2f}x{note}")


def passthrough(fn: Any) -> Any:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    return wrapper


def load_module(root: Path, name: str, source: str) -> Any:
    (root / f"{name}.py").write_text(source)
    sys.modules.pop(name, None)
    importlib.invalidate_caches()
    return importlib.import_module(name)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        sys.path.insert(0, str(root))
        try:
            run(root)
        finally:
            sys.path.remove(str(root))


def run(root: Path) -> None:
    mod = load_module(root, "bench_patch_target", textwrap.dedent(MODULE))
    with scoped_patch(mod.trampolined, lambda x: x):  # install the trampoline once
        pass
    prepare_plugin_class(mod.PreparedService)
    prepare_plugin_class(mod.PreparedWork)
    exec_ns: dict[str, Any] = {}
    exec("def nosource(x):\n    return x + 1\n", exec_ns)  # no source: generic trampoline
    nosource = exec_ns["nosource"]
    with scoped_patch(nosource, lambda x: x):
        pass
    env: dict[str, Any] = {
        "plain": mod.plain,
        "trampolined": mod.trampolined,
        "nosource": nosource,
        "wrapt_wrapped": wrapt.FunctionWrapper(mod.plain, lambda wrapped, instance, args, kwargs: wrapped(*args, **kwargs)),
        "plain_svc": mod.PlainService(),
        "prepared_svc": mod.PreparedService(),
        "plain_work": mod.PlainWork(),
        "prepared_work": mod.PreparedWork(),
        "percall": percall,
        "passthrough": passthrough,
        "static_decorated": passthrough(mod.plain),
        "mod": mod,
    }
    base = best("plain(1)", env)
    print(f"Python {sys.version.split()[0]}; {NUMBER} calls x best of {REPEAT}; loop overhead subtracted")
    print("\nCall overhead (baseline: plain function call)")
    row("plain function call (baseline)", base, base)
    row("scoped-patched before, no scope open anywhere", best("trampolined(1)", env), base, "<= 1.3x")

    def in_other_thread(stmt: str) -> float:
        out: list[float] = []
        thread = threading.Thread(target=lambda: out.append(best(stmt, env)))
        thread.start()
        thread.join()
        return out[0]

    # Scopes open in this thread; the other thread has none: the trampoline is installed
    # and inactive for its calls.
    with scoped_patch(mod.trampolined, lambda x: x + 1), scoped_patch(nosource, lambda x: x + 1):
        row("installed trampoline, inactive for this caller", in_other_thread("trampolined(1)"), base, "<= 1.3x")
        row("  same, function without source (generic forwarder)", in_other_thread("nosource(1)"), base)
        row("active scope: the replacement runs instead", best("trampolined(1)", env), base)
    row("peer: wrapt.FunctionWrapper pass-through", best("wrapt_wrapped(1)", env), base)
    with unittest.mock.patch.object(mod, "mocked", wraps=mod.mocked):
        row("peer: unittest.mock.patch(wraps=...) active (process-wide!)", best("mod.mocked(1)", env, NUMBER // 10), base)

    method_base = best("plain_svc.method(1)", env)
    print("\nPlugin methods (baseline: the same method on an unprepared class)")
    row("plain method call (baseline)", method_base, method_base)
    row("prepared method, called without per-call keywords", best("prepared_svc.method(1)", env), method_base, "<= 1.3x")
    work_base = best("plain_work.method(1)", env)
    print("  (a method with a small realistic body: build a dict, format a string)")
    row("plain method call (baseline)", work_base, work_base)
    row("prepared method, called without per-call keywords", best("prepared_work.method(1)", env), work_base, "<= 1.3x")

    static = best("static_decorated(1)", env)
    print("\nPer-call decorator (baseline: the same decorator applied statically)")
    row("decorator applied statically (baseline)", static, static)
    row("applying d per call by hand: d(f)(x) (the floor)", best("passthrough(plain)(1)", env, NUMBER // 10), static)
    row("percall(f, x, decorator=d)", best("percall(plain, 1, decorator=passthrough)", env, NUMBER // 10), static)
    row("plugin method call with decorator=d", best("prepared_svc.method(1, decorator=passthrough)", env, NUMBER // 10), static)
    row("percall(f, x, monkey_patch={g: h}) (scope enter+exit)",
        best("percall(plain, 1, monkey_patch={trampolined: plain})", env, NUMBER // 10), static)
    row("peer: unittest.mock.patch.object enter+exit + call",
        best("with mock_patch(mod, 'mocked', plain): mod.mocked(1)", {**env, "mock_patch": unittest.mock.patch.object}, NUMBER // 20), static)

    print("\nHot swap of 1,000 functions (baseline: importlib.reload of the same module)")
    source = "".join(f"def f{i}(x):\n    return x + {i}\n\n" for i in range(1000))
    many = load_module(root, "bench_patch_many", source)
    start = time.perf_counter()
    importlib.reload(many)
    reload_s = time.perf_counter() - start
    manager = PatchManager()  # in-memory journal
    start = time.perf_counter()
    for i in range(1000):
        manager.patch(getattr(many, f"f{i}"), f"return x - {i}")
    swap_s = time.perf_counter() - start
    assert many.f999(1000) == 1
    journaled = PatchManager(root / "state")
    start = time.perf_counter()
    for i in range(1000):
        journaled.patch(getattr(many, f"f{i}"), f"return x * {i}")
    journal_s = time.perf_counter() - start
    start = time.perf_counter()
    for record in reversed(journaled.patches()):
        journaled.rollback(record.id)
    rollback_s = time.perf_counter() - start
    print(f"  {'importlib.reload (baseline; leaves old references stale)':<58} {reload_s * 1000:8.1f} ms   1.00x")
    print(f"  {'hot swap x1000, in-memory journal':<58} {swap_s * 1000:8.1f} ms  {swap_s / reload_s:6.2f}x  ({swap_s * 1e6 / 1000:.0f} us each)")
    print(f"  {'hot swap x1000, fsynced journal on disk':<58} {journal_s * 1000:8.1f} ms  {journal_s / reload_s:6.2f}x  ({journal_s * 1e6 / 1000:.0f} us each)")
    print(f"  {'rollback x1000, fsynced journal on disk':<58} {rollback_s * 1000:8.1f} ms  {rollback_s / reload_s:6.2f}x")


if __name__ == "__main__":
    main()
