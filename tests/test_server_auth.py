"""SSH service: authentication and sshd-grade limits, over real connections on port 0."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import asyncssh
import pytest

from test_server_helpers import (FAST_HASH, PASSWORD, authorized_keys, communicate, config, connect, events, make_key,
                                 public_line, running, wait_until)


class _PasswordGuesser(asyncssh.SSHClient):
    """Offers a new wrong password every time the server asks again."""

    def __init__(self) -> None:
        self.asked = 0

    def password_auth_requested(self) -> str | None:
        self.asked += 1
        return f"wrong-{self.asked}" if self.asked <= 6 else None


async def test_password_login_and_audit_never_contains_the_password(tmp_path: Path) -> None:
    cfg = config(tmp_path, {"alice": {"role": "admin", "password_hash": FAST_HASH}})
    async with running(cfg) as service:
        async with connect(service, "alice", password=PASSWORD) as conn:
            result = await conn.run("6 * 7")
        assert result.stdout == "42\n"
        with pytest.raises(asyncssh.PermissionDenied):
            async with connect(service, "alice", password=PASSWORD + "x"):
                pass
        success = events(service, "auth_success")
        assert [(e["user"], e["method"], e["role"]) for e in success] == [("alice", "password", "admin")]
        assert success[0]["peer"].startswith("127.0.0.1:")
        failure = events(service, "auth_failure")
        assert [(e["user"], e["method"]) for e in failure] == [("alice", "password")]
    assert PASSWORD not in service.config.server.audit_log_path.read_text()


async def test_three_wrong_passwords_disconnect(tmp_path: Path) -> None:
    cfg = config(tmp_path, {"alice": {"role": "admin", "password_hash": FAST_HASH}})
    async with running(cfg) as service:
        guesser = _PasswordGuesser()
        with pytest.raises((asyncssh.DisconnectError, asyncssh.ConnectionLost)) as caught:
            async with connect(service, "alice", client_factory=lambda: guesser, preferred_auth="password"):
                pass
        assert "Too many authentication failures" in str(caught.value) or guesser.asked <= 4
        await wait_until(lambda: events(service, "disconnect"), what="disconnect audited")
        failures = events(service, "auth_failure")
        assert [e["attempt"] for e in failures] == [1, 2, 3]
        assert len(events(service, "auth_too_many_failures")) == 1
        assert not events(service, "auth_success")


async def test_four_wrong_keys_disconnect_after_three(tmp_path: Path) -> None:
    _, good = make_key(tmp_path, "good")
    wrong = [make_key(tmp_path, f"wrong{i}")[1] for i in range(4)]
    keys = authorized_keys(tmp_path, "alice", public_line(good))
    cfg = config(tmp_path, {"alice": {"role": "admin", "authorized_keys": str(keys)}})
    async with running(cfg) as service:
        with pytest.raises((asyncssh.DisconnectError, asyncssh.ConnectionLost, asyncssh.PermissionDenied)):
            async with connect(service, "alice", client_keys=wrong, preferred_auth="publickey"):
                pass
        await wait_until(lambda: events(service, "disconnect"), what="disconnect audited")
        failures = events(service, "auth_failure")
        assert [e["method"] for e in failures] == ["publickey"] * 3
        assert [e["key_fingerprint"] for e in failures] == [k.get_fingerprint("sha256") for k in wrong[:3]]
        assert events(service, "auth_too_many_failures")
        # The right key still works on a new connection (and its fingerprint is audited).
        async with connect(service, "alice", client_keys=[good]) as conn:
            assert (await conn.run("'ok'")).stdout == "'ok'\n"
        assert events(service, "auth_success")[0]["key_fingerprint"] == good.get_fingerprint("sha256")


@pytest.mark.skipif(shutil.which("ssh") is None, reason="needs the OpenSSH client")
def test_openssh_client_with_four_wrong_keys_is_disconnected(tmp_path: Path) -> None:
    _, good = make_key(tmp_path, "good")
    wrong_paths = [make_key(tmp_path, f"wrong{i}")[0] for i in range(4)]
    keys = authorized_keys(tmp_path, "alice", public_line(good))
    cfg = config(tmp_path, {"alice": {"role": "admin", "authorized_keys": str(keys)}})

    async def scenario() -> tuple[subprocess.CompletedProcess[str], list[dict]]:
        async with running(cfg) as service:
            known = tmp_path / "known_hosts"
            known.write_text(service.known_hosts_line())
            command = ["ssh", "-F", "/dev/null", "-p", str(service.port), "-o", f"UserKnownHostsFile={known}",
                       "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                       "-o", "IdentityAgent=none", "-o", "PreferredAuthentications=publickey"]
            for path in wrong_paths:
                command += ["-i", str(path)]
            command += ["alice@127.0.0.1", "1+1"]
            proc = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE,
                                                        stderr=asyncio.subprocess.PIPE)
            out, err = await communicate(proc, timeout=30)
            await wait_until(lambda: events(service, "disconnect"), what="disconnect audited")
            completed = subprocess.CompletedProcess(command, proc.returncode or 0, out.decode(), err.decode())
            return completed, events(service, "auth_failure")

    completed, failures = asyncio.run(scenario())
    assert completed.returncode == 255
    assert "Too many authentication failures" in completed.stderr
    assert len(failures) == 3


async def test_unknown_user_and_wrong_password_fail_alike(tmp_path: Path) -> None:
    """Same reply, same audit shape, and both padded to at least the configured delay."""
    cfg = config(tmp_path, {"alice": {"role": "admin", "password_hash": FAST_HASH}}, auth_failure_delay=0.2)
    async with running(cfg) as service:
        for user in ("alice", "mallory"):
            started = time.monotonic()
            with pytest.raises(asyncssh.PermissionDenied):
                async with connect(service, user, password="nope", preferred_auth="password"):
                    pass
            assert time.monotonic() - started >= 0.2
        assert [e["user"] for e in events(service, "auth_failure")] == ["alice", "mallory"]


async def test_no_default_credentials(tmp_path: Path) -> None:
    async with running(config(tmp_path, {})) as service:
        for user, password in (("admin", "admin"), ("root", ""), ("shellsvc", "shellsvc")):
            with pytest.raises(asyncssh.PermissionDenied):
                async with connect(service, user, password=password or None, preferred_auth="password,none"):
                    pass


async def test_login_grace_time_drops_idle_unauthenticated_connection(tmp_path: Path) -> None:
    cfg = config(tmp_path, {"alice": {"role": "admin", "password_hash": FAST_HASH}}, login_grace_time=1.0)
    async with running(cfg) as service:
        reader, writer = await asyncio.open_connection("127.0.0.1", service.port)
        banner = await reader.readline()
        assert banner.startswith(b"SSH-2.0-")
        started = time.monotonic()
        try:
            while await asyncio.wait_for(reader.read(4096), 15):
                pass  # the server's key exchange offer; we never answer it
        finally:
            writer.close()
        assert time.monotonic() - started >= 0.5
        await wait_until(lambda: events(service, "login_timeout"), what="login_timeout audited")


async def test_cap_on_unauthenticated_connections(tmp_path: Path) -> None:
    cfg = config(tmp_path, {"alice": {"role": "admin", "password_hash": FAST_HASH}}, max_unauthenticated=2)
    async with running(cfg) as service:
        idle = [await asyncio.open_connection("127.0.0.1", service.port) for _ in range(2)]
        await wait_until(lambda: service.startups.pending == 2, what="two pending connections")
        with pytest.raises((asyncssh.DisconnectError, asyncssh.ConnectionLost, ConnectionError)):
            async with connect(service, "alice", password=PASSWORD):
                pass
        refused = events(service, "connection_refused")
        assert [e["reason"] for e in refused] == ["max_unauthenticated"]
        for _, writer in idle:
            writer.close()
        await wait_until(lambda: service.startups.pending == 0, what="idle connections gone")
        async with connect(service, "alice", password=PASSWORD) as conn:
            assert (await conn.run("1+1")).stdout == "2\n"


async def test_per_source_penalty_after_repeated_failures(tmp_path: Path) -> None:
    cfg = config(tmp_path, {"alice": {"role": "admin", "password_hash": FAST_HASH}},
                 penalty_authfail=30.0, penalty_min=50.0)
    async with running(cfg) as service:
        for _ in range(2):
            with pytest.raises(asyncssh.PermissionDenied):
                async with connect(service, "alice", password="bad", preferred_auth="password"):
                    pass
        await wait_until(lambda: len(events(service, "disconnect")) == 2, what="two failed connections closed")
        # Now even the right password is not tried: the source is refused at connect.
        with pytest.raises((asyncssh.DisconnectError, asyncssh.ConnectionLost, ConnectionError)):
            async with connect(service, "alice", password=PASSWORD):
                pass
        refused = events(service, "connection_refused")
        assert refused and refused[0]["reason"] == "penalty" and refused[0]["retry_after"] > 0
        assert not events(service, "auth_success")


async def test_penalty_exempt_network(tmp_path: Path) -> None:
    cfg = config(tmp_path, {"alice": {"role": "admin", "password_hash": FAST_HASH}},
                 penalty_authfail=30.0, penalty_min=30.0, penalty_exempt=["127.0.0.0/8"])
    async with running(cfg) as service:
        with pytest.raises(asyncssh.PermissionDenied):
            async with connect(service, "alice", password="bad", preferred_auth="password"):
                pass
        async with connect(service, "alice", password=PASSWORD) as conn:
            assert (await conn.run("1+1")).exit_status == 0


async def test_max_sessions_per_user(tmp_path: Path) -> None:
    cfg = config(tmp_path, {"alice": {"role": "admin", "password_hash": FAST_HASH}}, max_sessions_per_user=2)
    async with running(cfg) as service:
        async with connect(service, "alice", password=PASSWORD) as first, \
                connect(service, "alice", password=PASSWORD) as second:
            waiting = [await first.create_process("input()"), await second.create_process("input()")]
            with pytest.raises(asyncssh.ChannelOpenError) as caught:
                await first.create_process("1")
            assert "too many open sessions" in caught.value.reason
            waiting[0].stdin.write("done\n")
            assert (await waiting[0].wait()).exit_status == 0
            await wait_until(lambda: service.session_counter.count("alice") == 1, what="session released")
            assert (await first.run("1+1")).stdout == "2\n"
            waiting[1].stdin.write_eof()
            await waiting[1].wait()
        assert [e["reason"] for e in events(service, "session_refused")] == ["max_sessions_per_user"]


async def test_forwarding_is_refused(tmp_path: Path) -> None:
    cfg = config(tmp_path, {"alice": {"role": "admin", "password_hash": FAST_HASH}})
    async with running(cfg) as service:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        try:
            async with connect(service, "alice", password=PASSWORD) as conn:
                with pytest.raises(asyncssh.ChannelOpenError):
                    await conn.create_connection(asyncssh.SSHTCPSession, "127.0.0.1", listener.getsockname()[1])
                with pytest.raises(asyncssh.ChannelListenError):
                    await conn.forward_remote_port("127.0.0.1", 0, "127.0.0.1", 22)
        finally:
            listener.close()
        kinds = {e["kind"] for e in events(service, "forwarding_refused")}
        assert kinds == {"direct-tcpip", "tcpip-forward"}


@pytest.mark.skipif(shutil.which("ssh") is None or shutil.which("ssh-agent") is None,
                    reason="needs the OpenSSH client and ssh-agent")
def test_openssh_agent_and_x11_forwarding_are_refused(tmp_path: Path) -> None:
    """``ssh -A -X`` with a live agent and a DISPLAY: the session runs, nothing is forwarded."""
    key_path, key = make_key(tmp_path, "alice")
    keys = authorized_keys(tmp_path, "alice", public_line(key))
    cfg = config(tmp_path, {"alice": {"role": "admin", "authorized_keys": str(keys)}})
    agent_socket = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(agent_socket)], stdout=subprocess.DEVNULL)
    seed: dict[str, object] = {}

    async def scenario() -> tuple[subprocess.CompletedProcess[str], list[dict]]:
        async with running(cfg, namespace=seed) as service:
            seed["service"] = service
            known = tmp_path / "known_hosts"
            known.write_text(service.known_hosts_line())
            probe = "[(s._chan.get_agent_path(), s._chan.get_x11_display()) for s in service._sessions]"
            command = ["ssh", "-v", "-F", "/dev/null", "-A", "-X", "-p", str(service.port),
                       "-o", f"UserKnownHostsFile={known}", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                       "-i", str(key_path), "alice@127.0.0.1", probe]
            env = {**os.environ, "SSH_AUTH_SOCK": str(agent_socket), "DISPLAY": "127.0.0.1:97"}
            proc = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE,
                                                        stderr=asyncio.subprocess.PIPE, env=env)
            out, err = await communicate(proc, timeout=30)
            return (subprocess.CompletedProcess(command, proc.returncode or 0, out.decode(), err.decode()),
                    events(service, "auth_success"))

    try:
        deadline = time.monotonic() + 10
        while not agent_socket.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        completed, logins = asyncio.run(scenario())
    finally:
        agent.terminate()
        agent.wait(10)
    assert "Requesting authentication agent forwarding" in completed.stderr
    assert "X11 forwarding request failed" in completed.stderr
    assert (completed.returncode, completed.stdout) == (0, "[(None, None)]\n")
    assert len(logins) == 1


async def test_authorized_keys_from_option(tmp_path: Path) -> None:
    _, key = make_key(tmp_path, "alice")
    keys = authorized_keys(tmp_path, "alice", f'from="10.1.2.3" {public_line(key)}')
    async with running(config(tmp_path, {"alice": {"role": "admin", "authorized_keys": str(keys)}})) as service:
        with pytest.raises(asyncssh.PermissionDenied):
            async with connect(service, "alice", client_keys=[key]):
                pass
        assert events(service, "auth_failure")[0]["key_fingerprint"] == key.get_fingerprint("sha256")


@pytest.mark.parametrize(("options", "pty_allowed"), [("no-pty", False), ("restrict", False),
                                                      ("restrict,pty", True), ("", True)])
async def test_authorized_keys_pty_options(tmp_path: Path, options: str, pty_allowed: bool) -> None:
    _, key = make_key(tmp_path, "alice")
    keys = authorized_keys(tmp_path, "alice", f"{options} {public_line(key)}".strip())
    async with running(config(tmp_path, {"alice": {"role": "admin", "authorized_keys": str(keys)}})) as service:
        async with connect(service, "alice", client_keys=[key]) as conn:
            if pty_allowed:
                result = await conn.run("print('tty')", term_type="xterm", request_pty="force")
                assert result.stdout == "tty\r\n"
            else:
                with pytest.raises(asyncssh.ChannelOpenError):
                    await conn.run("1", term_type="xterm", request_pty="force")
                assert (await conn.run("'no pty needed'")).stdout == "'no pty needed'\n"
        assert bool(events(service, "pty_refused")) is not pty_allowed


async def test_authorized_keys_forced_command(tmp_path: Path) -> None:
    _, key = make_key(tmp_path, "alice")
    keys = authorized_keys(tmp_path, "alice", f'command="print(\\"forced\\")" {public_line(key)}')
    async with running(config(tmp_path, {"alice": {"role": "admin", "authorized_keys": str(keys)}})) as service:
        async with connect(service, "alice", client_keys=[key]) as conn:
            result = await conn.run("print('asked')")
        assert result.stdout == "forced\n"
        opened = events(service, "session_open")[0]
        assert opened["command"] == 'print("forced")' and opened["original_command"] == "print('asked')"


async def test_keepalive_drops_an_unresponsive_client(tmp_path: Path) -> None:
    cfg = config(tmp_path, {"alice": {"role": "admin", "password_hash": FAST_HASH}},
                 keepalive_interval=0.2, keepalive_count_max=2)
    async with running(cfg) as service:
        async with connect(service, "alice", password=PASSWORD) as conn:
            assert (await conn.run("1")).exit_status == 0
            # The client stops reading: keepalive requests go unanswered, like a dead peer.
            conn._transport.pause_reading()  # noqa: SLF001 - no public way to freeze a client
            closed = await wait_until(lambda: events(service, "disconnect"), timeout=15,
                                      what="server-side disconnect")
            conn._transport.resume_reading()  # noqa: SLF001
        assert "keepalive" in closed[0]["reason"].lower()
