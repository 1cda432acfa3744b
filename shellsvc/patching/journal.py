"""The patch journal: one JSON object per line in ``<state dir>/patches.jsonl`` (mode 0600).

Append-only events (``apply``, ``rollback``, ``commit``, ``supersede``) so a crash never leaves a
half-written history; :meth:`PatchJournal.records` folds them into the current state of
every patch. The journal holds source code of the application, hence the permissions.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["PatchJournal", "PatchRecord"]

log = logging.getLogger(__name__)

JOURNAL_NAME = "patches.jsonl"


@dataclass
class PatchRecord:
    """What the journal knows about one patch."""

    id: int
    target: str  # human-readable module.qualname
    path: str | None  # "module:qualname" to re-resolve after a restart (None: not re-resolvable)
    kind: str  # "function" or "class"
    before_source: str | None
    after_source: str | None
    user: str
    time: float
    status: str = "active"  # active | rolled back | superseded (its module was reloaded or unloaded)
    committed_to: str | None = None
    backup: str | None = None
    note: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return self.status == "active"

    def __repr__(self) -> str:  # what the REPL shows after ``patch(...)``; sources via ``patches show``
        return f"<patch {self.summary()}>"

    def summary(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.time))
        committed = f" committed to {self.committed_to}" if self.committed_to else ""
        return f"#{self.id} {self.status:<11} {self.target}  by {self.user} at {when}{committed}"

    def to_event(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("history")
        data.pop("status")
        data.pop("committed_to")
        data.pop("backup")
        return {"op": "apply", **data}


class PatchJournal:
    """Persistent, append-only record of patches in one state directory."""

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / JOURNAL_NAME
        self._lock = threading.Lock()

    def append(self, event: dict[str, Any]) -> None:
        """Write one event durably (flushed and fsynced) with owner-only permissions."""
        line = json.dumps(event, sort_keys=True) + "\n"
        with self._lock:
            if not self.state_dir.exists():
                self.state_dir.mkdir(parents=True, mode=0o700, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                if os.fstat(fd).st_mode & 0o077:
                    os.fchmod(fd, 0o600)
                os.write(fd, line.encode("utf-8"))
                os.fsync(fd)
            finally:
                os.close(fd)

    def events(self) -> list[dict[str, Any]]:
        """Every event in order; a corrupt line is logged and skipped (it cannot be trusted)."""
        if not self.path.exists():
            return []
        events = []
        with open(self.path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    events.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    log.error("%s line %d is not valid JSON (%s); skipping it", self.path, number, exc)
        return events

    def records(self) -> dict[int, PatchRecord]:
        """Fold the events into one record per patch id."""
        records: dict[int, PatchRecord] = {}
        for event in self.events():
            op = event.get("op")
            pid = event.get("id")
            if op == "apply":
                fields = {k: v for k, v in event.items() if k in PatchRecord.__dataclass_fields__}
                records[pid] = PatchRecord(**fields)
            elif pid in records:
                record = records[pid]
                record.history.append(event)
                if op == "rollback":
                    record.status = "rolled back"
                elif op == "supersede":
                    record.status = "superseded"
                elif op == "commit":
                    record.committed_to = event.get("file")
                    record.backup = event.get("backup")
            else:
                log.warning("journal event %r refers to unknown patch #%s", op, pid)
        return records
