"""SSH service: config validation, password hashes, host key, audit log file, CLI passwd."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shellsvc.server import (ConfigError, HostKeyError, Service, hash_password, load_config, parse_config,
                             verify_password)
from shellsvc.server.audit import AuditLog, AuditLogError

from test_server_helpers import FAST_HASH, audit_records, config, make_key, mode, public_line, running


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "shellsvc.toml"
    path.write_text(text)
    return path


def test_a_private_key_given_as_authorized_keys_is_refused_with_the_fix(tmp_path: Path) -> None:
    private, _ = make_key(tmp_path, "alice_key")
    path = write_config(tmp_path, "[users.alice]\nrole = 'admin'\nauthorized_keys = 'alice_key'\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert f"{private}, line 1: this is a private key; name the public key instead" in message
    assert ".pub" in message and "BEGIN" not in message


def test_full_config_loads_with_paths_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    _, key = make_key(tmp_path / "keys", "alice")
    path = write_config(tmp_path, f"""
[server]
port = 0
state_dir = ".state"
plugins = ["plugins"]
[limits]
max_auth_tries = 4
[users.alice]
role = "admin"
authorized_keys = "keys/alice.pub"
password_hash = "{FAST_HASH}"
[users.olga]
role = "operator"
password_hash = "{FAST_HASH}"
""")
    loaded = load_config(path)
    assert loaded.server.host == "127.0.0.1"
    assert loaded.server.state_dir == tmp_path / ".state"
    assert loaded.server.plugins == (tmp_path / "plugins",)
    assert loaded.limits.max_auth_tries == 4 and loaded.limits.max_sessions_per_user == 10
    assert loaded.users["alice"].authorized_keys is not None and loaded.users["olga"].role == "operator"
    assert public_line(key)


@pytest.mark.parametrize(("body", "key", "fragment"), [
    ("[server]\nprot = 22\n", "server.prot", "did you mean 'port'"),
    ("[server]\nport = 70000\n", "server.port", "0-65535"),
    ("[server]\nport = 'x'\n", "server.port", "must be an integer"),
    ("[limits]\nmax_auth_tries = 0\n", "limits.max_auth_tries", ">= 1"),
    ("[limits]\npenalty_exempt = ['nonsense']\n", "limits.penalty_exempt", "not an IP network"),
    ("[users.bob]\nrole = 'root'\npassword_hash = 'x'\n", "users.bob.role", "admin, operator"),
    ("[users.bob]\nrole = 'admin'\n", "users.bob", "no credential"),
    ("[users.bob]\nrole = 'admin'\npassword_hash = 'plain'\n", "users.bob.password_hash", "shellsvc passwd"),
    ("[users.bob]\nrole = 'admin'\nauthorized_keys = 'missing.pub'\n", "users.bob.authorized_keys",
     "cannot read"),
    ("[users.bob]\nrole = 'admin'\npasword_hash = 'x'\n", "users.bob.pasword_hash", "did you mean"),
    ("[[server]]\n", "server", "must be a table"),
])
def test_config_errors_name_the_file_and_the_key(tmp_path: Path, body: str, key: str, fragment: str) -> None:
    path = write_config(tmp_path, body)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: {key}: ")
    assert fragment in message


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[server\n")
    with pytest.raises(ConfigError, match=f"^{path}: invalid TOML"):
        load_config(path)


@pytest.mark.parametrize(("options", "accepted"), [
    ('tunnel="0"', False), ("cert-authority", False), ('expiry-time="20300101"', False), ("bogus", False),
    ("restrict", True), ("restrict,pty", True), ('no-pty,from="10.0.0.0/8",command="x"', True),
])
def test_authorized_keys_options_are_honoured_or_rejected(tmp_path: Path, options: str, accepted: bool) -> None:
    _, key = make_key(tmp_path, "k")
    keys = tmp_path / "authorized_keys"
    keys.write_text(f"# comment\n\n{options} {public_line(key)}\n")
    data = {"users": {"bob": {"role": "admin", "authorized_keys": str(keys)}}}
    if accepted:
        assert parse_config(data, source="cfg.toml").users["bob"].authorized_keys is not None
    else:
        with pytest.raises(ConfigError) as caught:
            parse_config(data, source="cfg.toml")
        assert f"{keys}, line 3" in str(caught.value) and "not supported" in str(caught.value)
        assert str(caught.value).startswith("cfg.toml: users.bob.authorized_keys: ")


def test_password_hash_roundtrip_and_format() -> None:
    stored = hash_password("s3cret", log2_n=10)
    assert stored.startswith("scrypt$10$8$1$")
    assert verify_password("s3cret", stored)
    assert not verify_password("s3cret ", stored)
    assert hash_password("s3cret", log2_n=10) != stored  # salted


def test_passwd_command_reads_stdin_when_piped() -> None:
    result = subprocess.run([sys.executable, "-m", "shellsvc.server.cli", "passwd"], input="pa55 word\n",
                            capture_output=True, text=True, timeout=60, check=True)
    printed = result.stdout.strip()
    assert verify_password("pa55 word", printed)
    assert "pa55" not in result.stdout + result.stderr


def test_passwd_on_a_terminal_does_not_echo_and_asks_twice() -> None:
    import io

    import pexpect

    child = pexpect.spawn(sys.executable, ["-m", "shellsvc", "passwd"], encoding="utf-8", timeout=60)
    try:
        child.logfile_read = transcript = io.StringIO()
        child.expect("Password: ")
        child.sendline("typed secret")
        child.expect("Again: ")
        child.sendline("typed secret")
        child.expect(r"(scrypt\$\S+)")
        printed = child.match.group(1)
        child.expect(pexpect.EOF)
        child.close()
    finally:
        child.close(force=True)
    assert child.exitstatus == 0 and verify_password("typed secret", printed)
    assert "typed" not in transcript.getvalue()  # never echoed
    mismatch = pexpect.spawn(sys.executable, ["-m", "shellsvc", "passwd"], encoding="utf-8", timeout=60)
    try:
        mismatch.expect("Password: ")
        mismatch.sendline("one")
        mismatch.expect("Again: ")
        mismatch.sendline("two")
        mismatch.expect("the passwords differ; nothing printed")
        mismatch.expect(pexpect.EOF)
        mismatch.close()
    finally:
        mismatch.close(force=True)
    assert mismatch.exitstatus == 1 and "scrypt$" not in mismatch.before


async def test_host_key_is_private_and_stable_across_restarts(tmp_path: Path) -> None:
    cfg = config(tmp_path, {"alice": {"role": "admin", "password_hash": FAST_HASH}})
    async with running(cfg) as first:
        fingerprint = first.host_key_fingerprint
        state = first.config.server.state_dir
    assert mode(state) == 0o700
    assert mode(state / "ssh_host_ed25519_key") == 0o600
    assert mode(state / "audit.log") == 0o600
    async with running(cfg) as second:
        assert second.host_key_fingerprint == fingerprint
    starts = [r for r in audit_records(state / "audit.log") if r["event"] == "service_start"]
    assert [r["host_key_fingerprint"] for r in starts] == [fingerprint, fingerprint]


async def test_group_readable_host_key_is_refused(tmp_path: Path) -> None:
    cfg = config(tmp_path, {"alice": {"role": "admin", "password_hash": FAST_HASH}})
    async with running(cfg) as service:
        key_path = service.config.server.host_key_path
    os.chmod(key_path, 0o640)
    with pytest.raises(HostKeyError) as caught:
        async with running(cfg):
            pass
    assert str(key_path) in str(caught.value) and "chmod 600" in str(caught.value)


async def test_state_dir_open_to_others_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    os.chmod(state, 0o755)
    with pytest.raises(HostKeyError, match="chmod 700"):
        async with running(config(tmp_path, {})):
            pass


def test_audit_log_is_append_only_and_private(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    path.write_text('{"event": "earlier"}\n')
    path.chmod(0o600)
    log = AuditLog(path)
    log.write("probe", text="a\x1b]0;title\x07b", password="never")  # secret fields are dropped
    log.close()
    lines = path.read_text().splitlines()
    assert lines[0] == '{"event": "earlier"}'
    assert "never" not in lines[1] and "\\u001b]0;title\\u0007" in lines[1]
    path.chmod(0o644)
    with pytest.raises(AuditLogError, match="chmod 600"):
        AuditLog(path)


async def test_service_without_start_explains_itself(tmp_path: Path) -> None:
    service = Service(config=config(tmp_path, {}))
    with pytest.raises(RuntimeError, match="not started"):
        service.engine
    with pytest.raises(RuntimeError, match="not started"):
        service.known_hosts_line()
