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
        """Greet someone."""
        return "hello " + who

    commands = [greet]
'''


def spawn_cli(*args: str) -> pexpect.spawn:
    return pexpect.spawn(sys.executable, ["-m", "shellsvc", *args], encoding="utf-8", timeout=30,
                         env=dict(os.environ), dimensions=(24, 200))


def run_cli(*args: str) -> tuple[int | None, str]:
    """Run ``shellsvc ARGS`` to its end in a pty: (exit status, everything it printed)."""
    child = spawn_cli(*args)
    try:
        child.expect(pexpect.EOF)
        child.close()
    finally:
        child.close(force=True)
    return child.exitstatus, child.before


def stop(child: pexpect.spawn) -> int:
    try:
        child.kill(signal.SIGINT)
        child.expect(pexpect.EOF, timeout=30)
        child.close()
    finally:
        child.close(force=True)  # a no-op once closed; kills a server that did not stop
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


def serve_greeter_config(tmp_path: Path, *, operator: str | None = None) -> Path:
    """A ``shellsvc serve`` config hosting ``plugins/greeter.py`` (v1) for admin alice."""
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "greeter.py").write_text(PLUGIN_V1)
    config = tmp_path / "shellsvc.toml"
    text = (f'[server]\nport = 0\nstate_dir = "state"\nplugins = ["plugins"]\n'
            f'[limits]\nauth_failure_delay = 0.01\n'
            f'[users.alice]\nrole = "admin"\npassword_hash = "{FAST_HASH}"\n')
    if operator:
        text += f'[users.{operator}]\nrole = "operator"\npassword_hash = "{FAST_HASH}"\n'
    config.write_text(text)
    return config


def test_serve_hosts_plugins_and_audits_reloads(tmp_path: Path) -> None:
    config = serve_greeter_config(tmp_path, operator="olga")
    plugins = tmp_path / "plugins"
    child = spawn_cli("serve", "--config", str(config), "--log-level", "WARNING")
    try:
        child.expect(r"listening on 127\.0\.0\.1:(\d+)")
        port = int(child.match.group(1))

        async def call(source: str, user: str = "alice") -> asyncssh.SSHCompletedProcess:
            async with asyncssh.connect("127.0.0.1", port, username=user, password=PASSWORD,
                                        known_hosts=None, client_keys=None, agent_path=None, config=None) as conn:
                return await conn.run(source)

        assert asyncio.run(call("plugins.greeter.greet('ssh')")).stdout == "'hello ssh'\n"
        (plugins / "greeter.py").write_text(PLUGIN_V1.replace('"hello "', '"hi "'))
        log = tmp_path / "state" / "audit.log"
        reloaded = wait_for_event(log, "runtime_reloaded")
        assert reloaded["plugin"] == "greeter"
        assert asyncio.run(call("plugins.greeter.greet('ssh')")).stdout == "'hi ssh'\n"
        # operators get the console, with the plugin's commands
        assert asyncio.run(call("greeter greet ops", user="olga")).stdout == "hi ops\n"
        refused = asyncio.run(call("plugins.greeter.greet('ssh')", user="olga"))
        assert refused.exit_status == 2 and refused.stdout == "" and "not Python" in refused.stderr
    finally:
        status = stop(child)
    assert status == 0
    assert [r["event"] for r in audit(log)][-1] == "service_stop"


def test_serve_reapplies_the_patch_journal_after_a_restart(tmp_path: Path) -> None:
    config = serve_greeter_config(tmp_path)

    async def call(port: int, source: str) -> asyncssh.SSHCompletedProcess:
        async with asyncssh.connect("127.0.0.1", port, username="alice", password=PASSWORD,
                                    known_hosts=None, client_keys=None, agent_path=None, config=None) as conn:
            return await conn.run(source)

    patch = ("patch(plugins.greeter.greet, 'def greet(self, who):\\n    return \"patched \" + who\\n')"
             ".id")
    for run in ("first", "second"):
        child = spawn_cli("serve", "--config", str(config), "--log-level", "WARNING")
        try:
            child.expect(r"listening on 127\.0\.0\.1:(\d+)")
            port = int(child.match.group(1))
            if run == "first":
                assert asyncio.run(call(port, "plugins.greeter.greet('x')")).stdout == "'hello x'\n"
                applied = asyncio.run(call(port, patch))
                assert applied.exit_status == 0, applied.stderr
            # after the restart the journal put the patch back over the freshly loaded plugin
            assert asyncio.run(call(port, "plugins.greeter.greet('x')")).stdout == "'patched x'\n"
        finally:
            assert stop(child) == 0
    reapplied = [r for r in audit(tmp_path / "state" / "audit.log") if r["event"] == "patches_reapplied"]
    assert [r["applied"] for r in reapplied] == [[], [1]]


def test_serve_reports_config_errors_with_file_and_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[users.alice]\nrole = "superuser"\npassword_hash = "x"\n')
    status, output = run_cli("serve", "--config", str(config))
    assert status == 2
    assert f"{config}: users.alice.role: must be one of admin, operator" in output


def test_serve_refuses_an_audit_log_others_can_read_with_a_clear_message(tmp_path: Path) -> None:
    config = tmp_path / "shellsvc.toml"
    config.write_text(f'[server]\nport = 0\nstate_dir = "state"\n'
                      f'[users.alice]\nrole = "admin"\npassword_hash = "{FAST_HASH}"\n')
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / "audit.log").write_text("")
    (state / "audit.log").chmod(0o644)
    status, output = run_cli("serve", "--config", str(config))
    assert status == 2
    assert "audit.log" in output and "chmod 600" in output
    assert "Traceback" not in output


SSH_OPTIONS = " -F /dev/null -o PubkeyAuthentication=no -o IdentityAgent=none"


def login(command: str, password: str, prompt: str) -> pexpect.spawn:
    """Run a printed ssh line in a pty, as a person pasting it would, and log in."""
    ssh = pexpect.spawn(command + SSH_OPTIONS, encoding="utf-8", timeout=30, dimensions=(40, 160))
    try:
        ssh.expect("password:")
        ssh.sendline(password)
        ssh.expect(prompt)
    except BaseException:
        ssh.close(force=True)
        raise
    return ssh


@pytest.mark.skipif(shutil.which("ssh") is None, reason="needs the OpenSSH client")
def test_demo_prints_working_ssh_commands_for_python_and_the_console(tmp_path: Path) -> None:
    demo = spawn_cli("demo", "--port", "0", "--state-dir", str(tmp_path / "state"))
    clients: list[pexpect.spawn] = []
    try:
        demo.expect(r"password  (\S+)")
        password = demo.match.group(1)
        demo.expect(r"  (ssh -o \S+ -p \d+ admin@127\.0\.0\.1)")
        admin_line = demo.match.group(1).strip()
        demo.expect(r"user operator, password (\S+)")
        operator_password = demo.match.group(1)
        demo.expect(r"  (ssh -o \S+ -p \d+ operator@127\.0\.0\.1)")
        operator_line = demo.match.group(1).strip()
        demo.expect("Ctrl-C here stops")

        ssh = login(admin_line, password, ">>> ")
        clients.append(ssh)
        ssh.sendline("counter.increment(41) + 1")
        ssh.expect("42")
        ssh.expect(">>> ")
        ssh.sendline("print(cmd('plugins list'))")  # the console's commands, from Python
        ssh.expect("ticker")
        ssh.expect(">>> ")
        double = "def increment(self, by=1):\\n    self._value += 2 * by\\n    return self._value\\n"
        ssh.sendline(f"record = patch(type(counter).increment, '{double}'); record.id, record.user")
        ssh.expect(r"\(1, 'admin'\)")
        ssh.expect(">>> ")
        ssh.sendline("counter.increment(1)")
        ssh.expect("43")
        ssh.expect(">>> ")
        ssh.sendcontrol("d")
        ssh.expect(pexpect.EOF)
        ssh.close()
        assert ssh.exitstatus == 0

        console = login(operator_line, operator_password, "operator> ")
        clients.append(console)
        console.sendline("patches list")
        console.expect(r"#1 active .* by admin")
        console.sendline("patches rollback 1")
        console.expect("rolled back #1")
        console.sendline("counter increment 1")  # a plugin's command; the patch is gone
        console.expect("44")
        console.sendline("counter.increment(1)")
        console.expect("not Python")
        console.sendcontrol("d")
        console.expect(pexpect.EOF)
        console.close()
    finally:
        for client in clients:
            client.close(force=True)
        status = stop(demo)
    assert status == 0
    log = tmp_path / "state" / "audit.log"
    events = [r["event"] for r in audit(log)]
    assert "auth_success" in events and "command" in events and "console_command" in events
    assert password not in log.read_text() and operator_password not in log.read_text()
    journal = [json.loads(line) for line in (tmp_path / "state" / "patches.jsonl").read_text().splitlines()]
    assert [(e["op"], e["user"]) for e in journal] == [("apply", "admin"), ("rollback", "operator")]


def test_serve_names_a_missing_plugin_directory_and_a_bad_log_level(tmp_path: Path) -> None:
    config = tmp_path / "shellsvc.toml"
    config.write_text(f'[server]\nport = 0\nstate_dir = "state"\nplugins = ["no_such_dir"]\n'
                      f'[users.alice]\nrole = "admin"\npassword_hash = "{FAST_HASH}"\n')
    for args, message in (
        ((), f"shellsvc serve: {config}: server.plugins: {tmp_path / 'no_such_dir'}: no such file or directory"),
        (("--log-level", "verbose"), "argument --log-level: invalid choice: 'VERBOSE'"),
    ):
        status, output = run_cli("serve", "--config", str(config), *args)
        assert status == 2
        assert message in output and "Traceback" not in output
