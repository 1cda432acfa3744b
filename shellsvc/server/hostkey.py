"""The server's identity: an ed25519 host key created once and kept private.

Like sshd, a key file that group or others can read is refused rather than used:
a leaked host key lets anyone impersonate the service.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import asyncssh

__all__ = ["HostKeyError", "ensure_private_dir", "load_or_create_host_key"]

log = logging.getLogger(__name__)


class HostKeyError(RuntimeError):
    """The host key or state directory cannot be used safely; the message says how to fix it."""


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` with mode 0700, or check an existing one is not open to group/others."""
    try:
        path.mkdir(mode=0o700, parents=True)
        os.chmod(path, 0o700)  # mkdir's mode is filtered by the umask
        log.info("created state directory %s (0700)", path)
        return path
    except FileExistsError:
        pass
    info = path.stat()
    if not stat.S_ISDIR(info.st_mode):
        raise HostKeyError(f"state directory {path} exists but is not a directory")
    if info.st_mode & 0o077:
        raise HostKeyError(
            f"state directory {path} is accessible by group/others (mode {stat.S_IMODE(info.st_mode):04o}); "
            f"it holds the host key and the audit log: run `chmod 700 {path}`")
    return path


def _check_private_file(path: Path) -> None:
    info = path.stat()
    if not stat.S_ISREG(info.st_mode):
        raise HostKeyError(f"host key {path} is not a regular file")
    if info.st_mode & 0o077:
        raise HostKeyError(
            f"host key {path} is readable by group/others (mode {stat.S_IMODE(info.st_mode):04o}); "
            f"refusing to use it. Run `chmod 600 {path}` (and consider replacing the key)")
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise HostKeyError(f"host key {path} is owned by uid {info.st_uid}, not by this user ({os.getuid()})")


def load_or_create_host_key(path: Path) -> asyncssh.SSHKey:
    """Load the host key at ``path``, generating an ed25519 key (0600) on first start.

    A missing parent directory is created 0700; an existing one is left as it is (the
    state directory itself is checked by :func:`ensure_private_dir`).
    """
    if not path.parent.exists():
        ensure_private_dir(path.parent)
    if not path.exists():
        key = asyncssh.generate_private_key("ssh-ed25519", comment="shellsvc host key")
        data = key.export_private_key()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(path, 0o600)
        path.with_name(path.name + ".pub").write_bytes(key.export_public_key())
        log.info("generated host key %s (%s)", path, key.get_fingerprint("sha256"))
        return key
    _check_private_file(path)
    try:
        return asyncssh.read_private_key(path)
    except (OSError, ValueError, asyncssh.KeyImportError) as exc:
        raise HostKeyError(f"cannot load host key {path}: {exc}") from None
