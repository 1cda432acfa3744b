"""Runtime events and a tiny publish/subscribe hub (audit log, pushes to SSH clients)."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import PluginError

__all__ = ["EventHub", "RuntimeEvent", "Subscription", "EVENT_KINDS"]

logger = logging.getLogger(__name__)

#: Every ``RuntimeEvent.kind`` the runtime emits.
EVENT_KINDS = frozenset(
    {"loaded", "load_failed", "started", "stopped", "reloaded", "reload_failed", "unloaded"}
)


@dataclass(frozen=True)
class RuntimeEvent:
    """One thing that happened to a plugin. ``file``/``line`` locate failures."""

    kind: str
    name: str | None
    path: Path | None
    generation: int = 0
    error: PluginError | None = None
    time: float = field(default_factory=time.time)

    @property
    def file(self) -> str | None:
        return self.error.file if self.error else None

    @property
    def line(self) -> int | None:
        return self.error.line if self.error else None

    def __str__(self) -> str:
        what = self.name or (self.path.name if self.path else "?")
        text = f"{self.kind} {what}"
        if self.generation:
            text += f" (generation {self.generation})"
        if self.error:
            text += f": {self.error}"
        return text


Callback = Callable[[RuntimeEvent], Any]


class Subscription:
    """Handle returned by :meth:`EventHub.subscribe`; call it (or ``close()``) to unsubscribe."""

    def __init__(self, hub: EventHub, callback: Callback) -> None:
        self._hub = hub
        self.callback = callback

    def close(self) -> None:
        self._hub._unsubscribe(self)

    __call__ = close

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class EventHub:
    """Delivers events to subscribers in order, on the caller's (the loop's) thread.

    A callback may be a plain function or return an awaitable, which is scheduled as a
    task. A failing subscriber is logged and never disturbs the runtime or other subscribers.
    """

    def __init__(self) -> None:
        self._subscriptions: list[Subscription] = []
        self._tasks: set[asyncio.Task[Any]] = set()

    def subscribe(self, callback: Callback) -> Subscription:
        subscription = Subscription(self, callback)
        self._subscriptions.append(subscription)
        return subscription

    def _unsubscribe(self, subscription: Subscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)

    def emit(self, event: RuntimeEvent) -> None:
        log = logger.warning if event.error else logger.info
        log("plugin %s", event)
        for subscription in list(self._subscriptions):
            try:
                result = subscription.callback(event)
                if inspect.isawaitable(result):
                    task = asyncio.ensure_future(result)
                    self._tasks.add(task)
                    task.add_done_callback(self._task_done)
            except Exception:
                logger.exception("event subscriber %r failed on %s", subscription.callback, event)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("async event subscriber failed", exc_info=task.exception())

    def __len__(self) -> int:
        return len(self._subscriptions)
