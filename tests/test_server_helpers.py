"""Helpers shared by the tests/test_server_*.py files (no tests here)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncssh

from shellsvc.server import Service, hash_password

PASSWORD = "correct horse battery staple"
#: Hashing with the default cost in every test would dominate the runtime.
FAST_HASH = hash_password(PASSWORD, log2_n=10)


def make_key(directory: Path, name: str) -> tuple[Path, asyncssh.SSHKey]:
    """An ed25519 key pair in OpenSSH format: ``<name>`` (0600) and ``<name>.pub``."""
    key = asyncssh.generate_private_key("ssh-ed25519", comment=name)
    path = directory / name
    path.write_bytes(key.export_private_key())
    path.chmod(0o600)
    (directory / f"{name}.pub").write_bytes(key.export_public_key())
    return path, key


def authorized_keys(directory: Path, name: str, *lines: str) -> Path:
    path = directory / f"{name}_authorized_keys"
    path.write_text("".join(line.rstrip("\n") + "\n" for line in lines))
    return path


def public_line(key: asyncssh.SSHKey) -> str:
    return key.export_public_key().decode("ascii").strip()


def config(tmp_path: Path, users: dict[str, dict[str, Any]], **limits: Any) -> dict[str, Any]:
    """A config mapping listening on 127.0.0.1:0 with quick failure delays."""
    limits.setdefault("auth_failure_delay", 0.02)
    return {
        "server": {"host": "127.0.0.1", "port": 0, "state_dir": str(tmp_path / "state")},
        "limits": limits,
        "users": users,
    }


@contextlib.asynccontextmanager
async def running(cfg: Any, **kwargs: Any) -> AsyncIterator[Service]:
    async with Service(config=cfg, **kwargs) as service:
        yield service


def connect(service: Service, username: str, **kwargs: Any) -> Any:
    """``asyncssh.connect`` to the service, pinning its host key."""
    kwargs.setdefault("client_keys", None)
    kwargs.setdefault("agent_path", None)
    kwargs.setdefault("password", None)
    known = asyncssh.import_known_hosts(service.known_hosts_line())
    return asyncssh.connect("127.0.0.1", service.port, username=username, known_hosts=known, config=None,
                            preferred_auth=kwargs.pop("preferred_auth", "publickey,password"), **kwargs)


def audit_records(service_or_path: Service | Path) -> list[dict[str, Any]]:
    path = service_or_path if isinstance(service_or_path, Path) else service_or_path.config.server.audit_log_path
    return [json.loads(line) for line in path.read_text().splitlines()]


def events(service: Service, name: str) -> list[dict[str, Any]]:
    return [record for record in audit_records(service) if record["event"] == name]


async def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


def mode(path: Path) -> int:
    return os.stat(path).st_mode & 0o777


async def communicate(process: asyncio.subprocess.Process, data: bytes | None = None,
                      timeout: float = 60.0) -> tuple[bytes, bytes]:
    """``process.communicate(data)`` under a deadline; a process that overruns it is killed,
    never left running after the test."""
    try:
        return await asyncio.wait_for(process.communicate(data), timeout)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
