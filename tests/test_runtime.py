"""Plugin runtime: loading, registry, atomic reload with rollback, unload — on real files."""

from __future__ import annotations

import asyncio
import hashlib
import sys
import textwrap
import types
from pathlib import Path

import pytest

import shellsvc
from shellsvc.runtime import (
    Plugin,
    PluginHandle,
    PluginLoadError,
    PluginNotFound,
    PluginState,
    ReloadError,
    Runtime,
    RuntimeEvent,
    plugin_commands,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def write(path: Path, source: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source).lstrip("\n"))
    return path


def line_of(path: Path, needle: str) -> int:
    return next(n for n, text in enumerate(path.read_text().splitlines(), 1) if needle in text)


def counter_source(step: int = 1, extra: str = "") -> str:
    return f'''
        from pathlib import Path
        from shellsvc import Plugin

        LOG = Path(__file__).with_suffix(".log")

        class Counter(Plugin):
            """Counts things.

            Second paragraph is not part of the description.
            """
            version = "{step}.0"

            def __init__(self):
                self.value = 0

            def increment(self):
                self.value += {step}
                return self.value

            async def start(self):
                with LOG.open("a") as log:
                    log.write("start {step}\\n")
                {extra}

            async def stop(self):
                with LOG.open("a") as log:
                    log.write("stop {step}\\n")

            def migrate_from(self, previous):
                self.value = previous.value
        '''


def lifecycle_log(plugin_file: Path) -> list[str]:
    log = plugin_file.with_suffix(".log")
    return log.read_text().splitlines() if log.exists() else []


@pytest.fixture
async def runtime():
    rt = Runtime()
    events: list[RuntimeEvent] = []
    rt.subscribe(events.append)
    rt.events = events  # type: ignore[attr-defined]  # test convenience
    yield rt
    await rt.aclose()


def kinds(rt: Runtime) -> list[str]:
    return [event.kind for event in rt.events]  # type: ignore[attr-defined]


# -- loading and the registry ----------------------------------------------------------------
async def test_load_file_registers_handle_with_hash_state_and_namespaced_module(runtime, tmp_path):
    path = write(tmp_path / "counting.py", counter_source())
    [handle] = await runtime.load(path)

    assert isinstance(handle, PluginHandle)
    assert handle.name == "counter" and handle.path == path.resolve() and handle.kind == "module"
    assert handle.state is PluginState.STARTED and handle.generation == 1 and handle.error is None
    assert handle.files == {path.resolve(): hashlib.sha256(path.read_bytes()).hexdigest()}
    assert handle.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert handle.loaded_at > 0
    assert "counter" in runtime and len(runtime) == 1 and list(runtime) == ["counter"]
    assert runtime["counter"] is handle.plugin and runtime.plugins.counter is handle.plugin
    assert runtime["counter"].increment() == 1
    assert "'counter'" in repr(handle) and "started" in repr(handle)
    assert "counter(started)" in repr(runtime)
    # Namespaced module, not "counting"; compiled from memory, so no __pycache__ next to the plugin.
    assert handle.module.startswith(runtime.namespace + ".counting_")
    assert sys.modules[handle.module].Counter is type(handle.plugin)
    assert "counting" not in sys.modules
    assert not (tmp_path / "__pycache__").exists()
    assert kinds(runtime) == ["loaded", "started"]
    assert lifecycle_log(path) == ["start 1"]
    with pytest.raises(PluginNotFound, match="no plugin named 'nope'; loaded: counter"):
        runtime["nope"]


async def test_plugin_metadata_defaults_and_overrides():
    class CounterService(Plugin):
        """A counter.

        More text.
        """

    class Named(Plugin):
        name = "custom"
        description = "explicit"
        tags = ("a",)

    assert CounterService.name == "counter_service" and CounterService().name == "counter_service"
    assert CounterService.description == "A counter."
    assert Named.name == "custom" and Named().description == "explicit" and Named.tags == ("a",)
    assert await Named().start() is None and Named().health() is True
    assert shellsvc.Plugin is Plugin and shellsvc.Runtime is Runtime


async def test_load_is_idempotent(runtime, tmp_path):
    path = write(tmp_path / "counting.py", counter_source())
    first = await runtime.load(path)
    second = await runtime.load(path)
    assert first == second and len(runtime) == 1
    assert lifecycle_log(path) == ["start 1"]  # not executed or started twice


async def test_directory_load_packages_recursion_and_selection(runtime, tmp_path):
    write(tmp_path / "plugins" / "alpha.py", "from shellsvc import Plugin\nclass Alpha(Plugin): pass\n")
    write(tmp_path / "plugins" / "_private.py", "raise RuntimeError('helpers starting with _ are not plugins')\n")
    write(tmp_path / "plugins" / "notes.py", "VALUE = 1  # no plugin here\n")
    write(tmp_path / "plugins" / "pkg" / "__init__.py", "from shellsvc import Plugin\nclass Pkg(Plugin): pass\n")
    write(tmp_path / "plugins" / "nested" / "deep.py", "from shellsvc import Plugin\nclass Deep(Plugin): pass\n")

    handles = await runtime.load(tmp_path / "plugins")
    assert sorted(h.name for h in handles) == ["alpha", "pkg"]
    assert runtime.handle("pkg").kind == "package"
    await runtime.load(tmp_path / "plugins", recursive=True)
    assert sorted(runtime) == ["alpha", "deep", "pkg"]
    assert runtime.failures == {}


async def test_select_by_base_class_and_by_class_names(tmp_path):
    write(
        tmp_path / "mixed.py",
        """
        from shellsvc import Plugin

        class Service:
            def __init__(self):
                self.started = False
            async def start(self):
                self.started = True

        class Other(Service):
            pass

        class Regular(Plugin):
            pass
        """,
    )
    async with Runtime() as rt:
        [handle] = await rt.load(tmp_path / "mixed.py", classes=["Other"])
        assert handle.name == "other" and rt["other"].started
    async with Runtime() as rt:
        handles = await rt.load(tmp_path / "mixed.py", base=object)
        assert sorted(h.name for h in handles) == ["other", "regular", "service"]
    async with Runtime() as rt:
        with pytest.raises(PluginLoadError, match="defines no plugin .a class named Missing"):
            await rt.load(tmp_path / "mixed.py", classes=["Missing"])


async def test_classes_imported_from_the_app_are_not_instantiated(runtime, tmp_path, monkeypatch):
    write(tmp_path / "app" / "appbase.py", "from shellsvc import Plugin\nclass AppService(Plugin):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path / "app"))
    write(tmp_path / "p.py", "from appbase import AppService\n\nclass Mine(AppService):\n    pass\n")
    try:
        assert [h.name for h in await runtime.load(tmp_path / "p.py")] == ["mine"]
    finally:
        sys.modules.pop("appbase", None)


async def test_name_conflict_is_refused_with_both_paths(runtime, tmp_path):
    write(tmp_path / "one.py", "from shellsvc import Plugin\nclass A(Plugin):\n    name = 'same'\n")
    write(tmp_path / "two.py", "from shellsvc import Plugin\nclass B(Plugin):\n    name = 'same'\n")
    await runtime.load(tmp_path / "one.py")
    with pytest.raises(PluginLoadError, match=r"plugin name 'same' is already used by .*one\.py"):
        await runtime.load(tmp_path / "two.py")
    assert runtime.handle("same").path == (tmp_path / "one.py").resolve()


async def test_directory_load_reports_broken_file_and_loads_the_rest(runtime, tmp_path):
    write(tmp_path / "good.py", "from shellsvc import Plugin\nclass Good(Plugin): pass\n")
    bad = write(tmp_path / "bad.py", "from shellsvc import Plugin\n\nclass Bad(Plugin)\n    pass\n")
    handles = await runtime.load(tmp_path)
    assert [h.name for h in handles] == ["good"]
    error = runtime.failures[bad.resolve()]
    assert error.file == str(bad.resolve()) and error.line == 3 and "SyntaxError" in str(error)
    assert f"{bad.resolve()}:3: loading failed" in repr(runtime.failures)
    [failed] = [e for e in runtime.events if e.kind == "load_failed"]
    assert failed.path == bad.resolve() and failed.line == 3
    with pytest.raises(PluginLoadError, match=r"bad\.py:3: loading failed: SyntaxError"):
        await runtime.load(bad)


async def test_start_failure_on_load_marks_handle_failed(runtime, tmp_path):
    path = write(tmp_path / "boom.py", counter_source(extra="raise OSError('port in use')"))
    with pytest.raises(PluginLoadError, match="start.. failed: OSError: port in use") as info:
        await runtime.load(path)
    assert info.value.line == line_of(path, "port in use")
    handle = runtime.handle("counter")
    assert handle.state is PluginState.FAILED and handle.error is info.value


async def test_two_plugins_with_their_own_utils_do_not_collide(runtime, tmp_path):
    for name, value in (("first", 1), ("second", 2)):
        write(tmp_path / name / "utils.py", f"VALUE = {value}\n")
        write(
            tmp_path / name / "__init__.py",
            f"""
            from shellsvc import Plugin
            from . import utils
            from .utils import VALUE

            class P(Plugin):
                name = "{name}"
                def value(self):
                    return utils.VALUE, VALUE
            """,
        )
    apps_utils = types.ModuleType("utils")  # the host application's own "utils"
    sys.modules["utils"] = apps_utils
    try:
        await runtime.load(tmp_path)
        assert runtime["first"].value() == (1, 1)
        assert runtime["second"].value() == (2, 2)
        assert sys.modules["utils"] is apps_utils
        names = [n for n in sys.modules if n.startswith(runtime.namespace + ".") and n.endswith(".utils")]
        assert len(names) == 2
    finally:
        del sys.modules["utils"]



async def test_plugin_named_like_an_app_module_replaces_nothing(runtime, tmp_path):
    import json

    write(
        tmp_path / "json.py",
        """
        import json  # absolute: the standard library, not this file
        from shellsvc import Plugin

        class Json(Plugin):
            def dumps(self):
                return json.dumps([1])
        """,
    )
    write(tmp_path / "logging" / "__init__.py", "from shellsvc import Plugin\nclass Log(Plugin): pass\n")
    before = dict(sys.modules)
    await runtime.load(tmp_path)
    assert sorted(runtime) == ["json", "log"] and runtime["json"].dumps() == "[1]"
    assert sys.modules["json"] is json
    assert [name for name, module in before.items() if sys.modules.get(name) is not module] == []
    added = set(sys.modules) - set(before)
    assert added and all(name.startswith(runtime.namespace + ".") for name in added)
    await runtime.unload("json")
    assert sys.modules["json"] is json

# -- atomic reload ---------------------------------------------------------------------------
async def test_reload_swaps_in_new_version_migrates_state_and_stops_old(runtime, tmp_path):
    path = write(tmp_path / "counting.py", counter_source(step=1))
    [handle] = await runtime.load(path)
    old_plugin = runtime["counter"]
    old_plugin.increment()
    old_plugin.increment()

    write(path, counter_source(step=10))
    [same_handle] = await runtime.reload("counter")
    assert same_handle is handle and handle.generation == 2 and handle.state is PluginState.STARTED
    new_plugin = runtime["counter"]
    assert new_plugin is not old_plugin and new_plugin.version == "10.0"
    assert new_plugin.value == 2 and new_plugin.increment() == 12  # state carried, new code runs
    assert lifecycle_log(path) == ["start 1", "start 10", "stop 1"]  # new started before old stopped
    assert handle.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert sys.modules[handle.module].Counter is type(new_plugin)
    assert kinds(runtime)[-1] == "reloaded"


async def test_reload_to_broken_file_keeps_old_version_serving(runtime, tmp_path):
    path = write(tmp_path / "counting.py", counter_source(step=1))
    [handle] = await runtime.load(path)
    plugin = runtime["counter"]
    module = sys.modules[handle.module]
    plugin.increment()

    broken = counter_source(step=2).replace("def increment(self):", "def increment(self)")
    write(path, broken)
    with pytest.raises(ReloadError) as info:
        await runtime.reload("counter")
    error = info.value
    assert error.file == str(path.resolve()) and error.line == line_of(path, "def increment(self)")
    assert "SyntaxError" in str(error) and "previous version keeps serving" in str(error)
    assert isinstance(error.__cause__, PluginLoadError) and isinstance(error.cause, SyntaxError)
    # The old version is untouched: same objects, same state, still callable, still started.
    assert runtime["counter"] is plugin and plugin.increment() == 2
    assert sys.modules[handle.module] is module and type(plugin) is module.Counter
    namespace, _, child = handle.module.rpartition(".")
    assert getattr(sys.modules[namespace], child) is module
    assert handle.generation == 1 and handle.state is PluginState.STARTED and handle.error is error
    assert lifecycle_log(path) == ["start 1"]
    [event] = [e for e in runtime.events if e.kind == "reload_failed"]
    assert event.name == "counter" and (event.file, event.line) == (error.file, error.line)

    write(path, counter_source(step=5))  # fixing the file reloads fine, state preserved
    await runtime.reload("counter")
    assert runtime["counter"].increment() == 7 and handle.generation == 2 and handle.error is None


async def test_reload_with_import_error_reports_line_and_keeps_old(runtime, tmp_path):
    path = write(tmp_path / "counting.py", counter_source())
    await runtime.load(path)
    plugin = runtime["counter"]
    write(path, "import os\nimport no_such_module_anywhere\n" + textwrap.dedent(counter_source()))
    with pytest.raises(ReloadError, match=r"counting\.py:2: .*ModuleNotFoundError") as info:
        await runtime.reload(path)
    assert info.value.line == 2 and runtime["counter"] is plugin


async def test_reload_where_start_raises_keeps_old_and_stops_new(runtime, tmp_path):
    path = write(tmp_path / "counting.py", counter_source(step=1))
    [handle] = await runtime.load(path)
    plugin = runtime["counter"]
    plugin.increment()

    write(path, counter_source(step=2, extra="raise RuntimeError('cannot bind port')"))
    with pytest.raises(ReloadError, match="start.. failed|cannot bind port") as info:
        await runtime.reload("counter")
    assert info.value.line == line_of(path, "cannot bind port")
    assert runtime["counter"] is plugin and plugin.value == 1 and plugin.increment() == 2
    assert handle.state is PluginState.STARTED and handle.generation == 1
    # The rejected new version got its stop(); the old one was never stopped.
    assert lifecycle_log(path) == ["start 1", "start 2", "stop 2"]


async def test_reload_health_checks_can_veto(runtime, tmp_path):
    path = write(tmp_path / "counting.py", counter_source(step=1))
    await runtime.load(path)
    plugin = runtime["counter"]

    write(path, counter_source(step=2))
    seen = []

    async def check(new_plugin):
        seen.append(new_plugin)
        return new_plugin.increment() == 2  # v2 starts at 0 and adds 2: would pass...

    plugin.increment()
    with pytest.raises(ReloadError, match="health check") as info:
        await runtime.reload("counter", health_check=lambda new: False)
    assert info.value.file == str(path.resolve())
    assert runtime["counter"] is plugin and plugin.value == 1 and plugin.increment() == 2
    assert runtime.handle("counter").state is PluginState.STARTED and runtime.handle("counter").generation == 1
    assert lifecycle_log(path) == ["start 1", "start 2", "stop 2"]  # the rejected one was stopped
    await runtime.reload("counter", health_check=check)
    assert seen and runtime["counter"] is seen[0]

    write(path, textwrap.dedent(counter_source(step=3)) + "\n    def health(self):\n        return False\n")
    with pytest.raises(ReloadError, match=r"health\(\) reported False"):
        await runtime.reload("counter")
    assert runtime["counter"] is seen[0]
    assert lifecycle_log(path)[-2:] == ["start 3", "stop 3"]


async def test_reload_unchanged_is_a_no_op_unless_forced(runtime, tmp_path):
    path = write(tmp_path / "counting.py", counter_source())
    [handle] = await runtime.load(path)
    path.touch()
    await runtime.reload("counter")
    assert handle.generation == 1 and lifecycle_log(path) == ["start 1"]
    await runtime.reload("counter", force=True)
    assert handle.generation == 2


async def test_reload_of_package_picks_up_helper_module_edit(runtime, tmp_path):
    package = tmp_path / "greeter"
    write(package / "phrases.py", "def greeting(who):\n    return 'Hello, ' + who\n")
    write(
        package / "__init__.py",
        """
        from shellsvc import Plugin
        from .phrases import greeting

        class Greeter(Plugin):
            def __init__(self):
                self.greeted = []
            def greet(self, who):
                self.greeted.append(who)
                return greeting(who)
            def migrate_from(self, previous):
                self.greeted = previous.greeted
        """,
    )
    [handle] = await runtime.load(package)
    assert runtime["greeter"].greet("ann") == "Hello, ann"
    first_helper = sys.modules[handle.module + ".phrases"]
    assert set(handle.files) == {(package / "__init__.py").resolve(), (package / "phrases.py").resolve()}

    write(package / "phrases.py", "def greeting(who):\n    return 'Hi, ' + who\n")
    await runtime.reload("greeter")
    assert runtime["greeter"].greet("ann") == "Hi, ann" and handle.generation == 2
    helper = sys.modules[handle.module + ".phrases"]
    assert helper is not first_helper and first_helper.greeting("x") == "Hello, x"

    old, root = runtime["greeter"], sys.modules[handle.module]
    write(package / "phrases.py", "def greeting(who):\n    return 'Hey, ' + undefined_name\n")
    write(package / "__init__.py", package.joinpath("__init__.py").read_text() + "\nGREETER_TEST = greeting('x')\n")
    with pytest.raises(ReloadError) as info:
        await runtime.reload(package)
    assert info.value.file == str((package / "phrases.py").resolve()) and info.value.line == 2
    assert runtime["greeter"] is old and old.greet("bo") == "Hi, bo" and old.greeted == ["ann", "ann", "bo"]
    assert sys.modules[handle.module] is root and sys.modules[handle.module + ".phrases"] is helper
    assert root.phrases is helper and handle.generation == 2


async def test_reload_changed_reloads_only_edited_sources(runtime, tmp_path):
    a = write(tmp_path / "a.py", "from shellsvc import Plugin\nclass A(Plugin):\n    version = '1'\n")
    write(tmp_path / "b.py", "from shellsvc import Plugin\nclass B(Plugin):\n    version = '1'\n")
    await runtime.load(tmp_path)
    write(a, "from shellsvc import Plugin\nclass A(Plugin):\n    version = '2'\n")
    reloaded = await runtime.reload_changed()
    assert [h.name for h in reloaded] == ["a"] and runtime["a"].version == "2"
    assert runtime.handle("b").generation == 1



async def test_start_timeout_reports_the_await_it_was_stuck_on(tmp_path):
    path = write(tmp_path / "counting.py", counter_source(step=1))
    async with Runtime(start_timeout=0.2) as rt:
        [handle] = await rt.load(path)
        plugin = rt["counter"]
        write(path, counter_source(step=2, extra="await __import__('asyncio').Event().wait()  # stuck"))
        with pytest.raises(ReloadError, match=r"start\(\) did not finish within 0.2 s") as info:
            await rt.reload("counter")
        assert (info.value.file, info.value.line) == (str(path.resolve()), line_of(path, "# stuck"))
        assert rt["counter"] is plugin and handle.state is PluginState.STARTED
        assert lifecycle_log(path) == ["start 1", "start 2", "stop 2"]


async def test_reload_of_a_deleted_file_keeps_the_old_version(runtime, tmp_path):
    path = write(tmp_path / "counting.py", counter_source())
    await runtime.load(path)
    plugin = runtime["counter"]
    path.unlink()
    with pytest.raises(ReloadError, match="no source files found"):
        await runtime.reload("counter", force=True)
    assert runtime["counter"] is plugin and plugin.increment() == 1


async def test_reload_of_a_source_that_failed_to_load_loads_it(runtime, tmp_path):
    bad = write(tmp_path / "counting.py", counter_source().replace("class Counter(Plugin):", "class Counter(Plugin)"))
    await runtime.load(tmp_path)  # a directory load reports instead of raising
    assert bad.resolve() in runtime.failures and "counter" not in runtime
    with pytest.raises(PluginLoadError, match=r"counting\.py:\d+: loading failed: SyntaxError"):
        await runtime.reload(bad)  # still broken: there is no old version, so a load error
    write(bad, counter_source())
    [handle] = await runtime.reload(bad)
    assert handle.state is PluginState.STARTED and runtime.failures == {}
    with pytest.raises(PluginNotFound, match="no plugin or plugin source"):
        await runtime.reload(tmp_path / "never_loaded.py")

# -- unload ----------------------------------------------------------------------------------
async def test_unload_stops_plugin_and_removes_its_modules_by_exact_path(runtime, tmp_path):
    write(tmp_path / "foo" / "__init__.py", "from shellsvc import Plugin\nfrom . import helper\nclass Foo(Plugin): pass\n")
    write(tmp_path / "foo" / "helper.py", "X = 1\n")
    write(tmp_path / "foobar" / "__init__.py", "from shellsvc import Plugin\nclass Foobar(Plugin): pass\n")
    counting = write(tmp_path / "counting.py", counter_source())
    await runtime.load(tmp_path)
    foo_module, foobar_module = runtime.handle("foo").module, runtime.handle("foobar").module
    assert foo_module + ".helper" in sys.modules

    assert await runtime.unload(tmp_path / "foo") == ["foo"]
    assert "foo" not in runtime and "foobar" in runtime
    assert not [n for n in sys.modules if n == foo_module or n.startswith(foo_module + ".")]
    assert foobar_module in sys.modules

    assert await runtime.unload("counter") == ["counter"]
    assert lifecycle_log(counting) == ["start 1", "stop 1"]
    assert kinds(runtime)[-2:] == ["stopped", "unloaded"]
    with pytest.raises(PluginNotFound):
        await runtime.unload(tmp_path / "foo")
    with pytest.raises(PluginNotFound):
        await runtime.unload(tmp_path / "fo")


async def test_unload_bounds_stop_with_a_timeout(runtime, tmp_path):
    write(
        tmp_path / "stuck.py",
        """
        import asyncio
        from shellsvc import Plugin

        class Stuck(Plugin):
            async def stop(self):
                await asyncio.Event().wait()
        """,
    )
    [handle] = await runtime.load(tmp_path / "stuck.py")
    assert await runtime.unload("stuck", timeout=0.2) == ["stuck"]
    assert "stuck" not in runtime and handle.module not in sys.modules
    [event] = [e for e in runtime.events if e.kind == "unloaded"]
    assert "did not finish within 0.2 s" in str(event.error)


async def test_stop_and_start_plugin_keep_it_registered(runtime, tmp_path):
    path = write(tmp_path / "counting.py", counter_source())
    await runtime.load(path)
    handle = await runtime.stop_plugin("counter")
    assert handle.state is PluginState.STOPPED and "counter" in runtime
    await runtime.reload("counter", force=True)  # a stopped plugin is replaced, not started
    assert handle.state is PluginState.STOPPED and handle.generation == 2
    await runtime.start_plugin("counter")
    assert handle.state is PluginState.STARTED
    assert lifecycle_log(path) == ["start 1", "stop 1", "start 1"]


# -- events, shell contributions, guards -----------------------------------------------------
async def test_subscribe_and_unsubscribe(tmp_path):
    path = write(tmp_path / "counting.py", counter_source())
    async with Runtime() as rt:
        seen: list[str] = []
        async_seen: list[str] = []

        async def async_subscriber(event):
            async_seen.append(event.kind)

        def broken_subscriber(event):
            raise ValueError("subscriber bug must not break the runtime")

        subscription = rt.subscribe(lambda event: seen.append(f"{event.kind}:{event.name}"))
        rt.subscribe(broken_subscriber)
        rt.subscribe(async_subscriber)
        await rt.load(path)
        subscription()
        await rt.reload("counter", force=True)
        assert seen == ["loaded:counter", "started:counter"]
        for _ in range(100):
            if "reloaded" in async_seen:
                break
            await asyncio.sleep(0.01)
        assert async_seen == ["loaded", "started", "reloaded"]


async def test_shell_names_and_bound_commands(runtime, tmp_path):
    write(
        tmp_path / "svc.py",
        """
        from shellsvc import Plugin

        class Svc(Plugin):
            def __init__(self):
                self.n = 0
            def bump(self):
                self.n += 1
                return self.n
            def shell_names(self):
                return {"svc": self}
            commands = [bump]
        """,
    )
    await runtime.load(tmp_path / "svc.py")
    assert runtime.shell_names() == {"svc": runtime["svc"]}
    [[bump]] = runtime.commands().values()
    assert list(runtime.commands()) == ["svc"]
    assert bump() == 1 and runtime["svc"].n == 1
    assert plugin_commands(runtime["svc"])[0]() == 2  # what the console binds per plugin

    old = runtime["svc"]
    await runtime.reload("svc", force=True)  # commands follow the new instance
    [[bump]] = runtime.commands().values()
    assert bump() == 1 and runtime["svc"].n == 1 and old.n == 2
    await runtime.stop_plugin("svc")  # stopped plugins offer nothing
    assert runtime.commands() == {} and runtime.shell_names() == {}


async def test_reentrant_runtime_call_from_start_is_refused(tmp_path):
    write(
        tmp_path / "loop.py",
        """
        from shellsvc import Plugin

        class Loop(Plugin):
            runtime = None
            async def start(self):
                await type(self).runtime.reload("loop", force=True)
        """,
    )
    async with Runtime() as rt:
        await rt.load(tmp_path / "loop.py", start=False)
        assert rt.handle("loop").state is PluginState.LOADED
        type(rt["loop"]).runtime = rt
        with pytest.raises(PluginLoadError, match="re-entrant Runtime call"):
            await rt.start_plugin("loop")


async def test_runtime_namespaces_are_separate_and_released(tmp_path):
    path = write(tmp_path / "counting.py", counter_source())
    async with Runtime() as one, Runtime() as two:
        assert one.namespace != two.namespace
        await one.load(path)
        await two.load(path)
        assert one["counter"] is not two["counter"]
        namespace = one.namespace
    assert namespace not in sys.modules
    with pytest.raises(RuntimeError, match="closed"):
        await one.load(path)


async def test_sample_app_hosts_the_example_plugins():
    sys.path.insert(0, str(EXAMPLES))
    try:
        import sample_app
    finally:
        sys.path.remove(str(EXAMPLES))
    runtime = await sample_app.build_runtime(watch=False)
    try:
        assert sorted(runtime) == ["counter", "greeter", "ticker"]
        assert all(h.state is PluginState.STARTED for h in runtime.handles())
        assert runtime.plugins.counter.increment(2) == 2 and runtime["counter"].value == 2
        assert runtime.plugins.greeter.greet("admin") == "Hello, admin!"
        assert set(runtime.shell_names()) == {"counter", "greet", "ticker"}
        runtime["ticker"].interval = 0.01
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while runtime["ticker"].ticks < 1 and loop.time() < deadline:
            await asyncio.sleep(0.02)
        assert runtime["ticker"].ticks >= 1
        await runtime.reload("counter", force=True)
        assert runtime["counter"].value == 2  # migrate_from kept the count
    finally:
        await runtime.aclose()
    assert len(runtime) == 0
