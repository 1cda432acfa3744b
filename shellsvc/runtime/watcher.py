"""Hot reload: poll plugin directories and let the runtime load, reload or unload.

The watcher is a task on the runtime's own event loop, so it never touches the registry
from a foreign thread and never races a reload started from the shell (both go through
the runtime's lock). Each poll only ``stat``s files (mtime, size, inode); a source whose
stats changed is acted on once they stayed still for ``debounce`` seconds, and the
runtime then compares sha256 digests, so a touch without a content change reloads nothing.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from .sources import SourceRef, discover, fingerprint

if TYPE_CHECKING:
    from .runtime import Runtime
    from .staging import Selector

__all__ = ["Watcher"]

logger = logging.getLogger(__name__)


class Watcher:
    """Created by :meth:`Runtime.watch`; ``await watcher.stop()`` ends it (idempotent).

    ``stats`` counts polls (``scans``) and the outcomes of :meth:`Runtime.refresh`
    (``loaded``, ``reloaded``, ``unchanged``, ``failed``, ``unloaded``, ...).
    """

    def __init__(
        self,
        runtime: Runtime,
        directories: list[Path],
        *,
        selector: Selector,
        recursive: bool,
        interval: float,
        debounce: float,
    ) -> None:
        if interval <= 0 or debounce < 0:
            raise ValueError(f"interval must be > 0 and debounce >= 0 (got {interval}, {debounce})")
        self.runtime = runtime
        self.directories = directories
        self.selector = selector
        self.recursive = recursive
        self.interval = interval
        self.debounce = debounce
        self.stats: collections.Counter[str] = collections.Counter()
        self._task: asyncio.Task[None] | None = None
        self._seen: dict[Path, object] = {}
        self._pending: dict[Path, float] = {}

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self.running:
            return
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"shellsvc-watch {self.directories}")

    async def stop(self) -> None:
        """Cancel the polling task and wait until it has ended."""
        task, self._task = self._task, None
        self.runtime._forget_watcher(self)
        if task is None or task.done():
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # we were cancelled ourselves, not just our watcher task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                await self.poll(loop.time())
            except asyncio.CancelledError:
                raise
            except Exception:
                self.stats["errors"] += 1
                logger.exception("plugin watcher for %s: poll failed; continuing", self.directories)
            await asyncio.sleep(self.interval)

    async def poll(self, now: float) -> None:
        """One polling round: note stat changes, act on those that settled."""
        self.stats["scans"] += 1
        current: dict[Path, tuple[SourceRef | None, object]] = {}
        for directory in self.directories:
            for ref in discover(directory, recursive=self.recursive):
                current[ref.path] = (ref, fingerprint(ref))
        for path in self.runtime.known_paths():
            if path not in current and self._covers(path):
                current[path] = (None, None)  # gone (or no longer a source)
        for path in list(self._seen):
            if path not in current:
                del self._seen[path]
                self._pending.pop(path, None)
        for path, (_, stamp) in current.items():
            if self._seen.get(path, _UNSEEN) != stamp:
                self._seen[path] = stamp
                self._pending[path] = now  # (re)start the quiet period
        for path, since in list(self._pending.items()):
            if now - since < self.debounce:
                continue
            del self._pending[path]
            outcome = await self.runtime.refresh(path, selector=self.selector)
            self.stats[outcome] += 1

    def _covers(self, path: Path) -> bool:
        for directory in self.directories:
            if path.parent == directory or (self.recursive and path.is_relative_to(directory)):
                return True
        return False

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Watcher {state} {[str(d) for d in self.directories]} {dict(self.stats)}>"


_UNSEEN = object()
