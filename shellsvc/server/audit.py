"""The audit trail: one JSON object per line, appended before the action it records.

The file is opened ``O_APPEND`` with mode 0600 and every record is a single
``write()``, so lines from concurrent writers never interleave. JSON escaping keeps
control characters typed by users (terminal escapes, ``\\r``, DEL) from reaching the
terminal of whoever reads the log. Callers never pass passwords: no event has a field
for one, and :meth:`AuditLog.write` drops any field named like a secret.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import stat
import threading
from pathlib import Path
from typing import Any

__all__ = ["AuditLog", "AuditLogError"]

log = logging.getLogger(__name__)

_SECRET_FIELDS = frozenset({"password", "passwd", "secret", "private_key"})


class AuditLogError(RuntimeError):
    """The audit log cannot be opened safely."""


def _escape_del(text: str) -> str:
    # json.dumps(ensure_ascii=True) escapes C0 controls and everything non-ASCII; DEL is left.
    return text.replace("\x7f", "\\u007f")


class AuditLog:
    """Append-only JSON-lines audit log."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            self._fd: int | None = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise AuditLogError(f"cannot open audit log {path}: {exc.strerror}") from None
        mode = stat.S_IMODE(os.fstat(self._fd).st_mode)
        if mode & 0o077:
            os.close(self._fd)
            self._fd = None
            raise AuditLogError(
                f"audit log {path} is accessible by group/others (mode {mode:04o}); run `chmod 600 {path}`")

    def write(self, event: str, **fields: Any) -> None:
        """Record ``event`` now: written to the file before the caller proceeds, so a crash of
        this process cannot lose it (no fsync per record: power loss can drop the last ones)."""
        record = {"ts": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds"),
                  "event": event}
        for key, value in fields.items():
            if key in _SECRET_FIELDS:
                log.error("audit: dropped field %r from %s event (secrets are never logged)", key, event)
                continue
            record[key] = value
        line = _escape_del(json.dumps(record, ensure_ascii=True, default=str)) + "\n"
        data = line.encode("ascii")
        with self._lock:
            if self._fd is None:
                log.warning("audit log %s is closed (service stopped); dropped %s event", self.path, event)
                return
            while data:
                data = data[os.write(self._fd, data):]

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (further events are dropped, with a warning)."""
        return self._fd is None

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __repr__(self) -> str:
        return f"<AuditLog {self.path}>"
