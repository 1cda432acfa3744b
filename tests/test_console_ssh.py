"""Role separation over real SSH: an operator reaches the console, never Python.

The service runs with ``operator_console=OperatorConsole(...)`` (the server's wiring
point); the client is asyncssh on 127.0.0.1, port 0.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from shellsvc.console import OperatorConsole
from shellsvc.runtime import Runtime

from test_server_helpers import FAST_HASH, PASSWORD, config, connect, events, running

USERS = {"alice": {"role": "admin", "password_hash": FAST_HASH},
         "olga": {"role": "operator", "password_hash": FAST_HASH}}

PLUGIN = '''
from shellsvc import Plugin

class Ticker(Plugin):
    """Ticks."""
    name = "ticker"
'''

_EVALUATION_EVENTS = frozenset({"compile", "exec", "os.system", "subprocess.Popen", "os.exec", "os.posix_spawn",
                                "os.spawn", "os.fork"})
_watch = threading.local()


def _hook(event: str, args: tuple[Any, ...]) -> None:
    seen = getattr(_watch, "events", None)
    if event == "exec" and _is_module_import(args[0]):
        return  # importing a module from a file runs its code: that is not evaluating input
    if seen is not None and event in _EVALUATION_EVENTS:
        seen.append((event, repr(args)[:200]))


def _is_module_import(code: Any) -> bool:
    return getattr(code, "co_name", "") == "<module>" and os.path.isfile(getattr(code, "co_filename", ""))


sys.addaudithook(_hook)


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


async def test_operator_cannot_reach_python_by_any_session_type(tmp_path: Path) -> None:
    marker = tmp_path / "operator-ran-python"
    source = tmp_path / "ticker.py"
    source.write_text(PLUGIN)
    async with Runtime() as runtime:
        await runtime.load(source)
        handler = OperatorConsole(runtime=runtime)
        async with running(config(tmp_path, USERS, penalty_exempt=["127.0.0.0/8"]), runtime=runtime,
                           operator_console=handler) as service:
            _watch.events = []
            try:
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
                    # subsystems are refused
                    for name in ("python", "sftp", "shell"):
                        with pytest.raises(asyncssh.ChannelOpenError):
                            await conn.create_process(subsystem=name)
                    # the interactive console over a PTY
                    process = await conn.create_process(term_type="xterm", term_size=(120, 30), env=env)
                    await read_until(process, "olga> ")
                    process.stdin.write(f"__import__('os').system('touch {marker}')\r")
                    await read_until(process, "not Python")
                    process.stdin.write("exec('1')\r")
                    await read_until(process, "not Python")
                    process.stdin.write("status\r")
                    await read_until(process, "uptime")
                    process.stdin.write("\x04")
                    finished = await asyncio.wait_for(process.wait(), 20)
                    assert finished.exit_status == 0
            finally:
                evaluated, _watch.events = _watch.events, None
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
        # every Python attempt (exec), the script's second line and the two PTY attempts
        assert len(refused) == len(python_attempts(marker)) + 1 + 2
        assert all(e["user"] == "olga" and e["role"] == "operator" for e in refused)
        python_commands = [e for e in events(service, "command") if e.get("user") == "olga"]
        assert python_commands == []
        opened = [e["kind"] for e in events(service, "session_open") if e["user"] == "olga"]
        assert sorted(set(opened)) == ["exec", "pty", "script"]
        assert len(events(service, "subsystem_refused")) == 3
