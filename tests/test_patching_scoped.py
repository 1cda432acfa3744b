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

    count = 8
    barrier = threading.Barrier(count)
    results: dict[int, list[int]] = {}
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            if n % 2:  # half patch, half do not
                with scoped_patch(lib.price, lambda x, n=n: x * 1000 + n):
                    barrier.wait(timeout=30)
                    seen = [scoped_user.price(1), lib.Shop().quote(1), scoped_user.handlers["price"](1)]
                    barrier.wait(timeout=30)
            else:
                barrier.wait(timeout=30)
                seen = [scoped_user.price(1), lib.Shop().quote(1), scoped_user.handlers["price"](1)]
                barrier.wait(timeout=30)
            results[n] = seen
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    for n in range(count):
        expected = 1000 + n if n % 2 else 10
        assert results[n] == [expected, expected + 1, expected]


async def test_scoped_patch_isolated_across_asyncio_tasks(lib):
    count = 8
    inside = asyncio.Event()
    entered = 0

    async def task(n: int) -> list[int]:
        nonlocal entered
        async def replacement(x: int) -> int:
            await asyncio.sleep(0)
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

    results = await asyncio.gather(*(task(n) for n in range(count)))
    assert results == [[1000 + n] * 3 + [10] for n in range(count)]


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
    with pytest.raises(ResolveError, match="no patch named 'nosuch'"):
        percall(calls.append, 1, decorator="nosuch")
    with pytest.raises(ResolveError, match="patches.nope"):
        percall(calls.append, 1, decorators=["timer", "patches.nope.thing"])
    assert calls == []


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


def test_library_patches_leave_results_unchanged(lib, capsys):
    from patches.counter import call_counts

    for name in ("timer", "log_args", "source", "counter", "benchmark"):
        assert percall(lib.price, 4, decorator=name) == 40
    out = capsys.readouterr().out
    assert "[args] scoped_lib.price(x=4)" in out and "-> 40" in out
    assert "return x * 10" in out and "[benchmark] scoped_lib.price" in out
    assert call_counts()["scoped_lib.price"] >= 1


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
