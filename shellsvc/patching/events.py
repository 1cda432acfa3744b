"""What happened to patches, told to whoever subscribed to a :class:`~shellsvc.patching.PatchManager`.

Patches change from many places - an admin's REPL ``patch()``, the console's ``patches
rollback``, a patch file applied over the protocol, a plugin reload that supersedes
patches, a failed health check - and from any thread. The manager emits one
:class:`PatchEvent` per change, after it is done, so a subscriber (the service pushing
to connected clients, an audit log) sees every path the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from shellsvc.pubsub import Subscription

__all__ = ["EVENT_KINDS", "PatchEvent", "PatchSubscription"]

#: Every ``PatchEvent.kind``.
EVENT_KINDS = frozenset(
    {"applied", "rolled_back", "committed", "superseded", "health_check_failed", "reapplied"}
)


@dataclass(frozen=True)
class PatchEvent:
    """One change to patches.

    ``kind`` is one of :data:`EVENT_KINDS`: ``health_check_failed`` means the patch was
    applied, failed its check and is already rolled back (``ids`` holds the id it would
    have had); ``reapplied`` is a journal entry applied again after a restart.
    ``reason`` says why for rollbacks, supersessions and failed checks; ``committed_to``
    is the source file a ``committed`` patch was written to.
    """

    kind: str
    ids: tuple[int, ...]
    targets: tuple[str, ...]
    user: str | None = None
    reason: str | None = None
    note: str | None = None
    committed_to: str | None = None
    time: float = field(default_factory=time.time)

    def __str__(self) -> str:
        ids = ", ".join(f"#{i}" for i in self.ids)
        text = f"{self.kind.replace('_', ' ')} {ids} ({', '.join(self.targets)})"
        if self.user:
            text += f" by {self.user}"
        if self.committed_to:
            text += f" to {self.committed_to}"
        if self.reason:
            text += f": {self.reason}"
        return text

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data, plus ``text`` (the one-line summary)."""
        data = asdict(self)
        data["ids"], data["targets"] = list(self.ids), list(self.targets)
        data["text"] = str(self)
        return data


Callback = Callable[[PatchEvent], Any]


#: What :meth:`PatchManager.subscribe` returns (the shared :class:`shellsvc.pubsub.Subscription`).
PatchSubscription = Subscription
