"""Scoped patches, per-call options, plugin-method keywords and the patches/ library."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from shellsvc.patching import (
    PatchManager,
    PatchResolver,
    ResolveError,
    original,
    percall,
    resolve_patch,
    scoped_patch,
)

LIB_SOURCE = '''
import functools

def price(x):
    return x * 10

async def aprice(x):
    return x * 10

def numbers(n):
    for i in range(n):
        yield i

async def anumbers(n):
    for i in range(n):
        yield i

class Shop:
    def quote(self, x):
        return price(x) + 1

def checkout(x):
    return price(x) + 1
'''


@pytest.fixture
def lib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    root = tmp_path / "src"
    root.mkdir()
    (root / "scoped_lib.py").write_text(textwrap.dedent(LIB_SOURCE))
    (root / "scoped_user.py").write_text("from scoped_lib import price, Shop\nhandlers = {'price': price}\n")
    monkeypatch.syspath_prepend(str(root))
    for name in ("scoped_lib", "scoped_user"):
        sys.modules.pop(name, None)
    importlib.invalidate_caches()
    module = importlib.import_module("scoped_lib")
    yield module
    for name in ("scoped_lib", "scoped_user"):
        sys.modules.pop(name, None)


def test_scoped_patch_reaches_every_reference_inside_the_scope_only(lib):
    import scoped_user

    shop = lib.Shop()
    code = lib.price.__code__
    with scoped_patch("scoped_lib.price", lambda x: -x) as active:
        assert lib.price.__code__ is not code  # trampoline installed while a scope is open
        assert scoped_user.price(2) == scoped_user.handlers["price"](2) == -2
        assert shop.quote(2) == lib.checkout(2) == -1
        assert active(3) == -3
    assert lib.price(2) == 20 and shop.quote(2) == 21
    assert lib.price.__code__ is code  # no scope open anywhere: the exact original code runs
    assert inspect.signature(lib.price) == inspect.signature(lambda x: None)


def test_scoped_patch_isolated_across_threads(lib):
    import scoped_user

    patched, unpatched = 8, 2  # eight threads with eight different replacements, two with none
    barrier = threading.Barrier(patched + unpatched)
    results: dict[int, list[int]] = {}
    errors: list[BaseException] = []
    shop = lib.Shop()  # one instance shared by every thread

    def observe() -> list[int]:
        seen = []
        for _ in range(50):  # repeated while every scope is open at once
            seen += [scoped_user.price(1), shop.quote(1), scoped_user.handlers["price"](1), lib.checkout(1)]
        return seen

    def worker(n: int) -> None:
        try:
            if n < patched:
                with scoped_patch(lib.price, lambda x, n=n: x * 1000 + n):
                    barrier.wait(timeout=30)
                    results[n] = observe()
                    barrier.wait(timeout=30)
            else:
                barrier.wait(timeout=30)
                results[n] = observe()
                barrier.wait(timeout=30)
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(patched + unpatched)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    for n in range(patched + unpatched):
        price = 1000 + n if n < patched else 10
        assert results[n] == [price, price + 1, price, price + 1] * 50, n
    assert lib.price(1) == 10


async def test_scoped_patch_isolated_across_asyncio_tasks(lib):
    count = 8  # eight tasks with eight different replacements, plus one task with none
    inside = asyncio.Event()
    entered = 0

    async def task(n: int) -> list[int]:
        nonlocal entered

        async def replacement(x: int) -> int:
            await asyncio.sleep(0)  # interleave with the other tasks mid-call
            return x * 1000 + n

        seen = []
        with scoped_patch(lib.aprice, replacement):
            entered += 1
            if entered == count:
                inside.set()
            await inside.wait()  # all scopes open at once
            for _ in range(3):
                seen.append(await lib.aprice(1))
                await asyncio.sleep(0)
        seen.append(await lib.aprice(1))
        return seen

    async def bystander() -> list[int]:
        await inside.wait()
        seen = []
        for _ in range(3):
            seen.append(await lib.aprice(1))
            await asyncio.sleep(0)
        return seen

    *results, unaffected = await asyncio.gather(*(task(n) for n in range(count)), bystander())
    assert results == [[1000 + n] * 3 + [10] for n in range(count)]
    assert unaffected == [10, 10, 10]


def test_scoped_patch_of_generators_source_text_and_original(lib):
    with scoped_patch(lib.numbers, "def numbers(n):\n    yield from range(n, 0, -1)\n"):
        assert list(lib.numbers(3)) == [3, 2, 1]
    assert list(lib.numbers(3)) == [0, 1, 2]
    with scoped_patch(lib.price, lambda x: original(lib.price)(x) + 5):
        assert lib.price(1) == 15

    async def collect() -> list[int]:
        async def reverse(n: int):
            for i in range(n, 0, -1):
                yield i

        with scoped_patch(lib.anumbers, reverse):
            patched = [i async for i in lib.anumbers(2)]
        return patched + [i async for i in lib.anumbers(2)]

    assert asyncio.run(collect()) == [2, 1, 0, 1]


def test_scoped_patch_with_a_decorator_and_hot_swap_underneath(lib, tmp_path, capsys):
    with scoped_patch(lib.price, decorator="timer"):
        assert lib.price(2) == 20
    assert "[timer] scoped_lib.price took" in capsys.readouterr().out
    manager = PatchManager(tmp_path / "state")
    record = manager.patch(lib.price, "return x * 3")  # base swapped, trampoline kept
    assert lib.price(2) == 6
    with scoped_patch(lib.price, lambda x: 0):
        assert lib.price(2) == 0
    manager.rollback(record.id)
    assert lib.price(2) == 20


def test_percall_options_combine_and_the_call_runs_once(lib):
    calls: list[Any] = []
    events: list[str] = []

    def target(x: int) -> int:
        calls.append(x)
        return lib.price(x)

    def tag(name: str):
        def decorator(fn):
            def wrapper(*args, **kwargs):
                events.append(f"{name}>")
                result = fn(*args, **kwargs)
                events.append(f"<{name}")
                return result
            return wrapper
        return decorator

    @contextlib.contextmanager
    def managed():
        events.append("enter")
        yield
        events.append("exit")

    result = percall(
        target,
        2,
        monkey_patch={"scoped_lib.price": lambda x: x * 7},
        decorator=tag("a"),
        decorators=[tag("b"), tag("c")],
        context_manager=managed,
    )
    assert result == 14 and calls == [2]
    # first decorator innermost (applied first), context managers outermost
    assert events == ["enter", "c>", "b>", "a>", "<a", "<b", "<c", "exit"]
    assert lib.price(2) == 20  # the monkey patch ended with the call


def test_percall_bad_name_raises_before_anything_runs(lib):
    calls: list[int] = []
    entered: list[str] = []

    @contextlib.contextmanager
    def watch():
        entered.append("cm")
        yield

    with pytest.raises(ResolveError, match="no patch named 'nosuch'"):
        percall(calls.append, 1, decorator="nosuch", context_manager=watch)
    with pytest.raises(ResolveError, match="patches.nope"):
        percall(calls.append, 1, decorators=["timer", "patches.nope.thing"])
    with pytest.raises(ResolveError, match="'scoped_lib.nope' does not resolve"):
        percall(calls.append, 1, monkey_patch={"scoped_lib.nope": "timer"}, context_manager=watch)
    with pytest.raises(ResolveError, match="no patch named 'not_a_patch'"):
        percall(calls.append, 1, monkey_patch={lib.price: "not_a_patch"})
    assert calls == [] and entered == []
    assert lib.price.__code__ is importlib.import_module("scoped_lib").price.__code__ and lib.price(1) == 10


async def test_percall_on_coroutines(lib, capsys):
    assert await percall(lib.aprice, 3, decorator="timer", monkey_patch=(lib.price, lambda x: 0)) == 30
    assert "[timer] scoped_lib.aprice" in capsys.readouterr().out


def test_plugin_methods_accept_percall_keywords(tmp_path, monkeypatch, capsys):
    (tmp_path / "my_plugin.py").write_text(
        textwrap.dedent(
            """
            from shellsvc.runtime import Plugin

            def helper(x):
                return x + 1

            class Greeter(Plugin):
                '''Says hello.'''

                def hello(self, name, *, punct="!"):
                    return "hello " + name + punct + str(helper(1))

                async def ahello(self, name):
                    return "ahello " + name

                def _private(self):
                    return 1
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("my_plugin", None)
    module = importlib.import_module("my_plugin")
    try:
        plugin = module.Greeter()
        assert plugin.hello("bob") == "hello bob!2"
        assert plugin.hello("bob", decorator="timer", monkey_patch={module.helper: lambda x: 40}) == "hello bob!40"
        assert "[timer] my_plugin.Greeter.hello took" in capsys.readouterr().out
        assert asyncio.run(plugin.ahello("x", decorators=["counter"])) == "ahello x"
        assert "call #" in capsys.readouterr().out
        with pytest.raises(TypeError):
            plugin._private(decorator="timer")  # private methods are untouched
        manager = PatchManager(tmp_path / "state")
        manager.patch(module.Greeter.hello, 'def hello(self, name, *, punct="?"):\n    return "hi " + name + punct\n')
        assert plugin.hello("bob") == "hi bob?"
        assert plugin.hello("bob", decorator="timer") == "hi bob?"  # keywords survive a hot swap
        assert "monkey_patch" in inspect.signature(module.Greeter.hello).parameters
    finally:
        sys.modules.pop("my_plugin", None)


def test_tracer_reports_lines_and_locals_and_restores_tracing(lib, capsys):
    def compute(n):
        total = 0
        for i in range(n):
            total += i
        if n > 5:
            raise ValueError("too big")
        return total

    def sentinel(frame, event, arg):
        return None

    previous = sys.gettrace()
    sys.settrace(sentinel)
    try:
        assert percall(compute, 3, decorator="tracer") == 3
        assert sys.gettrace() is sentinel
        with pytest.raises(ValueError):
            percall(compute, 9, decorator="patches.trace.tracer")
        assert sys.gettrace() is sentinel
    finally:
        sys.settrace(previous)
    out = capsys.readouterr().out
    assert "| total += i" in out and "total = 3" in out and "returned 3" in out
    assert "raised ValueError" in out


async def test_tracer_follows_generators_and_coroutines_step_by_step(lib, capsys):
    traced_lines: list[str] = []

    async def other_task() -> None:  # runs between the traced coroutine's steps
        for _ in range(3):
            traced_lines.append(repr(sys.gettrace()))
            await asyncio.sleep(0)

    async def fetch(n):
        got = 0
        for i in range(n):
            await asyncio.sleep(0)
            got += i
        return got

    previous = sys.gettrace()
    result, _ = await asyncio.gather(percall(fetch, 3, decorator="tracer"), other_task())
    assert result == 3 and sys.gettrace() is previous
    assert traced_lines == [repr(previous)] * 3  # tracing never leaked into the other task
    out = capsys.readouterr().out
    assert out.count("[trace] call ") == 1 and out.count("[trace] resume ") == 3
    assert "suspended, awaiting None" in out and "returned 3" in out and "StopIteration" not in out

    def numbers(n):
        for i in range(n):
            received = yield i
        return "done"

    gen = percall(numbers, 2, decorator="tracer")
    assert next(gen) == 0 and gen.send("hello") == 1
    with pytest.raises(StopIteration) as stop:
        next(gen)
    assert stop.value.value == "done" and sys.gettrace() is previous
    out = capsys.readouterr().out
    assert "yielded 0" in out and "received = 'hello'" in out and "returned 'done'" in out


async def test_tracer_output_goes_to_the_calling_session(lib):
    """Two real engine sessions trace at the same time; each sees only its own trace."""
    from shellsvc.engine import Engine, NamespaceRegistry, SessionIO

    engine = Engine(NamespaceRegistry(lambda user: {"percall": percall, "price": lib.price}))
    outputs: dict[str, list[str]] = {"ann": [], "bob": []}
    try:
        sessions = {
            user: engine.open_session(user, SessionIO(out.append, out.append)) for user, out in outputs.items()
        }
        code = (
            "def compute(n):\n    total = 0\n    for i in range(n):\n        total += i * {k}\n    return total\n"
        )
        await asyncio.gather(*(s.run(code.format(k=k)) for k, s in zip((1, 100), sessions.values())))
        outcomes = await asyncio.gather(*(s.run("percall(compute, 3, decorator='tracer')") for s in sessions.values()))
    finally:
        await engine.aclose()
    assert [o.value_repr for o in outcomes] == ["3", "300"]
    ann, bob = "".join(outputs["ann"]), "".join(outputs["bob"])
    assert "| total += i * 1" in ann and "total = 3" in ann and "returned 3" in ann and "* 100" not in ann
    assert "| total += i * 100" in bob and "total = 300" in bob and "returned 300" in bob and "i * 1\n" not in bob


def test_timer_reports_duration_and_keeps_the_result_even_when_raising(lib, capsys):
    marker = object()
    assert percall(lambda: marker, decorator="timer") is marker
    with pytest.raises(KeyError):
        percall({}.__getitem__, "missing", decorator="timer")
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and out[0].endswith(" ms") and "took" in out[0]
    assert out[1].endswith("(raised KeyError)")


def test_library_patches_leave_results_unchanged(lib, capsys):
    from patches.counter import call_counts

    for name in ("timer", "log_args", "source", "counter", "benchmark"):
        assert percall(lib.price, 4, decorator=name) == 40
    out = capsys.readouterr().out
    assert "[args] scoped_lib.price(x=4)" in out and "-> 40" in out
    assert "return x * 10" in out and "[benchmark] scoped_lib.price" in out
    assert call_counts()["scoped_lib.price"] >= 1


SHOUT = "__all__ = ['shout']\n\ndef shout(fn):\n    return lambda *a, **k: str(fn(*a, **k)).upper()\n"


def test_admin_patch_directory_of_a_service_state_dir(tmp_path, monkeypatch):
    """What the SSH service does: PatchManager(state_dir) + set_default_manager()."""
    from shellsvc.patching import default_manager, default_resolver, prepare_plugin_class, set_default_manager

    state = tmp_path / "state"
    manager = PatchManager(state)
    assert manager.patch_dirs == [state / "patches"] and (state / "patches").is_dir()
    assert (state / "patches").stat().st_mode & 0o777 == 0o700
    previous = set_default_manager(manager)
    try:
        assert default_manager() is manager and default_resolver() is manager.resolver
        (state / "patches" / "site_patches.py").write_text(SHOUT)  # dropped in while running

        class Greeter:
            def hello(self, name):
                return "hello " + name

        prepare_plugin_class(Greeter)
        assert Greeter().hello("ann", decorator="shout") == "HELLO ANN"
        assert percall(lambda: "ok", decorators=["site_patches.shout"]) == "OK"
    finally:
        set_default_manager(previous)
    assert default_resolver() is previous.resolver
    with pytest.raises(ResolveError, match="no patch named 'shout'"):
        percall(lambda: "ok", decorator="shout")  # the service's directory is gone with its manager
    custom = PatchManager(state, patch_dirs=[tmp_path / "elsewhere"])
    assert custom.patch_dirs == [tmp_path / "elsewhere"]


def test_admin_patch_files_others_could_write_are_refused(tmp_path):
    admin = tmp_path / "admin"
    admin.mkdir(mode=0o700)
    (admin / "loose.py").write_text(SHOUT)
    (admin / "loose.py").chmod(0o666)
    (admin / "broken.py").write_text("__all__ = ['x']\nimport no_such_dependency_xyz\n")
    (admin / "uploaded_fix.py").write_text("raise SystemExit('must not run while indexing')\nPATCHES = {}\n")
    resolver = PatchResolver([admin], use_env=False)
    assert resolver.resolve("timer").__name__ == "timer"  # bad admin files do not break the library
    with pytest.raises(ResolveError, match=r"no patch named 'shout'.*loose.py was not loaded.*writable by group/others"):
        resolver.resolve("shout")
    with pytest.raises(ResolveError, match="broken.py was not loaded: ModuleNotFoundError.*no_such_dependency_xyz"):
        resolver.resolve("x")
    with pytest.raises(ResolveError, match="chmod go-w"):
        resolver.resolve("loose.shout")
    (admin / "loose.py").chmod(0o600)
    assert resolver.resolve("shout")(lambda: "hi")() == "HI"


def test_short_names_and_admin_patch_directories(tmp_path):
    resolver = PatchResolver([tmp_path / "admin"], use_env=False)
    from patches.trace import tracer

    assert resolver.resolve("tracer") is tracer is resolve_patch("patches.trace.tracer")
    (tmp_path / "admin").mkdir()
    (tmp_path / "admin" / "site_patches.py").write_text(
        "__all__ = ['shout']\n\ndef shout(fn):\n    return lambda *a, **k: str(fn(*a, **k)).upper()\n"
    )
    assert resolver.resolve("shout")(lambda: "hi")() == "HI"  # dropped in after the first lookup
    assert resolver.resolve("site_patches.shout") is resolver.resolve("shout")
    assert percall(lambda: "ok", decorator=resolver.resolve("shout")) == "OK"
    with pytest.raises(ResolveError, match="known short names: .*tracer"):
        resolver.resolve("nosuch")
    with pytest.raises(ResolveError, match="'patches.trace' has no attribute|does not resolve"):
        resolver.resolve("patches.trace.nosuch")


def test_functions_without_source_get_a_forwarding_trampoline(tmp_path):
    namespace: dict[str, Any] = {}
    exec("def make(k):\n    def scaled(x, *rest, by=2, **kw):\n        return x * by * k\n    return scaled\n", namespace)
    scaled = namespace["make"](10)
    signature = inspect.signature(scaled)
    with scoped_patch(scaled, lambda x, *rest, by=2, **kw: ("patched", x, by)):
        assert inspect.signature(scaled) == signature
        assert scaled(1, by=3) == ("patched", 1, 3)
        other: list[Any] = []
        thread = threading.Thread(target=lambda: other.append(scaled(1, by=3)))
        thread.start()
        thread.join(timeout=30)
        assert other == [30]  # the generic trampoline forwards to the original elsewhere
    assert scaled(1) == 20


def test_instrumented_functions_are_freed_with_their_module(tmp_path, monkeypatch):
    """An unloaded plugin version must not be kept alive by scoped/per-call instrumentation."""
    import gc
    import weakref

    from shellsvc.patching import instrument, prepare_plugin_class

    (tmp_path / "freed_lib.py").write_text(
        "def price(x):\n    return x * 10\n\nclass Service:\n    def quote(self, x):\n        return price(x) + 1\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("freed_lib")
    made: dict[str, Any] = {}  # no source: generic trampolines
    exec("class Made:\n    def quote(self, x):\n        return x\n\ndef price(x):\n    return x\n", made)
    for namespace in (vars(module), made):
        cls = namespace.get("Service") or namespace["Made"]
        prepare_plugin_class(cls)
        price = namespace["price"]
        with scoped_patch(price, lambda x, price=price: original(price)(x) + 1):
            assert price(1) in (11, 2)
            assert cls().quote(1, decorator="timer") in (12, 1)
    manager = PatchManager()
    manager.rollback(manager.patch(module.price, "return x").id)
    functions = [module.price, module.Service.quote, made["price"], made["Made"].quote]
    refs = [weakref.ref(obj) for obj in functions] + [weakref.ref(module)]
    states = [weakref.ref(instrument.state_for(fn, create=False)) for fn in functions]
    assert instrument.state_for(made["Made"].quote, create=False).uses_source is False
    del module, manager, made, functions, namespace, cls, price
    sys.modules.pop("freed_lib")
    gc.collect()
    assert [ref() for ref in refs] == [None] * 5
    assert [ref() for ref in states] == [None] * 4


ARITY_PLUGIN = '''
from shellsvc.runtime import Plugin

class {name}{base}:
    def process(self, item):
        return item

    def scale(self, item, factor=2):
        return item * factor

    async def aprocess(self, item):
        return item

    def items(self, n):
        yield from range(n)
'''


def test_plugin_method_with_too_many_arguments_raises_like_the_original(tmp_path, monkeypatch):
    """``plugin.process(item, callback)`` must not run ``callback`` as a monkey patch."""
    from shellsvc.console.registry import build_command

    (tmp_path / "arity_plugin.py").write_text(
        ARITY_PLUGIN.format(name="Worker", base="(Plugin)") + ARITY_PLUGIN.format(name="Plain", base="").split("\n", 2)[2]
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("arity_plugin", None)
    module = importlib.import_module("arity_plugin")
    try:
        plugin, plain = module.Worker(), module.Plain()  # the same methods, prepared and not
        called: list[Any] = []

        def callback(*args: Any, **kwargs: Any) -> Any:
            called.append(args)
            return args[0] if args else None

        def refusal(call: Any) -> str:
            with pytest.raises(TypeError) as refused:
                call()
            return str(refused.value).replace("Plain.", "Worker.")

        cases = [
            ("process", (1, callback)),
            ("process", (1, None)),  # a None too many is refused as well
            ("process", (1, callback, callback)),
            ("process", (1, callback, "timer", [callback], callback)),
            ("scale", (1, 3, callback)),
            ("scale", (1, 3, 0, 0)),
        ]
        for name, args in cases:
            expected = refusal(lambda: getattr(plain, name)(*args))
            assert refusal(lambda: getattr(plugin, name)(*args)) == expected, (name, args)
            assert refusal(lambda: getattr(module.Worker, name)(plugin, *args)) == expected
        # Generators and coroutines refuse at the call, as CPython does, not at the first next()/await.
        for name in ("aprocess", "items"):
            assert refusal(lambda: getattr(plugin, name)(1, callback)) == refusal(lambda: getattr(plain, name)(1, callback))
        # Way too many: CPython's own refusal (its counts include the hidden parameters); still nothing runs.
        with pytest.raises(TypeError, match="positional arguments but 9 were given"):
            plugin.process(*[callback] * 8)
        # Too many positional arguments next to a real per-call keyword: refused too.
        with pytest.raises(TypeError, match="takes 2 positional arguments but 3 were given"):
            plugin.process(1, callback, decorator="timer")
        assert called == []

        # Right calls still work, with and without the keywords, also after a hot swap.
        assert plugin.process(5) == 5 and plugin.scale(2) == 4 and plugin.scale(2, factor=5) == 10
        assert plugin.process(5, decorator=lambda f: lambda *a: f(*a) + 1) == 6
        assert asyncio.run(plugin.aprocess(3, decorators=[])) == 3 and list(plugin.items(2)) == [0, 1]
        PatchManager(tmp_path / "state").patch(module.Worker.process, "def process(self, item):\n    return -item\n")
        assert plugin.process(5) == -5 and refusal(lambda: plugin.process(1, callback)) == refusal(
            lambda: plain.process(1, callback))
        assert called == []

        # What callers, help() and the operator console see: no hidden parameter.
        signature = inspect.signature(plugin.scale)
        assert str(signature) == (
            "(item, factor=2, *, monkey_patch=None, decorator=None, decorators=None, context_manager=None)")
        assert list(inspect.signature(module.Worker.scale).parameters)[:3] == ["self", "item", "factor"]
        assert [p.name for p in build_command(plugin.scale).params] == ["item", "factor"]
        assert repr(signature).startswith("<Signature (item, factor=2, *")
    finally:
        sys.modules.pop("arity_plugin", None)


def test_plugin_class_recreated_from_unchanged_code_compiles_nothing(tmp_path, monkeypatch):
    """A plugin reload of an unchanged file re-creates the class from the same code object."""
    from shellsvc.patching import instrument

    path = tmp_path / "cached_plugin.py"
    path.write_text(ARITY_PLUGIN.format(name="Worker", base="(Plugin)"))
    code = compile(path.read_text(), str(path), "exec")
    first: dict[str, Any] = {"__name__": "cached_plugin"}
    exec(code, first)
    compiled: list[Any] = []
    real = instrument.compile_function
    monkeypatch.setattr(instrument, "compile_function", lambda *a, **k: compiled.append(a) or real(*a, **k))
    second: dict[str, Any] = {"__name__": "cached_plugin"}
    exec(code, second)
    assert compiled == []
    old, new = first["Worker"](), second["Worker"]()
    assert old.process.__func__ is not new.process.__func__
    # Each function got its own instrumentation (its own state), sharing only the compiled template.
    assert instrument.state_for(new.process.__func__, create=False).fn is new.process.__func__
    assert new.process(2, decorator=lambda f: lambda *a: ("new", f(*a))) == ("new", 2)
    assert old.process(2, decorator=lambda f: lambda *a: ("old", f(*a))) == ("old", 2)
    with pytest.raises(TypeError, match="takes 2 positional arguments but 3 were given"):
        new.process(1, 2)
