"""Who is connected to the console, for the ``sessions`` command.

Python sessions are listed by the engine (``Engine.sessions()``); console sessions run
no Python and so have no engine session - front ends record them on a board instead.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

__all__ = ["BoardEntry", "SessionBoard"]

_entry_ids = itertools.count(1)


@dataclass(frozen=True)
class BoardEntry:
    user: str
    role: str
    label: str
    kind: str  #: "pty", "exec", "script", "local"
    peer: str = ""
    started_at: float = field(default_factory=time.time)
    id: int = field(default_factory=lambda: next(_entry_ids))


class SessionBoard:
    """Open console sessions (thread-safe)."""

    def __init__(self) -> None:
        self._entries: dict[int, BoardEntry] = {}
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def opened(self, user: str, role: str, label: str, kind: str, peer: str = "") -> Iterator[BoardEntry]:
        """Keep an entry on the board while the ``with`` block runs."""
        entry = BoardEntry(user, role, label, kind, peer)
        with self._lock:
            self._entries[entry.id] = entry
        try:
            yield entry
        finally:
            with self._lock:
                self._entries.pop(entry.id, None)

    def entries(self) -> list[BoardEntry]:
        with self._lock:
            return sorted(self._entries.values(), key=lambda e: e.id)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __repr__(self) -> str:
        return f"<SessionBoard {len(self)} open>"
