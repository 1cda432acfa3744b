"""Hot swap, journal, rollback, commit and safety of shellsvc.patching (real modules on disk)."""

from __future__ import annotations

import asyncio
import functools
import importlib
import json
import os
import stat
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from shellsvc.patching import (
    PatchCompileError,
    PatchConflict,
    PatchHealthError,
    PatchManager,
    PatchNotFound,
    PatchRefused,
    ResolveError,
)

APP_SOURCE = '''
import functools

def plain(x):
    return x + 1

async def coro(x):
    return x + 1

def gen(n):
    for i in range(n):
        yield i

def deco(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return ("wrapped", fn(*args, **kwargs))
    return wrapper

@deco
def decorated(x):
    return x + 1

def make_counter():
    count = 0
    def bump(step=1):
        nonlocal count
        count += step
        return count
    return bump

bump = make_counter()

class Base:
    def greet(self):
        return "base"

class Service(Base):
    __secret = 7

    def method(self, x):
        return x + 1

    def greet(self):
        return "service+" + super().greet()

    def secret(self):
        return self.__secret

    @classmethod
    def cm(cls, x):
        return (cls.__name__, x + 1)

    @staticmethod
    def sm(x):
        return x + 1

def with_defaults(x, scale=2, cache={}):
    cache[x] = True
    return x * scale
'''


@pytest.fixture
def modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Write modules into a fresh directory on sys.path; drop them from sys.modules after."""
    root = tmp_path / "src"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    written: list[str] = []

    def write(name: str, source: str) -> Any:
        (root / f"{name}.py").write_text(textwrap.dedent(source))
        written.append(name)
        sys.modules.pop(name, None)
        importlib.invalidate_caches()
        return importlib.import_module(name)

    write.root = root  # type: ignore[attr-defined]
    yield write
    for name in written:
        sys.modules.pop(name, None)


@pytest.fixture
def app(modules):
    return modules("patch_app", APP_SOURCE)


@pytest.fixture
def manager(tmp_path: Path) -> PatchManager:
    return PatchManager(tmp_path / "state")


def test_every_kind_of_reference_sees_the_swap_and_the_original_after_rollback(app, modules, manager):
    user = modules("patch_user", "from patch_app import plain, Service, decorated\n")
    service = app.Service()
    bound = service.method
    callbacks = [app.plain]
    partial = functools.partial(app.plain, 10)
    originals = {
        "plain": app.plain.__code__,
        "method": app.Service.method.__code__,
        "cm": app.Service.__dict__["cm"].__func__.__code__,
        "sm": app.Service.__dict__["sm"].__func__.__code__,
        "coro": app.coro.__code__,
        "decorated": app.decorated.__wrapped__.__code__,
    }
    ids = [
        manager.patch(app.plain, "def plain(x):\n    return x * 100\n").id,
        manager.patch(app.Service.method, "def method(self, x):\n    return x * 100\n").id,
        manager.patch(app.Service.cm, "def cm(cls, x):\n    return (cls.__name__, x * 100)\n").id,
        manager.patch(app.Service.sm, "return x * 100").id,
        manager.patch(app.coro, "async def coro(x):\n    return x * 100\n").id,
        manager.patch(app.decorated, "def decorated(x):\n    return x * 100\n").id,
    ]
    assert app.plain(2) == user.plain(2) == callbacks[0](2) == 200
    assert partial() == 1000
    assert bound(2) == service.method(2) == user.Service().method(2) == 200
    assert app.Service.cm(2) == service.cm(2) == ("Service", 200)
    assert app.Service.sm(2) == service.sm(2) == 200
    assert asyncio.run(app.coro(2)) == 200
    assert app.decorated(2) == user.decorated(2) == ("wrapped", 200)

    for patch_id in reversed(ids):
        manager.rollback(patch_id)
    assert app.plain.__code__ is originals["plain"]
    assert app.Service.method.__code__ is originals["method"]
    assert app.Service.__dict__["cm"].__func__.__code__ is originals["cm"]
    assert app.Service.__dict__["sm"].__func__.__code__ is originals["sm"]
    assert app.coro.__code__ is originals["coro"]
    assert app.decorated.__wrapped__.__code__ is originals["decorated"]
    assert (user.plain(2), partial(), bound(2), app.Service.sm(2), app.decorated(2)) == (3, 11, 3, 3, ("wrapped", 3))
    assert [r.status for r in manager.patches()] == ["rolled back"] * 6


def test_swap_keeps_closures_super_private_names_and_unchanged_defaults(app, manager):
    app.bump()
    manager.patch(app.bump, "def bump(step=1):\n    nonlocal count\n    count += step * 10\n    return count\n")
    assert app.bump() == 11  # same closure cell: state survives the swap
    manager.patch(app.Service.greet, "def greet(self):\n    return 'patched+' + super().greet()\n")
    manager.patch(app.Service.secret, "def secret(self):\n    return self.__secret * 2\n")
    assert app.Service().greet() == "patched+base"
    assert app.Service().secret() == 14
    cache = app.with_defaults.__defaults__[1]
    manager.patch(app.with_defaults, "def with_defaults(x, scale=3, cache={}):\n    cache[x] = True\n    return x * scale\n")
    assert app.with_defaults(2) == 6  # changed default taken
    assert app.with_defaults.__defaults__[1] is cache  # unchanged default keeps its object
    assert 2 in cache


def test_class_patch_adds_and_replaces_methods_for_existing_instances(app, manager):
    service = app.Service()
    record = manager.patch(
        app.Service,
        """
        class Service:
            def method(self, x):
                return x - 1

            def added(self):
                return "added:" + super().greet()

            @classmethod
            def made(cls):
                return cls.__name__
        """,
    )
    assert (service.method(5), service.added(), app.Service.made()) == (4, "added:base", "Service")
    manager.rollback(record.id)
    assert service.method(5) == 6
    assert not hasattr(service, "added") and not hasattr(app.Service, "made")


@pytest.mark.parametrize(
    ("target", "replacement", "error", "message"),
    [
        ("plain", "def plain(x):\n    return x +\n", PatchCompileError, "does not compile"),
        ("coro", "def coro(x):\n    return x\n", PatchRefused, "is a coroutine"),
        ("bump", None, PatchRefused, "free variables"),
        ("len", "return 1", PatchRefused, "implemented in C"),
    ],
)
def test_refused_patches_change_nothing(app, manager, target, replacement, error, message):
    if replacement is None:  # a closure over different variables
        other = 5

        def replacement(step=1):
            return other

    obj = len if target == "len" else getattr(app, target)
    before = getattr(obj, "__code__", None)
    with pytest.raises(error, match=message):
        manager.patch(obj, replacement)
    assert getattr(obj, "__code__", None) is before
    assert manager.patches() == []
    assert not manager.journal.path.exists()


def test_serving_loop_never_fails_while_patching_and_rolling_back(app, manager):
    failures: list[BaseException] = []
    results: set[int] = set()
    calls = 0
    done = threading.Event()
    plain = app.plain

    def serve() -> None:
        nonlocal calls
        for _ in range(10_000):
            try:
                results.add(plain(1))
            except BaseException as exc:  # counted, reported below
                failures.append(exc)
            calls += 1
        done.set()

    server = threading.Thread(target=serve)
    server.start()
    swaps = 0
    while not done.is_set() or swaps < 4:
        record = manager.patch(app.plain, "def plain(x):\n    return x + 2\n")
        manager.rollback(record.id)
        swaps += 1
    server.join(timeout=60)
    assert calls == 10_000 and failures == []
    assert results <= {2, 3}
    assert app.plain(1) == 2 and swaps >= 4


def test_health_check_failure_rolls_back(app, manager):
    original = app.plain.__code__
    with pytest.raises(PatchHealthError, match="health check"):
        manager.patch(app.plain, "return -1", health_check=lambda: app.plain(1) > 0)
    assert app.plain.__code__ is original
    with pytest.raises(PatchHealthError):
        manager.patch(app.plain, "return -1", health_check=lambda: 1 / 0)
    assert app.plain(1) == 2
    manager.patch(app.plain, "return x + 5", health_check=lambda: app.plain(1) == 6)
    assert app.plain(1) == 6


def test_concurrent_patches_of_one_target_conflict(app, manager):
    entered, release = threading.Event(), threading.Event()
    outcome: dict[str, Any] = {}

    def slow_health() -> bool:
        entered.set()
        return release.wait(timeout=30)

    def first() -> None:
        outcome["first"] = manager.patch(app.plain, "return 'first'", health_check=slow_health)

    worker = threading.Thread(target=first)
    worker.start()
    assert entered.wait(timeout=30)
    with pytest.raises(PatchConflict, match="being changed"):
        manager.patch(app.plain, "return 'second'")
    release.set()
    worker.join(timeout=30)
    assert app.plain(1) == "first" and outcome["first"].id == 1
    assert len(manager.patches()) == 1


def test_rollback_refuses_when_later_patches_sit_on_top(app, manager):
    first = manager.patch(app.plain, "return 'one'")
    second = manager.patch(app.plain, "return 'two'")
    with pytest.raises(PatchConflict, match="#2"):
        manager.rollback(first.id)
    manager.rollback(second.id)
    assert app.plain(0) == "one"
    manager.rollback(first.id)
    assert app.plain(0) == 1
    with pytest.raises(PatchNotFound, match="no patch #99"):
        manager.rollback(99)


def test_journal_is_private_and_reapplies_after_restart(app, modules, tmp_path, manager):
    kept = manager.patch("patch_app.plain", "return x * 7", user="alice", note="hotfix")
    undone = manager.patch("patch_app.Service.method", "return 0", user="bob")
    manager.rollback(undone.id, user="bob")
    manager.patch("patch_app.Service", "class Service:\n    def extra(self):\n        return 'extra'\n")
    assert stat.S_IMODE(os.stat(manager.journal.path).st_mode) == 0o600
    events = [json.loads(line) for line in manager.journal.path.read_text().splitlines()]
    assert [e["op"] for e in events] == ["apply", "apply", "rollback", "apply"]
    assert events[0]["user"] == "alice" and events[0]["before_source"].startswith("def plain")

    # Simulated restart: fresh module objects, fresh manager on the same state dir.
    restarted = modules("patch_app", APP_SOURCE)
    assert restarted.plain(1) == 2
    again = PatchManager(tmp_path / "state")
    assert [r.status for r in again.patches()] == ["active", "rolled back", "active"]
    report = again.reapply()
    assert report.applied == [kept.id, 3] and not report.failed
    assert restarted.plain(1) == 7 and restarted.Service().method(1) == 2
    assert restarted.Service().extra() == "extra"
    again.rollback(kept.id)
    assert restarted.plain(1) == 2
    assert again.patch("patch_app.plain", "return 0").id == 4  # ids continue


def test_reapply_reports_targets_that_no_longer_resolve(app, modules, tmp_path, manager):
    manager.patch(app.Service.sm, "return 'patched'")
    modules("patch_app", "def plain(x):\n    return x\n")  # Service is gone after the "restart"
    report = PatchManager(tmp_path / "state").reapply()
    assert report.applied == [] and "Service" in report.failed[1]


def test_commit_writes_a_file_that_imports_and_behaves_as_patched(app, modules, manager):
    record = manager.patch(app.decorated, "return x * 3")
    method = manager.patch(app.Service.method, "def renamed(self, x):\n    # patched\n    return x * 4\n")
    path = manager.commit(record.id)
    manager.commit(method.id)
    assert Path(record.backup).read_text() == textwrap.dedent(APP_SOURCE)
    text = path.read_text()
    assert "@deco\ndef decorated(x):\n    return x * 3\n" in text and "# patched" in text
    fresh = modules("patch_app", text)  # re-import from disk, no journal involved
    assert fresh.decorated(2) == ("wrapped", 6)
    assert fresh.Service().method(2) == 8
    assert fresh.plain(1) == 2


def test_dotted_target_that_does_not_resolve_is_a_clear_error(manager):
    with pytest.raises(ResolveError, match="no attribute 'nope'"):
        manager.patch("json.nope", "return 1")
    with pytest.raises(ResolveError, match="no module named"):
        manager.patch("no_such_module_xyz.f", "return 1")


def test_user_comes_from_the_context_variable(app, manager):
    from shellsvc.patching import current_user

    token = current_user.set("carol")
    try:
        record = manager.patch(app.plain, "return 0")
    finally:
        current_user.reset(token)
    assert record.user == "carol"
    assert "carol" in manager.format_list()


def test_patching_while_a_frame_is_running_keeps_the_old_code_for_that_frame(app, manager):
    gen = app.gen(3)
    assert next(gen) == 0
    manager.patch(app.gen, "def gen(n):\n    yield 'new'\n")
    assert list(gen) == [1, 2]
    assert list(app.gen(3)) == ["new"]



def test_admin_repl_names_and_patches_console_command(app, manager):
    from shellsvc.patching import admin_names, patches_command

    names = admin_names(manager)
    record = names["patch"](app.plain, "return 'admin'")
    assert app.plain(1) == "admin"
    assert f"#{record.id} active" in repr(names["patches"]())
    assert "--- before\ndef plain(x):" in patches_command(manager, f"show {record.id}")
    assert patches_command(manager, "rollback 42").startswith("error: no patch #42")
    assert patches_command(manager, f"rollback #{record.id}").startswith(f"rolled back #{record.id}")
    assert app.plain(1) == 2
    assert "rolled back" in patches_command(manager, "list")
    assert patches_command(manager, "frobnicate").startswith("usage:")


def test_bare_body_patch_uses_the_running_signature_when_the_file_changed(app, modules, manager):
    path = modules.root / "patch_app.py"
    path.write_text(path.read_text().replace("def plain(x):\n    return x + 1", "def plain(y, z):\n    return y"))
    import linecache

    linecache.checkcache(str(path))
    manager.patch(app.plain, "return x * 2")  # the running function still takes x
    assert app.plain(4) == 8
