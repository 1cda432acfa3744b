"""Plugin runtime benchmarks: atomic reload vs ``importlib.reload``; loading 100 plugins.

Run: ``python benchmarks/bench_runtime.py``. Every figure is a ratio against a baseline
measured in the same run on the same files:

* reload, unchanged file: ``Runtime.reload(force=True)`` (import beside the old version,
  instantiate, start, health check, swap, stop old) vs ``importlib.reload`` (re-executes
  in place from the ``.pyc``). Target: <= 2x.
* reload, edited file: every round writes new content, so both sides compile.
* the unchanged-file reload again in a "large application": ``sys.modules`` padded to
  3000 entries (a reload must not cost more the more modules the app has imported).
* load 100 plugins: ``Runtime.load(directory)`` vs importing the same 100 files as plain
  modules, both from freshly written files (both compile).
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import os
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shellsvc.runtime import Runtime  # noqa: E402

FUNCTIONS = 60  # a plugin module of realistic size (~250 lines)
ROUNDS = 200
LOAD_REPEATS = 5


def plugin_module(revision: int, index: int = 0) -> str:
    lines = [f"# revision {revision}", "from shellsvc import Plugin", ""]
    for n in range(FUNCTIONS):
        lines += [f"def helper_{n}(x, y={n}):", f"    total = x + y * {n}", "    return [total, str(total)]", ""]
    lines += [
        f"class Bench{index}(Plugin):",
        f"    name = 'bench{index}'",
        "    def __init__(self):",
        "        self.value = 0",
        "    async def start(self):",
        "        self.value = helper_1(1)",
        "    async def stop(self):",
        "        self.value = None",
        "",
    ]
    return "\n".join(lines)


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


async def bench_reload(directory: Path) -> tuple[float, float, float, float]:
    directory.mkdir()
    source = directory / "benchmod.py"
    source.write_text(plugin_module(0))
    sys.path.insert(0, str(directory))
    # Let importlib use its .pyc cache even under PYTHONDONTWRITEBYTECODE: the fair baseline.
    saved, sys.dont_write_bytecode = sys.dont_write_bytecode, False
    try:
        module = importlib.import_module("benchmod")
        baseline, baseline_edit = [], []
        for _ in range(ROUNDS):
            t0 = time.perf_counter()
            importlib.reload(module)
            baseline.append(time.perf_counter() - t0)
        for revision in range(1, ROUNDS + 1):
            source.write_text(plugin_module(revision))
            stamp = 1_000_000_000 + revision  # distinct mtimes, or the .pyc would be reused wrongly
            os.utime(source, (stamp, stamp))
            t0 = time.perf_counter()
            importlib.reload(module)
            baseline_edit.append(time.perf_counter() - t0)
    finally:
        sys.dont_write_bytecode = saved
        sys.path.remove(str(directory))
        sys.modules.pop("benchmod", None)
    assert (directory / "__pycache__").is_dir(), "baseline did not use bytecode caching"

    async with Runtime() as runtime:
        source.write_text(plugin_module(0))
        await runtime.load(source)
        ours, ours_edit = [], []
        for _ in range(ROUNDS):
            t0 = time.perf_counter()
            await runtime.reload("bench0", force=True)
            ours.append(time.perf_counter() - t0)
        for revision in range(ROUNDS + 1, 2 * ROUNDS + 1):
            source.write_text(plugin_module(revision))
            t0 = time.perf_counter()
            await runtime.reload("bench0")
            ours_edit.append(time.perf_counter() - t0)
        assert runtime.handle("bench0").generation == 2 * ROUNDS + 1
    return median_ms(baseline), median_ms(ours), median_ms(baseline_edit), median_ms(ours_edit)


def pad_modules(total: int) -> list[str]:
    """Add dummy entries until ``sys.modules`` has ``total``; returns their names."""
    names = [f"_bench_pad_{n}" for n in range(max(0, total - len(sys.modules)))]
    for name in names:
        sys.modules[name] = types.ModuleType(name)
    return names


def import_plain(directory: Path, count: int, tag: str) -> None:
    for index in range(count):
        name = f"plain_{tag}_{index}"
        spec = importlib.util.spec_from_file_location(name, directory / f"p{index}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        getattr(module, f"Bench{index}")()
    for index in range(count):
        sys.modules.pop(f"plain_{tag}_{index}", None)


async def bench_load(root: Path, count: int = 100) -> tuple[float, float]:
    baseline, ours = [], []
    saved, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # baseline compiles too, as on first sight
    try:
        for repeat in range(LOAD_REPEATS):
            for side, samples in (("plain", baseline), ("runtime", ours)):
                directory = root / f"{side}{repeat}"
                directory.mkdir()
                for index in range(count):
                    (directory / f"p{index}.py").write_text(plugin_module(repeat * 1000 + index, index))
                if side == "plain":
                    t0 = time.perf_counter()
                    import_plain(directory, count, f"{repeat}")
                    samples.append(time.perf_counter() - t0)
                else:
                    async with Runtime() as runtime:
                        t0 = time.perf_counter()
                        handles = await runtime.load(directory)
                        samples.append(time.perf_counter() - t0)
                        assert len(handles) == count
    finally:
        sys.dont_write_bytecode = saved
    return median_ms(baseline), median_ms(ours)


async def main() -> None:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-runtime-") as tmp:
        base, ours, base_edit, ours_edit = await bench_reload(Path(tmp) / "small")
        print(f"plugin module: {FUNCTIONS} functions + 1 Plugin class; {ROUNDS} rounds each, medians; "
              f"{len(sys.modules)} modules imported")
        print(f"reload, unchanged file: importlib.reload {base:8.3f} ms | Runtime.reload(force=True) "
              f"{ours:8.3f} ms | ratio {ours / base:5.2f}x (target <= 2x)")
        print(f"reload, edited file:    importlib.reload {base_edit:8.3f} ms | Runtime.reload            "
              f"{ours_edit:8.3f} ms | ratio {ours_edit / base_edit:5.2f}x")
        padding = pad_modules(3000)
        try:
            base, ours, _, _ = await bench_reload(Path(tmp) / "large")
        finally:
            for name in padding:
                del sys.modules[name]
        print(f"reload, unchanged file, 3000 modules imported: importlib.reload {base:8.3f} ms | "
              f"Runtime.reload(force=True) {ours:8.3f} ms | ratio {ours / base:5.2f}x (target <= 2x)")
        plain, loaded = await bench_load(Path(tmp))
        print(f"load 100 plugins (fresh files, median of {LOAD_REPEATS}): plain imports {plain:8.2f} ms | "
              f"Runtime.load {loaded:8.2f} ms ({loaded / 100:.3f} ms/plugin) | ratio {loaded / plain:5.2f}x")
    print(f"total benchmark time {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    asyncio.run(main())
