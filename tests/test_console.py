"""The operator console without SSH: typed commands, built-ins, plugins, audit, the prompt loop."""

from __future__ import annotations

import asyncio
import enum
import json
import sys
import threading
import textwrap
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest
from prompt_toolkit.application.current import create_app_session
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output.vt100 import Vt100_Output
from prompt_toolkit.data_structures import Size

import shellsvc
from shellsvc.console import (
    Arg,
    CommandCaller,
    CommandContext,
    CommandDefinitionError,
    CommandError,
    CommandRegistry,
    Console,
    ConsoleCompleter,
    OperatorConsole,
    builtin_registry,
    command,
    run_console,
)
from shellsvc.engine import Engine, SessionIO
from shellsvc.patching import PatchManager
from shellsvc.runtime import Runtime
from shellsvc.server import AuditLog


class Speed(enum.Enum):
    SLOW = "slow"
    FAST = "fast"


@command("deploy")
def deploy(service: str, replicas: Annotated[int, Arg(min=1, max=10, help="how many")] = 1, *,
           speed: Speed = Speed.SLOW, dry_run: bool = False, ratio: float = 0.5,
           target: Path | None = None, zone: Literal["eu", "us"] = "eu") -> str:
    """Deploy a service.

    Longer text for help.
    """
    return f"service={service} replicas={replicas} speed={speed.name} dry_run={dry_run} ratio={ratio} " \
           f"target={target} zone={zone}"


@command("cache clear", roles=("admin",))
async def cache_clear(*regions: str) -> str:
    """Drop cached entries (admins)."""
    return "cleared " + (",".join(regions) or "all")


@command
def fail_expected() -> None:
    """Fails with a message for the operator."""
    raise CommandError("the cache is locked; try again later")


@command
def fail_unexpected() -> None:
    """Fails with an internal error."""
    {}["internal-detail"]


def make_console(*extra: Any, role: str = "operator", audit: list[dict[str, Any]] | None = None,
                 **context: Any) -> Console:
    registry = builtin_registry()
    for func in (deploy, cache_clear, fail_expected, fail_unexpected, *extra):
        registry.add(func)
    records = audit if audit is not None else []
    return Console(registry, CommandContext(user="olga", role=role, session="test", audit=records.append, **context))


# -- typed arguments -----------------------------------------------------------------------------------

async def test_typed_arguments_are_parsed_and_converted() -> None:
    console = make_console()
    result = await console.execute("deploy web 3 --speed FAST --dry-run --ratio=1e-1 --target /srv/x --zone us")
    assert result.exit_status == 0 and not result.denied
    assert result.output == "service=web replicas=3 speed=FAST dry_run=True ratio=0.1 target=/srv/x zone=us\n"
    defaults = await console.execute("deploy 'my service'")
    assert defaults.output == "service=my service replicas=1 speed=SLOW dry_run=False ratio=0.5 target=None zone=eu\n"
    negated = await console.execute("deploy --no-dry-run --speed=fast -- --web")
    assert negated.output.startswith("service=--web replicas=1 speed=FAST dry_run=False")


@pytest.mark.parametrize("line, message", [
    ("deploy", "deploy: missing SERVICE"),
    ("deploy web x", "deploy REPLICAS: expected a whole number, got 'x'"),
    ("deploy web 11", "deploy REPLICAS: 11 is above the maximum 10"),
    ("deploy web 0", "deploy REPLICAS: 0 is below the minimum 1"),
    ("deploy web ١٢", "expected a whole number"),  # Arabic-Indic digits: int() would accept them
    ("deploy web --speed warp", "'warp' is not one of slow, fast"),
    ("deploy web --ratio nan", "expected a number"),
    ("deploy web --ratio 1e999", "out of range"),
    ("deploy web --zone asia", "'asia' is not one of: eu, us"),
    ("deploy web --speeed fast", "unknown option '--speeed'"),
    ("deploy web --speed", "option --speed needs a value"),
    ("deploy web --dry-run --dry-run", "given twice"),
    ("deploy web --no-dry-run=yes", "takes no value"),
    ("deploy web 1 2", "too many arguments (2 given, at most 2 expected)"[:20]),
])
async def test_bad_arguments_get_one_line_errors(line: str, message: str) -> None:
    audit: list[dict[str, Any]] = []
    console = make_console(audit=audit)
    result = await console.execute(line)
    assert result.denied and result.exit_status == 2 and result.output == ""
    assert message in result.error and result.error.count("\n") == 1 and "Traceback" not in result.error
    assert audit[-1]["denied"] is True and audit[-1]["command"] == "deploy" and audit[-1]["text"] == line


async def test_did_you_mean_for_commands_subcommands_and_options() -> None:
    console = make_console()
    assert "did you mean 'status'?" in (await console.execute("stauts")).error
    assert (await console.execute("stauts")).exit_status == 127
    assert "did you mean 'reload'?" in (await console.execute("plugins relaod x")).error
    assert "did you mean '--speed'?" in (await console.execute("deploy web --sped fast")).error
    missing = await console.execute("plugins")
    assert missing.exit_status == 2 and "one of: list, reload, start, stop, unload" in missing.error


async def test_roles_decide_what_runs_and_what_is_listed() -> None:
    audit: list[dict[str, Any]] = []
    operator = make_console(audit=audit)
    forbidden = await operator.execute("cache clear eu")
    assert forbidden.denied and forbidden.exit_status == 126
    assert forbidden.error == "error: cache clear: not permitted for role operator (ask an admin)\n"
    assert audit[-1] == {"event": "console_command", "user": "olga", "role": "operator", "session": "test",
                         "text": "cache clear eu", "command": "cache clear", "denied": True,
                         "reason": "forbidden", "message": "cache clear: not permitted for role operator"}
    assert (await operator.execute("audit tail 3")).exit_status == 126
    listing = (await operator.execute("help")).output
    assert "deploy SERVICE" in listing and "cache" not in listing and "audit" not in listing
    admin = make_console(role="admin")
    assert (await admin.execute("cache clear eu us")).output == "cleared eu,us\n"
    assert "cache clear [REGIONS...]" in (await admin.execute("help")).output


async def test_help_shows_usage_description_and_choices() -> None:
    console = make_console()
    text = (await console.execute("help deploy")).output
    assert text.startswith("usage: deploy SERVICE [REPLICAS] [--speed SPEED] [--dry-run]")
    assert "Deploy a service." in text and "Longer text for help." in text
    assert "how many" in text and "one of: slow, fast" in text and "one of: eu, us" in text
    assert "plugins reload NAME [--force]" in (await console.execute("help plugins")).output
    unknown = await console.execute("help deplyo")
    assert unknown.exit_status == 127 and unknown.denied and "did you mean 'deploy'?" in unknown.error


async def test_command_failures_are_one_line_and_audited() -> None:
    audit: list[dict[str, Any]] = []
    console = make_console(audit=audit)
    expected = await console.execute("fail-expected")
    assert (expected.exit_status, expected.denied) == (1, False)
    assert expected.error == "error: fail-expected: the cache is locked; try again later\n"
    unexpected = await console.execute("fail-unexpected")
    assert unexpected.exit_status == 1 and unexpected.error == "error: fail-unexpected failed: KeyError: 'internal-detail'\n"
    assert [(r["event"], r.get("status")) for r in audit] == [
        ("console_command", None), ("console_result", "error"), ("console_command", None), ("console_result", "error")]
    assert audit[0]["denied"] is False and audit[1]["exit_status"] == 1


def test_declaration_errors_name_the_function_and_parameter() -> None:
    with pytest.raises(CommandDefinitionError, match=r"parameter 'items'.*unsupported type"):
        @command
        def bad_type(items: list[int]) -> None: ...
    with pytest.raises(CommandDefinitionError, match="command name 'Bad_Name'"):
        @command("Bad_Name")
        def bad_name() -> None: ...
    with pytest.raises(CommandDefinitionError, match=r"\*\*kwargs"):
        @command
        def bad_kwargs(**options: str) -> None: ...
    with pytest.raises(CommandDefinitionError, match="unions other than"):
        @command
        def bad_union(value: int | str) -> None: ...
    with pytest.raises(CommandDefinitionError, match="no role may run it"):
        @command(roles=())
        def nobody() -> None: ...
    registry = CommandRegistry([deploy])
    with pytest.raises(CommandDefinitionError, match="already registered"):
        registry.add(deploy)
    with pytest.raises(CommandDefinitionError, match="'deploy' is already a command, not a group"):
        @command("deploy now")
        def deploy_now() -> None: ...
        registry.add(deploy_now)


async def test_blocking_commands_run_in_a_thread_and_timeouts_apply() -> None:
    release = threading.Event()
    seen: list[str] = []

    @command(blocking=True)
    def wait_for_release() -> str:
        """Blocks its thread until released."""
        seen.append(threading.current_thread().name)
        release.wait(10)
        return "released"

    @command
    async def forever() -> None:
        """Never finishes."""
        await asyncio.Event().wait()

    console = make_console(wait_for_release, forever)
    task = asyncio.ensure_future(console.execute("wait-for-release"))
    while not seen:  # the loop keeps running while the command blocks its worker thread
        await asyncio.sleep(0.01)
    assert seen[0] != threading.current_thread().name and not task.done()
    release.set()
    assert (await task).output == "released\n"
    console.timeout = 0.05
    timed_out = await console.execute("forever")
    assert timed_out.exit_status == 124 and "timed out" in timed_out.error


# -- built-ins against real parts ------------------------------------------------------------------------

PLUGIN = '''
from shellsvc import Plugin, command

class Counter(Plugin):
    """Counts things."""
    name = "counter"
    version = "{version}"

    def __init__(self):
        self.value = 0

    def bump(self, by=1):
        """Add to the counter."""
        self.value += by
        return f"counter is {{self.value}} (v{version})"

    @command("show")
    def show(self) -> str:
        """Show the counter."""
        return str(self.value)

    commands = [bump, show]
'''


async def test_plugin_commands_and_plugin_builtins(tmp_path: Path) -> None:
    source = tmp_path / "counter.py"
    source.write_text(PLUGIN.format(version="1.0"))
    async with Runtime() as runtime:
        await runtime.load(source)
        console = make_console(runtime=runtime)
        assert (await console.execute("counter bump 5")).output == "counter is 5 (v1.0)\n"
        assert (await console.execute("counter show")).output == "5\n"
        assert "expected a whole number" in (await console.execute("counter bump x")).error
        listing = (await console.execute("plugins list")).output
        assert listing.splitlines()[0].split() == ["NAME", "STATE", "VERSION", "GEN", "LOADED", "SOURCE"]
        assert listing.splitlines()[1].split()[:4] == ["counter", "started", "1.0", "1"]
        assert "counter bump [BY]" in (await console.execute("help")).output
        # plugin methods take per-call patch keywords (decorator=...): never console arguments
        assert (await console.execute("help counter bump")).output.startswith("usage: counter bump [BY]\n")
        assert "unknown option '--decorator'" in (await console.execute("counter bump --decorator=timer")).error
        extra = await console.execute("counter bump 1 patches.trace.tracer")
        assert extra.denied and "too many arguments" in extra.error

        source.write_text(PLUGIN.format(version="2.0"))
        assert (await console.execute("plugins reload counter")).output == "reloaded counter (generation 2, started)\n"
        assert (await console.execute("counter bump")).output == "counter is 1 (v2.0)\n"
        assert (await console.execute("plugins reload counter")).output == \
            "counter: unchanged, not reloaded (use --force to reload anyway)\n"
        assert (await console.execute("plugins reload counter --force")).output == \
            "reloaded counter (generation 3, started)\n"  # a fresh instance: this plugin migrates nothing
        refused = await console.execute(f"plugins reload {source}")  # paths are not plugin names
        assert refused.denied and "is not one of: counter" in refused.error
        assert (await console.execute("plugins stop counter")).output == "counter: stopped\n"
        assert (await console.execute("counter show")).exit_status == 127  # stopped plugins offer nothing
        assert (await console.execute("plugins start counter")).output == "counter: started\n"
        source.write_text("this is not python (")
        broken = await console.execute("plugins reload counter")
        assert broken.exit_status == 1 and "SyntaxError" in broken.error and broken.error.count("\n") == 1
        assert (await console.execute("counter show")).output == "0\n"  # the old version keeps serving
        assert (await console.execute("plugins unload counter")).output == "unloaded counter\n"
        assert (await console.execute("plugins list")).output == "no plugins loaded\n"


async def test_status_sessions_tasks_where_and_threads(tmp_path: Path) -> None:
    engine = Engine()
    handler = OperatorConsole()
    python_session = engine.open_session("alice", SessionIO(write_out=lambda s: None, write_err=lambda s: None))
    try:
        console = handler.console("olga", "operator", session="olga/1", engine=engine)
        with handler.board.opened("olga", "operator", "olga/1", "pty", "127.0.0.1"):
            status = (await console.execute("status")).output
            assert status.startswith("uptime ") and "sessions   2 (1 python, 1 console)" in status
            sessions = (await console.execute("sessions")).output.splitlines()
            assert sessions[1].split()[:3] == ["alice", "python", python_session.label]
            assert sessions[2].split()[:3] == ["olga", "console/pty", "olga/1"]

        async def parked() -> None:
            await asyncio.Event().wait()

        task = asyncio.create_task(parked(), name="parked-task")
        await asyncio.sleep(0)
        try:
            tasks = (await console.execute("tasks")).output
            assert any(line.split()[:3] == ["parked-task", "pending", "test_status_sessions_tasks_where_and_threads.<locals>.parked"]
                       for line in tasks.splitlines())
            where = (await console.execute("where parked-task")).output
            assert "parked-task" in where and "in parked" in where
            assert (await console.execute("where no-such-task")).denied
        finally:
            task.cancel()
        release = threading.Event()

        def parked_thread() -> None:
            release.wait(10)

        worker = threading.Thread(target=parked_thread, name="parked-thread")
        worker.start()
        try:
            threads = (await console.execute("threads")).output
        finally:
            release.set()
            worker.join(10)
        assert "Thread 'MainThread'" in threads and "in threads_command" in threads
        assert "Thread 'parked-thread'" in threads and "in parked_thread" in threads
    finally:
        await engine.aclose()


async def test_audit_tail_for_admins_reads_the_real_log(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    try:
        console = OperatorConsole().console("root", "admin", session="s1", audit=log)
        for _ in range(3):
            await console.execute("status")
        tail = (await console.execute("audit tail 2")).output.splitlines()
        records = [json.loads(line) for line in tail]
        assert [(r["event"], r["command"]) for r in records] == [("console_result", "status"),
                                                                 ("console_command", "audit tail")]
        assert (await console.execute("audit tail 0")).denied
        assert "maximum 1000" in (await console.execute("audit tail 5000")).error
    finally:
        log.close()


async def test_patches_list_and_rollback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = tmp_path / "console_patch_target.py"
    module.write_text("def greet():\n    return 'hello'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import console_patch_target  # type: ignore[import-not-found]

    manager = PatchManager(tmp_path / "state")

    def greet() -> str:
        return "patched"

    record = manager.patch(console_patch_target.greet, greet)
    console = make_console(patches=manager)
    assert console_patch_target.greet() == "patched"
    listing = (await console.execute("patches list")).output
    assert f"#{record.id} active" in listing
    assert (await console.execute(f"patches rollback {record.id}")).output.startswith(f"rolled back #{record.id}")
    assert console_patch_target.greet() == "hello"
    again = await console.execute(f"patches rollback {record.id}")
    assert again.exit_status == 1 and again.error.startswith("error: patches rollback:")
    sys.modules.pop("console_patch_target", None)


async def test_admins_call_the_same_commands_from_python() -> None:
    console = make_console(role="admin")
    caller = CommandCaller(console, asyncio.get_running_loop())
    out = await asyncio.to_thread(caller, "deploy api 2")
    assert out.startswith("service=api replicas=2") and repr(out) == str(out)
    with pytest.raises(CommandError, match="unknown command 'nope'"):
        await asyncio.to_thread(caller, "nope")
    with pytest.raises(RuntimeError, match="deadlock"):
        caller("status")
    assert (await caller.run("cache clear x")) == "cleared x"


def test_public_exports() -> None:
    assert shellsvc.command is command and shellsvc.Console is Console
    assert shellsvc.OperatorConsole is OperatorConsole


# -- the prompt front end ----------------------------------------------------------------------------

def complete(console: Console, text: str) -> list[str]:
    completer = ConsoleCompleter(console)
    return [c.text for c in completer.get_completions(Document(text), CompleteEvent(completion_requested=True))]


async def test_completion_of_commands_options_and_values(tmp_path: Path) -> None:
    source = tmp_path / "counter.py"
    source.write_text(PLUGIN.format(version="1.0"))
    async with Runtime() as runtime:
        await runtime.load(source)
        console = make_console(runtime=runtime)
        assert complete(console, "pl") == ["plugins"]
        assert complete(console, "plugins re") == ["reload"]
        assert complete(console, "plugins reload ") == ["counter"]
        assert complete(console, "deploy web 2 --sp") == ["--speed"]
        assert complete(console, "deploy web --speed ") == ["fast", "slow"]
        assert complete(console, "deploy web --zone u") == ["us"]
        assert complete(console, "help plugins s") == ["start", "stop"]
        assert complete(console, "cache") == []  # admins only
        assert "counter" in complete(console, "")
        assert complete(console, "counter ") == ["bump", "show"]


class _Capture:
    def __init__(self) -> None:
        self.chunks: list[str] = []

    def write(self, data: str) -> int:
        self.chunks.append(data)
        return len(data)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return True

    @property
    def encoding(self) -> str:
        return "utf-8"

    def text(self) -> str:
        return "".join(self.chunks)


async def wait_for_text(capture: _Capture, needle: str, timeout: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while needle not in capture.text():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{needle!r} never appeared in {capture.text()[-500:]!r}")
        await asyncio.sleep(0.01)


async def test_run_console_prompt_loop_with_history(tmp_path: Path) -> None:
    audit: list[dict[str, Any]] = []
    console = make_console(audit=audit)
    capture = _Capture()
    output = Vt100_Output(capture, lambda: Size(rows=24, columns=120), term="xterm", enable_cpr=False)  # type: ignore[arg-type]
    history = tmp_path / "hist" / "olga.history"
    with create_pipe_input() as pipe, create_app_session(input=pipe, output=output):
        task = asyncio.ensure_future(run_console(console, history_file=history))
        await wait_for_text(capture, "olga> ")
        pipe.send_text("deploy web 2\r")
        await wait_for_text(capture, "service=web replicas=2")
        pipe.send_text("__import__('os').system('id')\r")
        await wait_for_text(capture, "not Python")
        pipe.send_text("\x1b[A\x1b[A\r")  # history: up twice recalls "deploy web 2"
        await wait_for_text(capture, "replicas=2", timeout=10)
        pipe.send_text("exit\r")
        status = await asyncio.wait_for(task, 10)
    assert status == 0
    assert history.stat().st_mode & 0o077 == 0
    assert "deploy web 2" in history.read_text()
    commands = [(r["text"], r["denied"]) for r in audit if r["event"] == "console_command"]
    assert commands == [("deploy web 2", False), ("__import__('os').system('id')", True), ("deploy web 2", False)]


async def test_ctrl_c_interrupts_a_running_command_and_ctrl_d_leaves() -> None:
    started = asyncio.Event()

    @command
    async def hang() -> None:
        """Waits forever."""
        started.set()
        await asyncio.Event().wait()

    audit: list[dict[str, Any]] = []
    console = make_console(hang, audit=audit)
    capture = _Capture()
    output = Vt100_Output(capture, lambda: Size(rows=24, columns=120), term="xterm", enable_cpr=False)  # type: ignore[arg-type]
    with create_pipe_input() as pipe, create_app_session(input=pipe, output=output):
        task = asyncio.ensure_future(run_console(console))
        await wait_for_text(capture, "olga> ")
        pipe.send_text("hang\r")
        await asyncio.wait_for(started.wait(), 10)
        pipe.send_text("\x03")
        await wait_for_text(capture, "interrupted")
        pipe.send_text("status\r")
        await wait_for_text(capture, "uptime")
        pipe.send_text("\x04")
        assert await asyncio.wait_for(task, 10) == 0
    assert [r.get("status") for r in audit if r["event"] == "console_result"] == ["cancelled", "ok"]
