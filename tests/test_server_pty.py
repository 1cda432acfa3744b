"""SSH service: the PTY REPL driven by the real OpenSSH client in a pseudo-terminal (pexpect)."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pexpect
import pytest

from shellsvc.server import Service

from test_server_helpers import authorized_keys, config, events, make_key

pytestmark = pytest.mark.skipif(shutil.which("ssh") is None, reason="needs the OpenSSH client")

PROMPT = ">>> "


class ServiceThread:
    """A Service on its own event loop in a background thread, like a host application."""

    def __init__(self, cfg: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-service-loop", daemon=True)
        self.thread.start()
        self.service = Service(config=cfg)
        #: The ssh clients the test started, killed when the service goes (even on failure).
        self.children: list[pexpect.spawn] = []
        self.call(self.service.start())

    def call(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def on_loop(self, function: Any) -> Any:
        async def run() -> Any:
            return function()
        return self.call(run())

    def wait_until(self, predicate: Any, timeout: float = 15, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = self.on_loop(predicate)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.05)

    def close(self) -> None:
        for child in self.children:
            child.close(force=True)
        try:
            self.call(self.service.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


@pytest.fixture
def users(tmp_path: Path) -> dict[str, Path]:
    """Key pairs for alice, bob (admins) and olga (operator)."""
    return {name: make_key(tmp_path, name)[0] for name in ("alice", "bob", "olga")}


@pytest.fixture
def server(tmp_path: Path, users: dict[str, Path]) -> Iterator[ServiceThread]:
    roles = {"alice": "admin", "bob": "admin", "olga": "operator"}
    table = {}
    for name, key_path in users.items():
        line = (tmp_path / f"{name}.pub").read_text().strip()
        table[name] = {"role": roles[name], "authorized_keys": str(authorized_keys(tmp_path, name, line))}
    running = ServiceThread(config(tmp_path, table))
    try:
        yield running
    finally:
        running.close()


def ssh(server: ServiceThread, tmp_path: Path, key: Path, user: str, *extra: str) -> pexpect.spawn:
    known = tmp_path / "known_hosts"
    known.write_text(server.service.known_hosts_line())
    args = ["-F", "/dev/null", "-tt", "-p", str(server.service.port), "-o", f"UserKnownHostsFile={known}",
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
            "-o", "IdentityAgent=none", "-i", str(key), f"{user}@127.0.0.1", *extra]
    child = pexpect.spawn("ssh", args, encoding="utf-8", timeout=20, dimensions=(24, 100))
    server.children.append(child)
    return child


def finish(child: pexpect.spawn) -> int:
    child.expect(pexpect.EOF)
    child.close()
    return child.exitstatus


def test_repl_keeps_state_and_ctrl_c_stops_a_loop(server: ServiceThread, tmp_path: Path,
                                                   users: dict[str, Path]) -> None:
    child = ssh(server, tmp_path, users["alice"], "alice")
    child.expect(PROMPT)
    child.sendline("x = 41")
    child.expect(PROMPT)
    child.sendline("x + 1")
    child.expect("42")
    child.expect(PROMPT)
    child.sendline("while True: pass")
    server.wait_until(lambda: any(s.busy for s in server.service.engine.sessions()), what="loop running")
    child.sendcontrol("c")
    child.expect("KeyboardInterrupt")
    child.expect(PROMPT)
    child.sendline("x")
    child.expect("41")
    child.expect(PROMPT)
    child.sendcontrol("d")
    assert finish(child) == 0
    service = server.service
    server.wait_until(lambda: events(service, "session_close"), what="session close audited")
    commands = [e["text"] for e in events(service, "command")]
    assert commands == ["x = 41", "x + 1", "while True: pass", "x"]
    statuses = [e["status"] for e in events(service, "command_result")]
    assert statuses == ["ok", "ok", "interrupted", "ok"]
    assert events(service, "session_open")[0]["kind"] == "pty"


def test_two_users_at_once_without_cross_talk(server: ServiceThread, tmp_path: Path,
                                              users: dict[str, Path]) -> None:
    alice = ssh(server, tmp_path, users["alice"], "alice")
    bob = ssh(server, tmp_path, users["bob"], "bob")
    alice.expect(PROMPT)
    bob.expect(PROMPT)
    alice.sendline("who = 'alice'")
    bob.sendline("who = 'bob'")
    alice.expect(PROMPT)
    bob.expect(PROMPT)
    # alice is busy for a while; bob's session answers meanwhile and sees only his own names.
    alice.sendline("import time; time.sleep(3); print('ALICE-' + 'DONE')")
    server.wait_until(lambda: any(s.busy for s in server.service.engine.sessions()), what="alice busy")
    bob.sendline("who.upper() + '-SEES'")
    bob.expect("'BOB-SEES'")
    bob.expect(PROMPT)
    alice.expect("ALICE-DONE")
    alice.expect(PROMPT)
    alice.sendline("who.upper() + '-SEES'")
    alice.expect("'ALICE-SEES'")
    alice.expect(PROMPT)
    bob.sendline("'end'")
    bob.expect("'end'")
    bob.expect(PROMPT)
    assert "ALICE-DONE" not in bob.before and "ALICE" not in bob.before
    alice.sendline("exit()")
    bob.sendline("exit()")
    assert finish(alice) == 0 and finish(bob) == 0


def test_exit_status_and_disconnect_cancels(server: ServiceThread, tmp_path: Path,
                                            users: dict[str, Path]) -> None:
    child = ssh(server, tmp_path, users["alice"], "alice")
    child.expect(PROMPT)
    child.sendline("raise SystemExit(3)")
    assert finish(child) == 3

    child = ssh(server, tmp_path, users["alice"], "alice")
    child.expect(PROMPT)
    child.sendline("spinning = True")
    child.expect(PROMPT)
    server.wait_until(lambda: "spinning" in server.service.engine.namespaces.get("alice"), what="spinning set")
    child.sendline("while spinning: pass")
    server.wait_until(lambda: any(s.busy for s in server.service.engine.sessions()), what="loop running")
    child.close(force=True)  # the client vanishes mid-command
    service = server.service
    server.wait_until(lambda: len(events(service, "session_close")) == 2, what="second session closed")
    assert events(service, "session_close")[1]["reason"] == "disconnected"
    assert events(service, "command_result")[-1]["status"] == "cancelled"
    server.wait_until(lambda: not service.engine.sessions(), what="engine sessions freed")
    assert server.on_loop(lambda: service.engine.namespaces.get("alice")["spinning"]) is True


def test_resize_reaches_the_session(server: ServiceThread, tmp_path: Path, users: dict[str, Path]) -> None:
    child = ssh(server, tmp_path, users["alice"], "alice")
    child.expect(PROMPT)
    sessions = server.service._sessions  # noqa: SLF001 - the terminal size is only visible server-side

    def sizes() -> list[tuple[int, int]]:
        return [s._ctx.terminal_size() for s in sessions if s._ctx is not None]  # noqa: SLF001

    assert server.on_loop(sizes) == [(100, 24)]
    child.setwinsize(30, 60)
    server.wait_until(lambda: sizes() == [(60, 30)], what="new size on the server")
    child.sendline("'still' + ' fine'")
    child.expect("'still fine'")
    child.sendcontrol("d")
    assert finish(child) == 0


def test_operator_gets_the_console_with_completion_and_history(server: ServiceThread, tmp_path: Path,
                                                               users: dict[str, Path]) -> None:
    marker = tmp_path / "operator-ran-python"
    child = ssh(server, tmp_path, users["olga"], "olga")
    child.expect("allow-listed commands only")
    child.expect("olga> ")
    child.sendline(f"open({str(marker)!r}, 'w')")
    child.expect("not Python")
    child.expect("olga> ")
    child.send("sta")
    child.expect("Uptime, plugins and sessions")  # the completion menu, as you type
    child.send("\t")  # Tab takes the completion
    child.expect("tus")
    child.send("\r")
    child.expect("uptime ")
    child.expect("olga> ")
    child.send("\x1b[A")  # Up: the previous line comes back from the history
    child.expect("status")
    child.send("\x15exit\r")  # Ctrl-U clears it
    assert finish(child) == 0
    assert not marker.exists()
    service = server.service
    server.wait_until(lambda: events(service, "session_close"), what="session close audited")
    commands = [(e["text"], e["denied"]) for e in events(service, "console_command")]
    assert commands == [(f"open({str(marker)!r}, 'w')", True), ("status", False)]
    assert not events(service, "command")  # no Python ran
    history = (service.config.server.state_dir / "histories" / "olga.console-history").read_text()
    assert "+status" in history


def test_openssh_exec_and_piped_script(server: ServiceThread, tmp_path: Path, users: dict[str, Path]) -> None:
    import subprocess

    known = tmp_path / "known_hosts"
    known.write_text(server.service.known_hosts_line())
    base = ["ssh", "-F", "/dev/null", "-T", "-p", str(server.service.port), "-o", f"UserKnownHostsFile={known}",
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
            "-o", "IdentityAgent=none", "-i", str(users["alice"]), "alice@127.0.0.1"]
    done = subprocess.run([*base, "print(6 * 7); raise SystemExit(4)"], capture_output=True, text=True, timeout=60)
    assert (done.stdout, done.returncode) == ("42\n", 4)
    failed = subprocess.run([*base, "1/0"], capture_output=True, text=True, timeout=60)
    assert failed.returncode == 1 and failed.stderr.rstrip().endswith("ZeroDivisionError: division by zero")
    piped = subprocess.run(base, input="for i in range(3):\n    print(i)\n", capture_output=True, text=True,
                           timeout=60)
    assert (piped.stdout, piped.returncode) == ("0\n1\n2\n", 0)
