"""Role separation over real SSH: an operator reaches the console, never Python.

The service runs with its default wiring (the operator role is the console); the client
is asyncssh on 127.0.0.1, port 0. Every session type is tried - PTY, exec, a script on
stdin, and subsystems: each subsystem is either refused, or (the ``shellsvc`` protocol)
answers an operator with console commands only; neither path may evaluate anything.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from shellsvc.protocol import SUBSYSTEM, encode
from shellsvc.runtime import Runtime

from test_console_helpers import watching
from test_server_helpers import FAST_HASH, PASSWORD, config, connect, events, running

USERS = {"alice": {"role": "admin", "password_hash": FAST_HASH},
         "olga": {"role": "operator", "password_hash": FAST_HASH}}

PLUGIN = '''
from shellsvc import Plugin

class Ticker(Plugin):
    """Ticks."""
    name = "ticker"
'''


def python_attempts(marker: Path) -> list[str]:
    m = str(marker)
    return [
        f"open({m!r}, 'w').write('x')",
        f"__import__('os').system('touch {m}')",
        f"import os; os.system('touch {m}')",
        "exec(input())",
        "1+1",
        "help.__globals__",
        "python3",
        "/bin/sh -c id",
        "plugins reload ../../tmp/evil",
        "status\nimport os",
    ]


async def read_until(process: Any, needle: str, timeout: float = 20) -> str:
    """Read the PTY's output until ``needle`` appears (no fixed sleeps)."""
    seen = ""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while needle not in seen:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise AssertionError(f"{needle!r} never arrived; got {seen[-600:]!r}")
        try:
            chunk = await asyncio.wait_for(process.stdout.read(4096), remaining)
        except TimeoutError:
            continue
        if not chunk:
            raise AssertionError(f"channel closed before {needle!r}; got {seen[-600:]!r}")
        seen += chunk
    return seen


SUBSYSTEM_NAMES = ("python", "sftp", "shell", "exec", "python3", SUBSYSTEM)


async def read_frames(process: Any, ids: set[int], timeout: float = 20) -> dict[int, list[dict[str, Any]]]:
    """Read protocol frames until every id in ``ids`` has its reply; returns frames by id."""
    by_id: dict[int, list[dict[str, Any]]] = {}
    buffer = ""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not all(any(f["type"] == "reply" for f in by_id.get(i, [])) for i in ids):
        chunk = await asyncio.wait_for(process.stdout.read(65536), max(0.1, deadline - loop.time()))
        if not chunk:
            raise AssertionError(f"subsystem channel closed; got {by_id}")
        buffer += chunk
        *lines, buffer = buffer.split("\n")
        for line in lines:
            if line.strip():
                frame = json.loads(line)
                by_id.setdefault(frame.get("id"), []).append(frame)
    return by_id


async def speak_protocol_as_operator(process: Any, marker: Path) -> None:
    """Every request that could reach Python, in the shellsvc protocol: each refused or harmless."""
    m = str(marker)
    requests = [
        {"type": "eval", "id": 1, "code": f"open({m!r}, 'w').write('x')"},
        {"type": "apply_patch", "id": 2, "name": "trace"},
        {"type": "rollback_patch", "id": 3, "ids": [1]},
        {"type": "patches", "id": 4},
        {"type": "complete", "id": 5, "text": f"__import__('os').system('touch {m}')."},
        {"type": "command", "id": 6, "line": f"__import__('os').system('touch {m}')"},
        {"type": "command", "id": 7, "line": "status"},
        {"type": "eval", "id": 8, "code": "1+1", "role": "admin", "user": "alice"},
    ]
    process.stdin.write(encode({"type": "hello", "version": 1}))
    for request in requests:
        process.stdin.write(encode(request))
    frames = await read_frames(process, {r["id"] for r in requests})
    replies = {i: next(f for f in fs if f["type"] == "reply") for i, fs in frames.items() if i is not None}
    for request_id in (1, 2, 3, 4, 8):
        assert replies[request_id]["ok"] is False and replies[request_id]["error"]["code"] == "forbidden"
    completions = json.dumps(replies[5])
    assert "system" not in completions and "__class__" not in completions
    assert replies[6]["denied"] is True and replies[6]["exit_status"] == 2
    assert replies[7]["ok"] is True and replies[7]["exit_status"] == 0
    assert "uptime" in "".join(f.get("data", "") for f in frames[7] if f["type"] == "output")
    process.stdin.write_eof()
    await asyncio.wait_for(process.wait(), 20)


async def try_subsystems(conn: Any, marker: Path) -> dict[str, str]:
    """What each subsystem request got: refused, or accepted and fed Python (none may run it)."""
    outcomes: dict[str, str] = {}
    for name in SUBSYSTEM_NAMES:
        try:
            process = await conn.create_process(subsystem=name)
        except asyncssh.ChannelOpenError:
            outcomes[name] = "refused"
            continue
        if name == SUBSYSTEM:
            await speak_protocol_as_operator(process, marker)
            outcomes[name] = "console only"
        else:
            process.stdin.write("\n".join(python_attempts(marker)) + "\n")
            process.stdin.write_eof()
            await asyncio.wait_for(process.wait(), 20)
            outcomes[name] = "accepted"
    return outcomes


async def test_operator_cannot_reach_python_by_any_session_type(tmp_path: Path) -> None:
    marker = tmp_path / "operator-ran-python"
    source = tmp_path / "ticker.py"
    source.write_text(PLUGIN)
    async with Runtime() as runtime:
        await runtime.load(source)
        async with running(config(tmp_path, USERS, penalty_exempt=["127.0.0.0/8"]), runtime=runtime) as service:
            with watching(all_threads=True) as evaluated:  # the engine's worker threads too
                async with connect(service, "olga", password=PASSWORD) as conn:
                    # exec requests, with whatever environment the client sends
                    env = {"SHELLSVC_ROLE": "admin", "PYTHONSTARTUP": str(source), "LD_PRELOAD": "/x.so",
                           "PYTHONINSPECT": "1"}
                    ok = await conn.run("plugins list", env=env)
                    assert ok.exit_status == 0 and ok.stdout.splitlines()[1].startswith("ticker")
                    for attempt in python_attempts(marker):
                        result = await conn.run(attempt, env=env)
                        assert result.exit_status in (2, 126, 127), (attempt, result.exit_status, result.stderr)
                        assert result.stdout == "" and result.stderr.startswith("error: ")
                        assert "Traceback" not in result.stderr
                    # a script on stdin (shell request without a PTY): runs line by line, stops at the refusal
                    script = await conn.run(input=f"status\nopen({str(marker)!r}, 'w')\nplugins unload ticker\n")
                    assert script.exit_status == 2 and "uptime" in script.stdout
                    assert runtime.names() == ["ticker"]
                    # subsystems: refused, or the console protocol (never eval)
                    outcomes = await try_subsystems(conn, marker)
                    assert set(outcomes.values()) <= {"refused", "console only"}, outcomes
                    # the interactive console over a PTY
                    process = await conn.create_process(term_type="xterm", term_size=(120, 30), env=env)
                    await read_until(process, "olga> ")
                    process.stdin.write(f"__import__('os').system('touch {marker}')\r")
                    await read_until(process, "not Python")
                    process.stdin.write("exec('1')\r")
                    await read_until(process, "not Python")
                    process.stdin.write("status\r")
                    await read_until(process, "uptime")
                    process.stdin.write("plugins rel")  # completion of a subcommand ...
                    await read_until(process, "Reload a plugin")
                    process.stdin.write("\t ti")  # ... and of an argument value (a plugin name)
                    await read_until(process, "ticker")
                    process.stdin.write("\t\r")
                    await read_until(process, "ticker: unchanged, not reloaded")
                    process.stdin.write("\x04")
                    finished = await asyncio.wait_for(process.wait(), 20)
                    assert finished.exit_status == 0
            assert evaluated == [], f"operator sessions evaluated code: {evaluated}"
            assert not marker.exists()
            # Other user names do not get in with the operator's password; the role comes from the config.
            for username in ("alice", "admin", "root", "olga@admin"):
                with pytest.raises(asyncssh.PermissionDenied):
                    async with connect(service, username, password="wrong " + PASSWORD):
                        pass
            # The admin on the same service still has Python: the separation is by role, not a global switch.
            async with connect(service, "alice", password=PASSWORD) as conn:
                assert (await conn.run("6 * 7")).stdout == "42\n"

        refused = [e for e in events(service, "console_command") if e["denied"]]
        # every Python attempt (exec), the script's second line, the two PTY attempts, and the
        # console line sent through the shellsvc subsystem (when it accepted the operator)
        protocol_lines = 1 if outcomes[SUBSYSTEM] == "console only" else 0
        assert len(refused) == len(python_attempts(marker)) + 1 + 2 + protocol_lines
        assert all(e["user"] == "olga" and e["role"] == "operator" for e in refused)
        python_commands = [e for e in events(service, "command") if e.get("user") == "olga"]
        assert python_commands == []
        opened = [e["kind"] for e in events(service, "session_open") if e["user"] == "olga"]
        assert set(opened) - {"subsystem"} == {"exec", "pty", "script"}
        if outcomes[SUBSYSTEM] == "console only":
            forbidden = [e["request"] for e in events(service, "subsystem_request") if e.get("denied")]
            assert forbidden == ["eval", "apply_patch", "rollback_patch", "patches", "eval"]
        refused_subsystems = [e["subsystem"] for e in events(service, "subsystem_refused")]
        refused_subsystems += [e["kind"] for e in events(service, "upload_refused")]  # sftp: admins only
        assert sorted(refused_subsystems) == sorted(n for n, o in outcomes.items() if o == "refused")


async def test_console_sessions_leave_the_host_loop_handlers_alone(tmp_path: Path) -> None:
    """A prompt_toolkit app replaces the loop's exception handler and SIGINT handler by default;
    the operator console must not: they belong to the host application."""
    import signal

    loop = asyncio.get_running_loop()
    seen: list[dict[str, Any]] = []
    previous_handler = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: seen.append(context))
    host_sigint = signal.getsignal(signal.SIGINT)
    try:
        async with running(config(tmp_path, USERS)) as service:
            async with connect(service, "olga", password=PASSWORD) as conn:
                process = await conn.create_process(term_type="xterm", term_size=(100, 30))
                await read_until(process, "olga> ")
                assert signal.getsignal(signal.SIGINT) is host_sigint
                loop.call_exception_handler({"message": "host app problem"})
                process.stdin.write("status\r")
                screen = await read_until(process, "uptime")
                process.stdin.write("\x04")
                await asyncio.wait_for(process.wait(), 20)
        assert [c["message"] for c in seen] == ["host app problem"]  # the host's handler got it
        assert "Unhandled exception" not in screen and "host app problem" not in screen
    finally:
        loop.set_exception_handler(previous_handler)
