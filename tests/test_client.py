"""``shellsvc-client`` against a real service: interactive in a pty (pexpect), scripting, host keys, upload.

The service runs in the test's event loop on 127.0.0.1, port 0; the client is the
installed console script in a subprocess. pexpect calls run in a thread so the loop
keeps serving while the test waits on the terminal.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncssh
import pexpect
import pytest

from shellsvc.runtime import Runtime
from shellsvc.server import Service

from test_server_helpers import (authorized_keys, communicate, config, events, make_key, public_line, running,
                                 wait_until)
from test_upload import app_module  # noqa: F401 - a fixture: a module of the "application" to patch

_CLIENT = Path(sys.executable).with_name("shellsvc-client")
CLIENT = [str(_CLIENT)] if _CLIENT.exists() else [sys.executable, "-m", "clients"]
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>]|\r")

PLUGIN = '''
from shellsvc import Plugin

class Ticker(Plugin):
    """Ticks."""
    name = "ticker"
    version = "{version}"
'''


class Setup:
    """A running service, its users' keys and a known_hosts file pinning its key."""

    def __init__(self, tmp_path: Path, service: Service, keys: dict[str, Path]) -> None:
        self.tmp_path = tmp_path
        self.service = service
        self.keys = keys
        self.known_hosts = tmp_path / "known_hosts"
        self.known_hosts.write_text(service.known_hosts_line())
        self.home = tmp_path / "home"
        self.home.mkdir(exist_ok=True)
        self.env = {**os.environ, "HOME": str(self.home), "XDG_STATE_HOME": str(self.home / "state"),
                    "PROMPT_TOOLKIT_NO_CPR": "1", "TERM": "xterm", "SSH_AUTH_SOCK": ""}

    def args(self, user: str = "alice", *extra: str, known_hosts: Path | None = None) -> list[str]:
        return ["-p", str(self.service.port), "-i", str(self.keys[user]),
                "--known-hosts", str(known_hosts or self.known_hosts), *extra, f"{user}@127.0.0.1"]

    async def run(self, *args: str, stdin: str = "") -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            *CLIENT, *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=self.env)
        out, err = await communicate(process, stdin.encode(), 60)
        return process.returncode or 0, out.decode(), err.decode()

    async def terminal(self, *args: str) -> Terminal:
        child = await asyncio.to_thread(pexpect.spawn, CLIENT[0], [*CLIENT[1:], *args], env=self.env,
                                        encoding="utf-8", dimensions=(30, 120), timeout=20)
        return Terminal(child)


class Terminal:
    """The client in a pseudo-terminal; matching is done on the text with escapes removed."""

    def __init__(self, child: pexpect.spawn) -> None:
        self.child = child
        self.raw = ""
        self._mark = 0

    @property
    def screen_text(self) -> str:
        return _ANSI.sub("", self.raw)

    async def expect(self, needle: str, timeout: float = 20) -> str:
        """Wait for ``needle`` after the previous match; returns the text up to and including it."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.screen_text
            index = text.find(needle, self._mark)
            if index >= 0:
                seen, self._mark = text[self._mark:index + len(needle)], index + len(needle)
                return seen
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} did not appear; screen tail: {text[-800:]!r}")
            try:
                self.raw += await asyncio.to_thread(self.child.read_nonblocking, 65536, 0.2)
            except pexpect.TIMEOUT:
                continue
            except pexpect.EOF:
                raise AssertionError(f"client exited before {needle!r}; screen tail: {text[-800:]!r}") from None

    def send(self, text: str) -> None:
        self.child.send(text)

    async def exit_status(self, timeout: float = 20) -> int:
        deadline = time.monotonic() + timeout
        while self.child.isalive():
            try:
                self.raw += await asyncio.to_thread(self.child.read_nonblocking, 65536, 0.2)
            except (pexpect.TIMEOUT, pexpect.EOF):
                pass
            if time.monotonic() > deadline:
                raise AssertionError("the client did not exit")
        self.child.close()
        return self.child.exitstatus if self.child.exitstatus is not None else -(self.child.signalstatus or 0)

    def close(self) -> None:
        self.child.close(force=True)  # ends the client and frees its pty


def user_table(tmp_path: Path) -> tuple[dict[str, Any], dict[str, Path]]:
    keys: dict[str, Path] = {}
    table: dict[str, Any] = {}
    for name, role in (("alice", "admin"), ("olga", "operator")):
        path, key = make_key(tmp_path, name)
        keys[name] = path
        table[name] = {"role": role, "authorized_keys": str(authorized_keys(tmp_path, name, public_line(key)))}
    return table, keys


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    table, keys = user_table(tmp_path)
    async with running(config(tmp_path, table), namespace={"answer": 42, "needle_in_haystack": 7}) as service:
        yield Setup(tmp_path, service, keys)


@pytest.fixture
def terminals() -> Iterator[list[Terminal]]:
    opened: list[Terminal] = []
    yield opened
    for terminal in opened:
        terminal.close()


# -- interactive ------------------------------------------------------------------------------------

async def test_pushed_event_prints_above_the_prompt_and_the_typed_line_survives(
        tmp_path: Path, terminals: list[Terminal]) -> None:
    source = tmp_path / "ticker.py"
    source.write_text(PLUGIN.format(version="1"))
    table, keys = user_table(tmp_path)
    async with Runtime() as runtime:
        await runtime.load(source)
        async with running(config(tmp_path, table), runtime=runtime) as service:
            setup = Setup(tmp_path, service, keys)
            term = await setup.terminal(*setup.args("alice"))
            terminals.append(term)
            await term.expect("Ctrl-D leaves.")
            await term.expect(">>> ")
            await wait_until(lambda: any(e.get("request") == "subscribe" for e in events(service, "subsystem_request")),
                             what="the client's subscription")
            term.send("print(12")  # typed, not submitted
            await term.expect("print(12")
            source.write_text(PLUGIN.format(version="2"))
            await runtime.reload("ticker")  # the server pushes the event while the user is idle mid-line
            await term.expect("[runtime] reloaded ticker (generation 2)")
            redrawn = await term.expect("print(12")  # the prompt and the partial line are drawn again below
            assert ">>> " in redrawn
            term.send("34)\r")
            await term.expect("1234")
            await term.expect(">>> ")
            # output of a thread the session started, arriving while idle at the prompt
            term.send("import threading; threading.Timer(0.5, lambda: print('from', 'a thread')).start()\r")
            await term.expect(">>> ")
            term.send("answ")
            await term.expect("from a thread")
            await term.expect("answ")
            term.send("\x04" * 0)  # nothing: the line stays
            term.send("\x15\x04")  # Ctrl-U clears the line, Ctrl-D on the empty line leaves
            assert await term.exit_status() == 0


async def test_tab_completion_is_answered_by_the_server(setup: Setup, terminals: list[Terminal]) -> None:
    term = await setup.terminal(*setup.args("alice"))
    terminals.append(term)
    await term.expect(">>> ")
    term.send("needle_in\t")
    await term.expect("_haystack")  # the completion is inserted (the terminal only redraws the new part)
    term.send(" * 6\r")
    await term.expect("42")  # needle_in_haystack * 6: the line holds the completed name
    term.send("exit()\r")
    assert await term.exit_status() == 0
    completes = [e for e in events(setup.service, "subsystem_request") if e["request"] == "complete"]
    assert completes and completes[0]["user"] == "alice"


async def test_ctrl_c_interrupts_the_remote_command(setup: Setup, terminals: list[Terminal]) -> None:
    term = await setup.terminal(*setup.args("alice"))
    terminals.append(term)
    await term.expect(">>> ")
    term.send("while True: pass\r")
    await wait_until(lambda: any(s.busy for s in setup.service.engine.sessions()), what="the loop to start")
    started = time.monotonic()
    term.send("\x03")
    await term.expect("KeyboardInterrupt")
    await term.expect(">>> ")
    assert time.monotonic() - started < 10
    term.send("6 * 7\r")  # the session is usable afterwards
    await term.expect("42")
    term.send("x = input('name? ')\r")
    await term.expect("input('name? ')")  # the typed line
    await term.expect("name?")  # the prompt the remote input() asked for
    term.send("bob\r")
    await term.expect(">>> ")
    term.send("x.upper()\r")
    await term.expect("'BOB'")
    term.send("raise SystemExit(3)\r")
    assert await term.exit_status() == 3
    statuses = [r["status"] for r in events(setup.service, "command_result")]
    assert statuses[0] == "interrupted"


async def test_operator_interactive_gets_the_console(setup: Setup, terminals: list[Terminal]) -> None:
    term = await setup.terminal(*setup.args("olga"))
    terminals.append(term)
    await term.expect("olga> ")
    term.send("stat\t")
    await term.expect("us")  # completed by the server's console completer
    term.send("\r")
    await term.expect("uptime")
    term.send("answer\r")
    await term.expect("unknown command")
    term.send("exit\r")
    assert await term.exit_status() == 0
    assert not [e for e in events(setup.service, "command") if e["user"] == "olga"]


# -- host keys --------------------------------------------------------------------------------------

async def test_unknown_host_key_is_refused_without_a_terminal(setup: Setup) -> None:
    empty = setup.tmp_path / "empty_known_hosts"
    empty.write_text("")
    status, out, err = await setup.run(*setup.args("alice", "-c", "print('ran')", known_hosts=empty))
    assert status == 255 and out == ""
    assert "is not known" in err and setup.service.host_key_fingerprint in err and "not connecting" in err
    assert empty.read_text() == ""
    assert not events(setup.service, "auth_success")  # refused before authenticating
    missing = setup.tmp_path / "nowhere" / "known_hosts"
    status, _, err = await setup.run(*setup.args("alice", "-c", "1", known_hosts=missing))
    assert status == 255 and "is not known" in err and not missing.exists()


async def test_changed_host_key_is_refused_even_on_a_terminal(setup: Setup, terminals: list[Terminal]) -> None:
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    changed = setup.tmp_path / "changed_known_hosts"
    changed.write_text(f"[127.0.0.1]:{setup.service.port} {other}\n")
    term = await setup.terminal(*setup.args("alice", known_hosts=changed))
    terminals.append(term)
    await term.expect("HOST KEY MISMATCH")
    await term.expect("ssh-keygen -R")
    assert await term.exit_status() == 255
    assert "Trust it" not in term.screen_text
    assert changed.read_text() == f"[127.0.0.1]:{setup.service.port} {other}\n"


async def test_unknown_host_key_on_a_terminal_asks_with_the_fingerprint(setup: Setup, terminals: list[Terminal]) -> None:
    known = setup.tmp_path / "ask_known_hosts"
    term = await setup.terminal(*setup.args("alice", "-c", "print('in')", known_hosts=known))
    terminals.append(term)
    await term.expect(setup.service.host_key_fingerprint)
    await term.expect("(yes/no)?")
    term.send("no\r")
    assert await term.exit_status() == 255
    assert not known.exists()

    term = await setup.terminal(*setup.args("alice", "-c", "print('in')", known_hosts=known))
    terminals.append(term)
    await term.expect("(yes/no)?")
    term.send("yes\r")
    await term.expect("in")
    assert await term.exit_status() == 0
    key = setup.service.host_key.export_public_key().decode().split()[:2]
    assert known.read_text().split() == [f"[127.0.0.1]:{setup.service.port}", *key]
    assert known.stat().st_mode & 0o777 == 0o600
    status, out, _ = await setup.run(*setup.args("alice", "-c", "print('again')", known_hosts=known))
    assert (status, out) == (0, "again\n")


# -- scripting --------------------------------------------------------------------------------------

async def test_scripting_exit_status_and_streams(setup: Setup) -> None:
    assert await setup.run(*setup.args("alice", "-c", "print('out'); answer")) == (0, "out\n42\n", "")
    status, out, err = await setup.run(*setup.args("alice", "-c", "import sys; print('partial'); 1/0"))
    assert (status, out) == (1, "partial\n") and "ZeroDivisionError" in err and "Traceback" in err
    assert (await setup.run(*setup.args("alice", "-c", "raise SystemExit(7)")))[0] == 7
    assert (await setup.run(*setup.args("alice", "-c", "exit()")))[0] == 0
    status, _, err = await setup.run(*setup.args("alice", "-c", "raise SystemExit('bad config')"))
    assert status == 1 and "bad config" in err
    script = setup.tmp_path / "job.py"
    script.write_text("total = sum(range(5))\nprint('total', total)\nraise SystemExit(total)\n")
    assert await setup.run(*setup.args("alice", "-f", str(script))) == (10, "total 10\n", "")
    assert await setup.run(*setup.args("alice"), stdin="print(answer * 2)\n") == (0, "84\n", "")
    assert (await setup.run(*setup.args("alice", "-f", "-"), stdin="import sys; sys.exit(4)\n"))[0] == 4
    # remote input() reads this process's stdin with -c
    assert await setup.run(*setup.args("alice", "-c", "print(input().upper())"), stdin="shout\n") == (0, "SHOUT\n", "")
    # an operator's text is console commands
    status, out, _ = await setup.run(*setup.args("olga", "-c", "status"))
    assert status == 0 and "uptime" in out
    status, out, err = await setup.run(*setup.args("olga", "-c", "import os"))
    assert status != 0 and out == "" and "unknown command" in err
    # a bad key is a connection error (255), like ssh
    _, stranger = make_key(setup.tmp_path, "stranger")
    status, _, err = await setup.run("-p", str(setup.service.port), "-i", str(setup.tmp_path / "stranger"),
                                     "--known-hosts", str(setup.known_hosts), "--batch", "alice@127.0.0.1", "-c", "1")
    assert status == 255 and "authentication failed" in err


async def test_scripting_ctrl_c_interrupts_the_remote_code(setup: Setup, terminals: list[Terminal]) -> None:
    term = await setup.terminal(*setup.args("alice", "-c", "print('spinning', flush=True)\nwhile True: pass"))
    terminals.append(term)
    await term.expect("spinning")
    await wait_until(lambda: any(s.busy for s in setup.service.engine.sessions()), what="the loop to start")
    term.send("\x03")
    await term.expect("KeyboardInterrupt")
    assert await term.exit_status() == 1


# -- upload and apply -------------------------------------------------------------------------------

async def test_upload_and_apply_from_the_client(setup: Setup, app_module: Any) -> None:
    fix = setup.tmp_path / "fix.py"
    fix.write_text(f'"""10% off."""\nPATCHES = {{"{app_module.__name__}.discount": "return total * 0.10"}}\n')
    status, out, err = await setup.run(*setup.args("alice", "--upload", str(fix)))
    assert status == 0 and "uploaded" in out, err
    assert app_module.discount(100) == 5.0  # uploaded, not applied
    status, out, err = await setup.run(*setup.args("alice", "--apply", "fix.py"))  # the name on the server
    assert status == 0 and "applied fix.py" in out and "#1" in out, err
    assert app_module.discount(100) == 10.0
    setup.service.patches.rollback(1)
    fix.write_text(fix.read_text().replace("0.10", "0.20"))
    status, out, err = await setup.run(*setup.args("alice", "--upload", str(fix), "--apply"))
    assert status == 0 and "#2" in out, err
    assert app_module.discount(100) == 20.0
    broken = setup.tmp_path / "broken.py"
    broken.write_text(f'PATCHES = {{"{app_module.__name__}.discount": "return ("}}\n')
    status, out, err = await setup.run(*setup.args("alice", "--apply", str(broken)))  # a local file: uploaded first
    assert status == 1 and "broken.py" in err and "nothing was applied" in err
    assert app_module.discount(100) == 20.0
    status, _, err = await setup.run(*setup.args("olga", "--upload", str(fix)))
    assert status == 1 and "refused" in err


async def test_interactive_client_reports_a_server_that_goes_away(setup: Setup, terminals: list[Terminal]) -> None:
    term = await setup.terminal(*setup.args("alice"))
    terminals.append(term)
    await term.expect(">>> ")
    term.send("half a li")
    await term.expect("half a li")
    await setup.service.stop()  # the app shuts down while the user is at the prompt
    await term.expect("connection to 127.0.0.1")
    assert await term.exit_status() == 255


async def test_mistakes_on_the_command_line_say_what_to_fix(setup: Setup, tmp_path: Path) -> None:
    for args, message in (
        (["-f", str(tmp_path / "missing.py"), "alice@127.0.0.1"], "-f {}: no such file".format(tmp_path / "missing.py")),
        (["-i", str(tmp_path / "nokey"), "-c", "1", "alice@127.0.0.1"],
         "-i {}: no such private key file".format(tmp_path / "nokey")),
    ):
        status, out, err = await setup.run(*args)
        assert status == 2 and message in err and "Traceback" not in err
    # nothing listening on the port: say so, and how to pick the right one
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    status, out, err = await setup.run("--batch", "-p", str(free_port), "-c", "1", "alice@127.0.0.1")
    assert status == 255
    assert f"cannot connect to 127.0.0.1 port {free_port}: connection refused" in err and "-p PORT" in err
