"""The plugin watcher: hot reload on save, debounce, sha256 confirmation, clean start/stop."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable

import pytest

from shellsvc.runtime import PluginState, Runtime, RuntimeEvent


def plugin_source(version: int, body: str = "") -> str:
    return (
        "from shellsvc import Plugin\n"
        "\n"
        "class Greeter(Plugin):\n"
        f"    version = '{version}'\n"
        "    def __init__(self):\n"
        "        self.calls = 0\n"
        "    def hello(self):\n"
        "        self.calls += 1\n"
        f"        return 'hello v{version}'\n"
        f"{body}"
    )


async def wait_for(condition: Callable[[], object], timeout: float = 5.0) -> float:
    """Poll ``condition`` until true; return the seconds it took (fail after ``timeout``)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not condition():
        if loop.time() - start > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.02)
    return loop.time() - start


@pytest.fixture
async def runtime():
    rt = Runtime()
    events: list[RuntimeEvent] = []
    rt.subscribe(events.append)
    rt.events = events  # type: ignore[attr-defined]
    yield rt
    await rt.aclose()


THREAD_PROBE = """
    threads = []
    async def start(self):
        import threading
        type(self).threads.append(threading.get_ident())
"""


async def test_save_reloads_within_two_seconds_on_the_loop_and_touch_does_not(runtime, tmp_path):
    path = tmp_path / "greeter.py"
    path.write_text(plugin_source(1))
    await runtime.load(tmp_path)
    watcher = runtime.watch(tmp_path)  # default interval and debounce
    await wait_for(lambda: watcher.stats["unchanged"] >= 1)  # first look at the loaded file
    handle = runtime.handle("greeter")

    path.write_text(plugin_source(2, THREAD_PROBE))
    elapsed = await wait_for(lambda: handle.generation == 2, timeout=2.0)
    assert runtime["greeter"].hello() == "hello v2" and elapsed < 2.0
    # The watcher is a task on this loop: the new version was started on the loop's thread.
    assert type(runtime["greeter"]).threads == [threading.get_ident()]

    # touch without a content change: stats change, sha256 does not -> nothing reloads.
    unchanged = watcher.stats["unchanged"]
    future = time.time() + 5
    os.utime(path, (future, future))
    await wait_for(lambda: watcher.stats["unchanged"] > unchanged)
    assert handle.generation == 2 and watcher.stats["reloaded"] == 1
    assert [e.kind for e in runtime.events].count("reloaded") == 1
    await watcher.stop()


async def test_broken_save_keeps_old_version_and_fixing_it_reloads(runtime, tmp_path):
    path = tmp_path / "greeter.py"
    path.write_text(plugin_source(1))
    [handle] = await runtime.load(path)
    plugin = runtime["greeter"]
    plugin.hello()
    watcher = runtime.watch(tmp_path, interval=0.05, debounce=0.1)

    path.write_text(plugin_source(2).replace("def hello(self):", "def hello(self"))
    await wait_for(lambda: watcher.stats["failed"] >= 1)
    [failure] = [e for e in runtime.events if e.kind == "reload_failed"]
    assert failure.file == str(path.resolve()) and failure.line == 7
    assert runtime["greeter"] is plugin and plugin.hello() == "hello v1" and plugin.calls == 2
    assert handle.state is PluginState.STARTED and handle.generation == 1

    path.write_text(plugin_source(3))
    await wait_for(lambda: handle.generation == 2)
    assert runtime["greeter"].hello() == "hello v3" and handle.error is None
    await watcher.stop()


async def test_new_files_load_and_deleted_files_unload(runtime, tmp_path):
    watcher = runtime.watch(tmp_path, interval=0.05, debounce=0.1)
    (tmp_path / "greeter.py").write_text(plugin_source(1))
    (tmp_path / "notes.py").write_text("NOTE = 'no plugin here'\n")
    await wait_for(lambda: "greeter" in runtime and watcher.stats["inert"] == 1)
    assert runtime.handle("greeter").state is PluginState.STARTED

    # A helper without plugins is executed once, not on every poll.
    scans = watcher.stats["scans"]
    await wait_for(lambda: watcher.stats["scans"] >= scans + 5)
    assert watcher.stats["inert"] == 1

    (tmp_path / "greeter.py").unlink()
    await wait_for(lambda: "greeter" not in runtime)
    assert [e.kind for e in runtime.events][-2:] == ["stopped", "unloaded"]
    await watcher.stop()


async def test_package_helper_edit_is_hot_reloaded(runtime, tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "words.py").write_text("WORD = 'one'\n")
    (package / "__init__.py").write_text(
        "from shellsvc import Plugin\nfrom . import words\nclass Pkg(Plugin):\n    def word(self):\n        return words.WORD\n"
    )
    watcher = runtime.watch(tmp_path, interval=0.05, debounce=0.1)
    await wait_for(lambda: "pkg" in runtime)
    (package / "words.py").write_text("WORD = 'two'\n")
    await wait_for(lambda: runtime["pkg"].word() == "two")
    await watcher.stop()


async def test_start_and_stop_watching_repeatedly_leaks_no_tasks_or_threads(runtime, tmp_path):
    (tmp_path / "greeter.py").write_text(plugin_source(1))
    await runtime.load(tmp_path)
    tasks_before = len(asyncio.all_tasks())
    threads_before = threading.active_count()
    for _ in range(20):
        watcher = runtime.watch(tmp_path, interval=0.01, debounce=0.0)
        await wait_for(lambda: watcher.stats["scans"] >= 1)
        await watcher.stop()
        await watcher.stop()  # idempotent
        assert not watcher.running
    assert runtime.watchers == []
    assert len(asyncio.all_tasks()) == tasks_before
    assert threading.active_count() == threads_before

    one = runtime.watch(tmp_path, interval=0.01)
    two = runtime.watch(tmp_path / "elsewhere", interval=0.01)
    assert len(runtime.watchers) == 2
    await runtime.aclose()  # stops every watcher
    assert not one.running and not two.running
    assert len(asyncio.all_tasks()) == tasks_before


async def test_watcher_and_shell_reload_do_not_race(runtime, tmp_path):
    path = tmp_path / "greeter.py"
    path.write_text(plugin_source(1))
    [handle] = await runtime.load(path)
    watcher = runtime.watch(tmp_path, interval=0.01, debounce=0.0)
    for version in range(2, 8):
        path.write_text(plugin_source(version))
        await asyncio.gather(runtime.reload("greeter"), runtime.reload("greeter", force=True))
    await wait_for(lambda: runtime["greeter"].hello() == "hello v7")
    await watcher.stop()
    assert handle.state is PluginState.STARTED and "reload_failed" not in [e.kind for e in runtime.events]
    assert not [e for e in runtime.events if e.error is not None]



async def test_editor_style_atomic_save_reloads_once(runtime, tmp_path):
    """Editors save by writing a hidden temporary file and renaming it over the original."""
    path = tmp_path / "greeter.py"
    path.write_text(plugin_source(1))
    [handle] = await runtime.load(path)
    watcher = runtime.watch(tmp_path, interval=0.05, debounce=0.1)
    temporary = tmp_path / ".greeter.py.tmp"
    temporary.write_text(plugin_source(2))
    (tmp_path / "greeter.py~").write_text(plugin_source(1))  # a backup file is not a source
    os.replace(temporary, path)
    await wait_for(lambda: handle.generation == 2)
    scans = watcher.stats["scans"]
    await wait_for(lambda: watcher.stats["scans"] >= scans + 5)
    assert runtime["greeter"].hello() == "hello v2" and handle.generation == 2
    assert sorted(runtime) == ["greeter"] and runtime.failures == {}
    await watcher.stop()
