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
import time
from collections.abc import Callable
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

    async def amethod(self, x):
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
    user = modules(
        "patch_user",
        "from patch_app import plain, plain as alias, Service, decorated, coro as acall\n"
        "handlers = {'plain': plain}\n",
    )
    service = app.Service()  # an instance that exists before the patches
    bound, bound_cm, bound_sm, bound_async = service.method, service.cm, service.sm, service.amethod
    callbacks = [app.plain]
    partial = functools.partial(app.plain, 10)
    functions = {
        "plain": app.plain,
        "method": app.Service.method,
        "cm": app.Service.__dict__["cm"].__func__,
        "sm": app.Service.__dict__["sm"].__func__,
        "coro": app.coro,
        "amethod": app.Service.amethod,
        "decorated": app.decorated.__wrapped__,
    }
    originals = {name: fn.__code__ for name, fn in functions.items()}

    def observe() -> dict[str, Any]:
        return {
            "module attribute": app.plain(2),
            "from-import": user.plain(2),
            "from-import alias": user.alias(2),
            "stored callback": (callbacks[0](2), user.handlers["plain"](2)),
            "partial": partial(),
            "bound method": bound(2),
            "method on existing instance": service.method(2),
            "method via from-imported class": user.Service().method(2),
            "classmethod": (app.Service.cm(2), bound_cm(2)),
            "staticmethod": (app.Service.sm(2), bound_sm(2)),
            "async function": (asyncio.run(app.coro(2)), asyncio.run(user.acall(2))),
            "async method": asyncio.run(bound_async(2)),
            "decorated (through __wrapped__)": (app.decorated(2), user.decorated(2)),
        }

    before = observe()
    ids = [
        manager.patch(app.plain, "def plain(x):\n    return x * 100\n").id,
        manager.patch(app.Service.method, "def method(self, x):\n    return x * 100\n").id,
        manager.patch(app.Service.cm, "def cm(cls, x):\n    return (cls.__name__, x * 100)\n").id,
        manager.patch(bound_sm, "return x * 100").id,  # staticmethod reached through an instance
        manager.patch(app.coro, "async def coro(x):\n    return x * 100\n").id,
        manager.patch("patch_app.Service.amethod", "return x * 100").id,
        manager.patch(app.decorated, "def decorated(x):\n    return x * 100\n").id,
    ]
    assert observe() == {
        "module attribute": 200,
        "from-import": 200,
        "from-import alias": 200,
        "stored callback": (200, 200),
        "partial": 1000,
        "bound method": 200,
        "method on existing instance": 200,
        "method via from-imported class": 200,
        "classmethod": (("Service", 200), ("Service", 200)),
        "staticmethod": (200, 200),
        "async function": (200, 200),
        "async method": 200,
        "decorated (through __wrapped__)": (("wrapped", 200), ("wrapped", 200)),
    }
    # Identity kept: the same function objects run new code.
    assert app.plain is user.alias is functions["plain"] and app.Service.method is functions["method"]

    for patch_id in reversed(ids):
        manager.rollback(patch_id)
    for name, fn in functions.items():
        assert fn.__code__ is originals[name], name  # the very original code object is back
    assert observe() == before
    assert [r.status for r in manager.patches()] == ["rolled back"] * len(ids)


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
        ("partial", "return 1", PatchRefused, "functools.partial; patch the function it wraps"),
        ("plain", "return helper_typo(x)", PatchRefused, "uses 'helper_typo', which module 'patch_app' does not define"),
        ("with_defaults", "def with_defaults(x, scale=1 / 0):\n    return x\n", PatchRefused, "ZeroDivisionError"),
    ],
)
def test_refused_patches_change_nothing(app, manager, target, replacement, error, message):
    if replacement is None:  # a closure over different variables
        other = 5

        def replacement(step=1):
            return other

    obj = {"len": len, "partial": functools.partial(app.plain, 1)}.get(target) or getattr(app, target)
    before = getattr(obj, "__code__", None)
    with pytest.raises(error, match=message):
        manager.patch(obj, replacement)
    assert getattr(obj, "__code__", None) is before
    assert manager.patches() == []
    assert not manager.journal.path.exists()


@pytest.fixture
def fast_switching():
    """Switch threads every microsecond so the serving loop and the patcher interleave."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(previous)


def serve_while(
    call: Callable[[], Any],
    change: Callable[[], None],
    *,
    calls: int = 10_000,
    until: Callable[[set[Any]], bool] = lambda results: True,
) -> tuple[int, list[BaseException], set[Any], int]:
    """Call ``call`` from a serving thread while ``change`` runs here in a loop.

    The server makes at least ``calls`` calls and goes on until ``change`` ran at least 20
    times and ``until(results)`` holds (proof that the changes really overlapped its calls), for
    at most 60 s. Returns (calls made, failures, distinct results, changes made).
    """
    failures: list[BaseException] = []
    results: set[Any] = set()
    made = changes = 0
    done = threading.Event()
    deadline = time.monotonic() + 60

    def serve() -> None:
        nonlocal made
        try:
            while made < calls or ((changes < 20 or not until(results)) and time.monotonic() < deadline):
                try:
                    results.add(call())
                except BaseException as exc:  # counted and reported by the test
                    failures.append(exc)
                made += 1
        finally:
            done.set()

    server = threading.Thread(target=serve)
    server.start()
    while not done.is_set():
        change()
        changes += 1
    server.join(timeout=60)
    return made, failures, results, changes


def test_serving_loop_never_fails_while_patching_and_rolling_back(app, modules, manager, fast_switching):
    user = modules("patch_user", "from patch_app import plain, Service\n")
    service = user.Service()
    refs = [user.plain, app.plain, service.method]
    index = 0

    def call() -> Any:
        nonlocal index
        index += 1
        return refs[index % 3](1)

    def change() -> None:
        # Alternate a swap that adds a defaulted parameter with one that only changes the body.
        a = manager.patch(app.plain, "def plain(x, extra=1):\n    return x + 1 + extra\n")
        b = manager.patch(app.Service.method, "return x + 2")
        manager.rollback(b.id)
        manager.rollback(a.id)

    made, failures, results, changes = serve_while(call, change, until=lambda results: len(results) == 2)
    assert failures == [] and made >= 10_000 and changes >= 20
    assert results == {2, 3}  # both versions served, nothing else
    assert app.plain.__defaults__ is None and app.plain(1) == 2 and service.method(1) == 2


def test_serving_loop_never_fails_while_scopes_open_and_close_elsewhere(app, fast_switching):
    from shellsvc.patching import scoped_patch

    plain = app.plain
    original = plain.__code__
    served_by_scopes = 0
    calls_while_installed = 0

    def call() -> int:
        nonlocal calls_while_installed
        calls_while_installed += plain.__code__ is not original
        return plain(1)

    def change() -> None:
        nonlocal served_by_scopes
        with scoped_patch(app.plain, lambda x: -x):  # installs the trampoline; uninstalled on exit
            served_by_scopes += plain(1) == -1

    made, failures, results, changes = serve_while(call, change, until=lambda results: calls_while_installed > 0)
    # The serving thread never sees the other thread's scope, installed or not.
    assert failures == [] and made >= 10_000 and results == {2}
    assert served_by_scopes == changes >= 20 and calls_while_installed > 0
    assert plain.__code__ is original and plain(1) == 2


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
    # A class patch and a method patch touching the same method are ordered too.
    method = manager.patch(app.Service.method, "return 'method'")
    whole = manager.patch(app.Service, "class Service:\n    def method(self, x):\n        return 'class'\n")
    with pytest.raises(PatchConflict, match=f"#{whole.id}"):
        manager.rollback(method.id)
    manager.rollback(whole.id)
    assert app.Service().method(1) == "method"
    manager.rollback(method.id)
    assert app.Service().method(1) == 2


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


RESTART_DRIVER = """
import json, sys
sys.path.insert(0, sys.argv[1])
from shellsvc.patching import PatchManager
import restart_app

step, state = sys.argv[3], sys.argv[2]
out = {"plain": restart_app.plain(1), "has_extra": hasattr(restart_app.Service, "extra")}
if step == "patch":
    manager = PatchManager(state)
    out["ids"] = [
        manager.patch("restart_app.plain", "return x * 7", user="alice").id,
        manager.patch("restart_app.Service", "class Service:\\n    def extra(self):\\n        return 'extra'\\n").id,
    ]
elif step == "reapply":
    manager = PatchManager(state)
    report = manager.reapply()
    out["applied"], out["skipped"] = report.applied, sorted(report.skipped)
    out["after"] = [restart_app.plain(1), hasattr(restart_app.Service, "extra")]
    if report.applied:
        out["files"] = [str(manager.commit(pid, user="bob")) for pid in report.applied]
print(json.dumps(out))
"""


def test_journal_reapplies_and_commit_survives_real_restarts(tmp_path):
    """Separate interpreters: patch, restart + re-apply + commit, restart without the journal."""
    import subprocess

    src = tmp_path / "src"
    src.mkdir()
    app_file = src / "restart_app.py"
    app_file.write_text("def plain(x):\n    return x + 1\n\n\nclass Service:\n    def method(self):\n        return 1\n")
    original = app_file.read_text()
    driver = tmp_path / "driver.py"
    driver.write_text(RESTART_DRIVER)

    def run(step: str, state: Path) -> dict[str, Any]:
        done = subprocess.run(
            [sys.executable, str(driver), str(src), str(state), step], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    state = tmp_path / "state"
    assert run("patch", state) == {"plain": 2, "has_extra": False, "ids": [1, 2]}
    journal = [json.loads(line) for line in (state / "patches.jsonl").read_text().splitlines()]
    assert [(e["op"], e["id"], e["user"]) for e in journal][0] == ("apply", 1, "alice")

    restarted = run("reapply", state)  # a new process: the code starts unpatched, the journal re-applies it
    assert restarted["plain"] == 2 and not restarted["has_extra"]
    assert restarted["applied"] == [1, 2] and restarted["after"] == [7, True]
    assert restarted["files"] == [str(app_file)] * 2
    backups = sorted(src.glob("restart_app.py.patch*.bak"))
    assert [b.name for b in backups] == ["restart_app.py.patch1.bak", "restart_app.py.patch2.bak"]
    assert backups[0].read_text() == original

    # Committed: a fresh process without any journal imports the patched file.
    assert run("plain", tmp_path / "empty-state") == {"plain": 7, "has_extra": True}
    # The journal knows the patches are in the file now: nothing is applied twice.
    again = run("reapply", state)
    assert again["applied"] == [] and again["skipped"] == [1, 2] and again["after"] == [7, True]


def test_patches_of_a_reloaded_module_are_superseded_not_reapplied(app, modules, tmp_path, manager):
    other = modules("patch_app_other", "def f():\n    return 1\n")
    manager.patch("patch_app.plain", "return x * 7")
    manager.patch(other.f, "return 'patched'")  # another module: untouched
    reloaded = modules("patch_app", APP_SOURCE.replace("return x + 1\n", "return x + 2\n", 1))  # edited, reloaded
    assert manager.supersede("patch_app") == [1]
    assert reloaded.plain(1) == 3 and [r.status for r in manager.patches()] == ["superseded", "active"]
    again = PatchManager(tmp_path / "state")  # restart: the edited file wins, the old patch stays retired
    assert [r.status for r in again.patches()] == ["superseded", "active"]
    assert again.reapply().applied == [2]
    manager.rollback(2)
    assert other.f() == 1


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


def test_dotted_target_that_does_not_resolve_is_a_clear_error(modules, manager):
    with pytest.raises(ResolveError, match="no attribute 'nope'"):
        manager.patch("json.nope", "return 1")
    with pytest.raises(ResolveError, match="no module named"):
        manager.patch("no_such_module_xyz.f", "return 1")
    # A module that exists but fails to import is reported as such, never as "not found".
    (modules.root / "broken_dep_app.py").write_text("import no_such_dependency_xyz\n\ndef f():\n    return 1\n")
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_xyz"):
        manager.patch("broken_dep_app.f", "return 2")
    sys.modules.pop("broken_dep_app", None)
    assert manager.patches() == []


def test_function_replacement_needing_its_own_globals_is_refused(app, manager):
    namespace: dict[str, Any] = {"__name__": "admin_repl"}
    exec("def helper(x):\n    return -x\n\ndef fixed(x):\n    return helper(x)\n", namespace)
    with pytest.raises(PatchRefused, match=r"uses 'helper'.*exist where the replacement was defined, admin_repl"):
        manager.patch(app.plain, namespace["fixed"])
    assert app.plain(1) == 2
    app.helper = namespace["helper"]  # defined in the target module first: now it may be used
    try:
        manager.patch(app.plain, namespace["fixed"])
        assert app.plain(1) == -1
    finally:
        del app.helper


def test_commit_refuses_a_patch_that_is_not_the_running_code(app, manager):
    first = manager.patch(app.plain, "return 'one'")
    manager.patch(app.plain, "return 'two'")
    file_before = Path(app.__file__).read_text()
    with pytest.raises(PatchConflict, match="later patches on top.*#2"):
        manager.commit(first.id)
    assert Path(app.__file__).read_text() == file_before


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



def test_admin_repl_names_and_patches_console_command(app, modules, manager):
    from shellsvc.patching import admin_names, patches_command

    names = admin_names(manager, user="dave")
    assert {"patch", "rollback", "patches", "commit_patch"} <= names.keys()
    record = names["patch"](app.plain, "return 'admin'")
    assert app.plain(1) == "admin" and record.user == "dave"
    assert repr(record).startswith(f"<patch #{record.id} active") and "by dave" in repr(names["patches"]())
    assert "--- before\ndef plain(x):" in patches_command(manager, f"show {record.id}")
    assert patches_command(manager, "rollback 42").startswith("error: no patch #42")
    assert patches_command(manager, f"rollback #{record.id}", user="erin").startswith(f"rolled back #{record.id}")
    assert app.plain(1) == 2 and record.history[-1]["user"] == "erin"
    assert "rolled back" in patches_command(manager, "list")
    assert patches_command(manager, "frobnicate").startswith("usage:")
    assert patches_command(manager, "rollback 'unclosed").startswith("error: cannot parse")

    kept = names["patch"](app.Service.method, "return x * 9")
    assert names["commit_patch"](kept.id) == Path(app.__file__)
    assert patches_command(manager, f"commit {record.id}").startswith(f"error: patch #{record.id} is rolled back")
    assert modules("patch_app", Path(app.__file__).read_text()).Service().method(2) == 18
    events = [json.loads(line) for line in manager.journal.path.read_text().splitlines()]
    assert [(e["op"], e["user"]) for e in events] == [("apply", "dave"), ("rollback", "erin"), ("apply", "dave"), ("commit", "dave")]


def test_bare_body_patch_uses_the_running_signature_when_the_file_changed(app, modules, manager):
    path = modules.root / "patch_app.py"
    path.write_text(path.read_text().replace("def plain(x):\n    return x + 1", "def plain(y, z):\n    return y"))
    import linecache

    linecache.checkcache(str(path))
    manager.patch(app.plain, "return x * 2")  # the running function still takes x
    assert app.plain(4) == 8


def test_subscribers_hear_of_every_change_from_every_path(app, modules, tmp_path, manager):
    """One event per change - REPL names, console command, health check, commit, supersede, re-apply."""
    from shellsvc.patching import PatchEvent, admin_names, patches_command

    heard: list[PatchEvent] = []
    threads: set[str] = set()

    def listen(event: PatchEvent) -> None:
        heard.append(event)
        threads.add(threading.current_thread().name)

    def broken(event: PatchEvent) -> None:
        raise RuntimeError("a subscriber's bug")

    subscription = manager.subscribe(listen)
    manager.subscribe(broken)  # logged, never raised to whoever patched, never stops the others
    names = admin_names(manager, user="dave")
    first = names["patch"](app.plain, "return x * 3", note="triple")
    with pytest.raises(PatchHealthError):
        manager.patch(app.Service.method, "return -1", user="erin", health_check=lambda: False)
    assert patches_command(manager, f"rollback {first.id}", user="erin").startswith("rolled back")
    worker = threading.Thread(target=manager.patch, args=(app.plain, "return x * 4"), kwargs={"user": "fay"},
                              name="patcher")
    worker.start()
    worker.join(timeout=30)
    kept = manager.patch(app.Service.method, "return x * 9", user="gil")
    manager.commit(kept.id, user="gil")
    assert [(e.kind, e.ids, e.targets, e.user) for e in heard] == [
        ("applied", (1,), ("patch_app.plain",), "dave"),
        ("health_check_failed", (2,), ("patch_app.Service.method",), "erin"),
        ("rolled_back", (1,), ("patch_app.plain",), "erin"),
        ("applied", (3,), ("patch_app.plain",), "fay"),
        ("applied", (4,), ("patch_app.Service.method",), "gil"),
        ("committed", (4,), ("patch_app.Service.method",), "gil"),
    ]
    assert heard[0].note == "triple" and "returned False" in (heard[1].reason or "")
    assert heard[-1].committed_to == app.__file__ and "patcher" in threads  # on the thread that patched
    assert heard[0].to_dict()["text"] == str(heard[0]) == "applied #1 (patch_app.plain) by dave"

    heard.clear()
    assert manager.supersede("patch_app", reason="plugin reloaded") == [3, 4]
    assert [(e.kind, e.ids, e.reason) for e in heard] == [("superseded", (3, 4), "plugin reloaded")]
    subscription.close()
    subscription.close()  # idempotent
    manager.patch(app.plain, "return 0")
    assert len(heard) == 1


def test_reapply_waits_for_unimported_modules_and_never_covers_edited_code(app, modules, tmp_path, manager):
    later = modules("patch_app_later", "def f():\n    return 1\n")
    manager.patch(app.plain, "return x * 7", user="alice")
    manager.patch(later.f, "return 'patched'", user="alice")
    manager.patch(app.Service.method, "return 0", user="bob")

    # Restart: patch_app_later is not imported yet, and Service.method was edited (a deploy).
    sys.modules.pop("patch_app_later")
    edited = APP_SOURCE.replace("    def method(self, x):\n        return x + 1", "    def method(self, x):\n        return x + 100")
    restarted = modules("patch_app", edited)
    again = PatchManager(tmp_path / "state")
    heard: list[Any] = []
    again.subscribe(heard.append)
    report = again.reapply()
    assert report.applied == [1] and list(report.skipped) == [2] and list(report.superseded) == [3]
    assert "not imported yet" in report.skipped[2] and "changed since" in report.superseded[3]
    assert restarted.plain(1) == 7 and restarted.Service().method(1) == 101  # the deploy's code stays
    assert [(e.kind, e.ids) for e in heard] == [("reapplied", (1,)), ("superseded", (3,))]
    assert heard[0].user == "alice"

    imported = importlib.import_module("patch_app_later")  # the application imports it later
    assert imported.f() == 1
    assert again.reapply().applied == [2] and imported.f() == "patched"  # nothing applied twice
    assert [r.status for r in PatchManager(tmp_path / "state").patches()] == ["active", "active", "superseded"]
    assert PatchManager(tmp_path / "state").reapply(import_modules=True).applied == [1, 2]


def test_interrupted_health_check_leaves_nothing_applied(app, manager):
    original = app.plain.__code__

    def interrupted() -> bool:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        manager.patch(app.plain, "return -1", health_check=interrupted)
    assert app.plain.__code__ is original and manager.patches() == []


def test_bytecode_scan_finds_the_same_globals_as_dis(app):
    """check_globals reads raw bytecode for speed; it must agree with the dis module."""
    import dis

    scan = importlib.import_module("shellsvc.patching.hotswap")._global_names  # the package's hotswap is the function

    def by_dis(code: Any) -> tuple[set[str], set[str]]:
        loads = {i.argval for i in dis.get_instructions(code) if i.opname in ("LOAD_GLOBAL", "LOAD_NAME")}
        stores = {i.argval for i in dis.get_instructions(code) if i.opname in ("STORE_GLOBAL", "STORE_NAME")}
        for const in code.co_consts:
            if hasattr(const, "co_code"):
                inner = by_dis(const)
                loads |= inner[0]
                stores |= inner[1]
        return loads, stores

    big = "def big(x):\n    global g\n" + "".join(f"    v{i} = name{i} + {i}.5\n" for i in range(300)) + "    g = len\n"
    namespace: dict[str, Any] = {}
    exec(big, namespace)  # > 256 names and constants: EXTENDED_ARG
    codes = [namespace["big"].__code__, app.plain.__code__, app.Service.greet.__code__, app.make_counter.__code__,
             importlib.import_module("json.decoder").JSONDecoder.raw_decode.__code__, check_code()]
    for code in codes:
        loads, stores = scan(code)
        assert (set(loads), set(stores)) == by_dis(code), code.co_name
    assert "name299" in scan(namespace["big"].__code__)[0] and "g" in scan(namespace["big"].__code__)[1]


def check_code() -> Any:
    return compile("import os\nx = os.path.join(y, z)\ndef f():\n    return [w for w in x]\n", "<m>", "exec")
