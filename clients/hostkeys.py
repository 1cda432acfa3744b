"""Host key verification: known_hosts first, a fingerprint prompt on a terminal, never blind trust.

asyncssh checks the server's key against the known_hosts entries we give it and, for a
key it does not trust, asks :meth:`SSHClient.validate_host_public_key`; we answer "no"
and remember the key offered. The connection then fails and :func:`explain` tells
*unknown* (no entry for this host: on a terminal the user may accept the fingerprint,
which is then saved) from *mismatch* (an entry with another key: always refused, as
OpenSSH does, since that is what an interception looks like).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import asyncssh

from .target import Target

__all__ = ["HostKeyError", "HostKeyUnknown", "HostKeyMismatch", "add_known_host", "default_known_hosts",
           "describe_key", "explain", "load_known_hosts"]

log = logging.getLogger(__name__)


class HostKeyError(Exception):
    """The server's host key could not be verified; the message says what to do."""


class HostKeyUnknown(HostKeyError):
    """No known_hosts entry for the host; ``key`` is what the server offered."""

    def __init__(self, message: str, key: asyncssh.SSHKey) -> None:
        super().__init__(message)
        self.key = key


class HostKeyMismatch(HostKeyError):
    """The known_hosts entry for the host has a different key."""


def default_known_hosts() -> Path:
    return Path("~/.ssh/known_hosts").expanduser()


def load_known_hosts(path: Path) -> asyncssh.SSHKnownHosts:
    """The entries of ``path``; a missing file is an empty list (every host is unknown)."""
    try:
        return asyncssh.import_known_hosts(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return asyncssh.SSHKnownHosts()
    except (OSError, ValueError) as exc:
        raise HostKeyError(f"cannot read known hosts file {path}: {exc}") from None


def describe_key(key: asyncssh.SSHKey) -> str:
    return f"{key.get_algorithm()} key {key.get_fingerprint('sha256')}"


def explain(target: Target, key: asyncssh.SSHKey, host: str, addr: str, port: int, path: Path) -> HostKeyError:
    """The error for a key asyncssh did not trust: unknown host, or a changed key."""
    known = load_known_hosts(path)
    trusted = known.match(host, addr, port)[0]
    name = target.known_hosts_name
    if trusted:
        return HostKeyMismatch(
            f"HOST KEY MISMATCH for {name}: the server offered {describe_key(key)}, but {path} holds a "
            f"different key for it ({', '.join(k.get_fingerprint('sha256') for k in trusted)}). Someone may be "
            f"intercepting the connection, or the server's key was replaced. Not connecting. If the change is "
            f"expected, remove the old entry with: ssh-keygen -R '{name}' -f {path}")
    return HostKeyUnknown(
        f"the host key of {name} is not known ({describe_key(key)}); not connecting. Compare the fingerprint "
        f"with the one the server logged at startup ('host key SHA256:...'), then add the key to {path} "
        f"(run the client on a terminal to be asked, or pass --known-hosts FILE with the server's "
        f"known_hosts line)", key)


def add_known_host(path: Path, target: Target, key: asyncssh.SSHKey) -> None:
    """Append ``target``'s key to ``path`` (created 0600 in a 0700 directory)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    line = f"{target.known_hosts_name} {key.export_public_key().decode('ascii').strip()}\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a", encoding="ascii") as handle:
        handle.write(line)
    log.info("added %s for %s to %s", describe_key(key), target.known_hosts_name, path)
