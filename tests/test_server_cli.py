"""``shellsvc serve`` and ``shellsvc demo`` as real processes, reached with real SSH clients."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import asyncssh
import pexpect
import pytest

from test_server_helpers import FAST_HASH, PASSWORD

PLUGIN_V1 = '''
from shellsvc import Plugin

class Greeter(Plugin):
    name = "greeter"

    def greet(self, who):
        return "hello " + who
'''


def spawn_cli(*args: str) -> pexpect.spawn:
    return pexpect.spawn(sys.executable, ["-m", "shellsvc", *args], encoding="utf-8", timeout=30,
                         env=dict(os.environ), dimensions=(24, 200))


def stop(child: pexpect.spawn) -> int:
    child.kill(signal.SIGINT)
    child.expect(pexpect.EOF, timeout=30)
    child.close()
    return child.exitstatus


def audit(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def wait_for_event(path: Path, name: str, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [r for r in audit(path) if r["event"] == name]
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no {name} event in {path}")


def test_serve_hosts_plugins_and_audits_reloads(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "greeter.py").write_text(PLUGIN_V1)
    config = tmp_path / "shellsvc.toml"
    config.write_text(f'[server]\nport = 0\nstate_dir = "state"\nplugins = ["plugins"]\n'
                      f'[limits]\nauth_failure_delay = 0.01\n'
                      f'[users.alice]\nrole = "admin"\npassword_hash = "{FAST_HASH}"\n')
    child = spawn_cli("serve", "--config", str(config), "--log-level", "WARNING")
    try:
        child.expect(r"listening on 127\.0\.0\.1:(\d+)")
        port = int(child.match.group(1))

        async def call(source: str) -> asyncssh.SSHCompletedProcess:
            async with asyncssh.connect("127.0.0.1", port, username="alice", password=PASSWORD,
                                        known_hosts=None, client_keys=None, agent_path=None, config=None) as conn:
                return await conn.run(source)

        assert asyncio.run(call("plugins.greeter.greet('ssh')")).stdout == "'hello ssh'\n"
        (plugins / "greeter.py").write_text(PLUGIN_V1.replace('"hello "', '"hi "'))
        log = tmp_path / "state" / "audit.log"
        reloaded = wait_for_event(log, "runtime_reloaded")
        assert reloaded["plugin"] == "greeter"
        assert asyncio.run(call("plugins.greeter.greet('ssh')")).stdout == "'hi ssh'\n"
    finally:
        status = stop(child)
    assert status == 0
    assert [r["event"] for r in audit(log)][-1] == "service_stop"


def test_serve_reports_config_errors_with_file_and_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[users.alice]\nrole = "superuser"\npassword_hash = "x"\n')
    child = spawn_cli("serve", "--config", str(config))
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 2
    assert f"{config}: users.alice.role: must be one of admin, operator" in child.before


@pytest.mark.skipif(shutil.which("ssh") is None, reason="needs the OpenSSH client")
def test_demo_prints_a_working_ssh_command(tmp_path: Path) -> None:
    demo = spawn_cli("demo", "--port", "0", "--state-dir", str(tmp_path / "state"))
    try:
        demo.expect(r"password  (\S+)")
        password = demo.match.group(1)
        demo.expect(r"  (ssh -o [^\r\n]*)")
        command = demo.match.group(1).strip()
        demo.expect("Ctrl-C here stops")
        ssh = pexpect.spawn(command + " -F /dev/null -o PubkeyAuthentication=no -o IdentityAgent=none",
                            encoding="utf-8", timeout=30)
        ssh.expect("password:")
        ssh.sendline(password)
        ssh.expect(">>> ")
        ssh.sendline("plugins.counter.increment(41) + 1")
        ssh.expect("42")
        ssh.expect(">>> ")
        ssh.sendcontrol("d")
        ssh.expect(pexpect.EOF)
        ssh.close()
        assert ssh.exitstatus == 0
    finally:
        status = stop(demo)
    assert status == 0
    events = [r["event"] for r in audit(tmp_path / "state" / "audit.log")]
    assert "auth_success" in events and "command" in events
    assert password not in (tmp_path / "state" / "audit.log").read_text()
