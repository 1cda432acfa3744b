"""The execution engine shared by every front end (SSH PTY, exec, subsystem, local REPL)."""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref

from .bridge import LoopBridge
from .namespaces import NamespaceRegistry, Seed
from .scheduler import Scheduler
from .session import ExecSession
from .streams import SessionIO

__all__ = ["Engine"]

log = logging.getLogger(__name__)


class Engine:
    """Opens execution sessions over per-user namespaces, bound to the app's event loop.

    User code runs in one worker thread per session; ``await`` in a cell runs the awaited
    coroutine on ``loop`` (the app's loop), so it can touch app state safely.
    """

    def __init__(
        self,
        namespaces: NamespaceRegistry | Seed = None,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        max_running: int | None = None,
        scheduler: Scheduler | None = None,
    ) -> None:
        """``max_running`` caps how many commands may be in progress at once across all
        sessions (admission control: commands over the cap wait before they start).

        ``scheduler`` time-slices the commands that are in progress so the app's loop
        keeps its latency (see :mod:`shellsvc.engine.scheduler`); by default the
        process-wide :meth:`Scheduler.shared`. ``Scheduler(slots=None,
        switch_interval=None)`` turns scheduling off.
        """
        if max_running is not None and max_running < 1:
            raise ValueError(f"Engine max_running must be a positive number or None, not {max_running!r}")
        if not isinstance(namespaces, NamespaceRegistry):
            namespaces = NamespaceRegistry(namespaces)
        self.namespaces = namespaces
        self.loop = loop or asyncio.get_running_loop()
        self.bridge = LoopBridge(self.loop)
        self.max_running = max_running
        self.slots = asyncio.Semaphore(max_running) if max_running else None
        self.scheduler = scheduler if scheduler is not None else Scheduler.shared()
        self._sessions: weakref.WeakValueDictionary[int, ExecSession] = weakref.WeakValueDictionary()
        self._lock = threading.Lock()

    def open_session(self, user: str, io: SessionIO, *, label: str = "") -> ExecSession:
        """A new session for ``user``; it shares the user's namespace with their other sessions."""
        session = ExecSession(self, user, io, label)
        with self._lock:
            self._sessions[session.id] = session
        log.debug("opened session %s", session.label)
        return session

    def sessions(self) -> list[ExecSession]:
        """Open sessions, oldest first."""
        with self._lock:
            return [s for _, s in sorted(self._sessions.items()) if not s.closed]

    def _forget(self, session: ExecSession) -> None:
        with self._lock:
            self._sessions.pop(session.id, None)

    async def aclose(self) -> None:
        """Close every session (interrupting what runs)."""
        for session in self.sessions():
            await session.close()

    def __repr__(self) -> str:
        return f"<Engine sessions={len(self.sessions())} users={self.namespaces.users()!r}>"
