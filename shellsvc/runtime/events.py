"""Runtime events and the hub that delivers them (audit log, pushes to SSH clients)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shellsvc.pubsub import Subscribers, Subscription

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


class EventHub(Subscribers[RuntimeEvent]):
    """The runtime's subscribers; every event is also logged (a warning when it failed)."""

    def subscribe(self, callback: Callback) -> Subscription[RuntimeEvent]:
        return self.add(callback)

    def emit(self, event: RuntimeEvent) -> None:
        (logger.warning if event.error else logger.info)("plugin %s", event)
        super().emit(event)
