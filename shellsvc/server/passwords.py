"""Password hashes for ``[users.NAME] password_hash``: scrypt, self-describing, constant-time check.

The stored form is ``scrypt$<log2 n>$<r>$<p>$<salt, base64>$<hash, base64>`` so the cost
can be raised later without invalidating existing hashes. Verification is CPU-bound
(tens of milliseconds by design): call :func:`verify_password` off the event loop.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass

__all__ = ["PasswordHashError", "hash_password", "verify_password", "parse_password_hash", "DUMMY_HASH"]

PREFIX = "scrypt"
DEFAULT_LOG2_N = 14
DEFAULT_R = 8
DEFAULT_P = 1
_SALT_BYTES = 16
_KEY_BYTES = 32
#: Bounds on parameters read from config, so a typo cannot make every login take minutes.
_MAX_LOG2_N = 20
_MAX_R = 32
_MAX_P = 16


class PasswordHashError(ValueError):
    """A ``password_hash`` value that is not in the ``scrypt$...`` format."""


@dataclass(frozen=True)
class PasswordHash:
    log2_n: int
    r: int
    p: int
    salt: bytes
    digest: bytes

    def __str__(self) -> str:
        salt = base64.b64encode(self.salt).decode("ascii")
        digest = base64.b64encode(self.digest).decode("ascii")
        return f"{PREFIX}${self.log2_n}${self.r}${self.p}${salt}${digest}"


def _derive(password: str, salt: bytes, log2_n: int, r: int, p: int, length: int) -> bytes:
    n = 1 << log2_n
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p,
                          maxmem=129 * r * n * p + (1 << 20), dklen=length)


def hash_password(password: str, *, log2_n: int = DEFAULT_LOG2_N, r: int = DEFAULT_R, p: int = DEFAULT_P) -> str:
    """Return the ``scrypt$...`` string to paste into ``password_hash``."""
    if not password:
        raise ValueError("refusing to hash an empty password")
    salt = os.urandom(_SALT_BYTES)
    return str(PasswordHash(log2_n, r, p, salt, _derive(password, salt, log2_n, r, p, _KEY_BYTES)))


def parse_password_hash(text: str) -> PasswordHash:
    """Parse and bound-check a stored hash; raises :class:`PasswordHashError` saying what is wrong."""
    parts = text.split("$")
    if len(parts) != 6 or parts[0] != PREFIX:
        raise PasswordHashError(
            "expected 'scrypt$<log2 n>$<r>$<p>$<salt>$<hash>' as printed by `shellsvc passwd`")
    try:
        log2_n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt = base64.b64decode(parts[4], validate=True)
        digest = base64.b64decode(parts[5], validate=True)
    except ValueError as exc:
        raise PasswordHashError(f"malformed scrypt hash ({exc}); regenerate it with `shellsvc passwd`") from None
    if not (1 <= log2_n <= _MAX_LOG2_N and 1 <= r <= _MAX_R and 1 <= p <= _MAX_P):
        raise PasswordHashError(
            f"scrypt parameters out of range (log2 n={log2_n}, r={r}, p={p}); "
            f"allowed: log2 n 1-{_MAX_LOG2_N}, r 1-{_MAX_R}, p 1-{_MAX_P}")
    if len(salt) < 8 or len(digest) < 16:
        raise PasswordHashError("salt or hash too short; regenerate it with `shellsvc passwd`")
    return PasswordHash(log2_n, r, p, salt, digest)


def verify_password(password: str, stored: PasswordHash | str) -> bool:
    """Whether ``password`` matches; the comparison itself is constant-time."""
    if isinstance(stored, str):
        stored = parse_password_hash(stored)
    candidate = _derive(password, stored.salt, stored.log2_n, stored.r, stored.p, len(stored.digest))
    return hmac.compare_digest(candidate, stored.digest)


#: Verified against when the user is unknown or has no password, so a failure costs the
#: same scrypt work either way and timing does not reveal which users exist.
DUMMY_HASH = PasswordHash(DEFAULT_LOG2_N, DEFAULT_R, DEFAULT_P, b"shellsvc-dummy-salt", b"\0" * _KEY_BYTES)
