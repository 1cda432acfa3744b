"""One publish/subscribe mechanism for the runtime's plugin events and the patch manager's events.

Events are emitted from the loop (plugin lifecycle) or from any thread (patches made in
a session's worker); subscribers are the audit log and the service pushing to connected
clients. A subscriber's failure is logged and never reaches, or undoes, what emitted.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

__all__ = ["Subscribers", "Subscription"]

log = logging.getLogger(__name__)

E = TypeVar("E")


class Subscription(Generic[E]):
    """What ``subscribe()`` returns: ``close()`` it, call it, or leave its ``with`` to unsubscribe."""

    def __init__(self, subscribers: Subscribers[E], callback: Callable[[E], Any]) -> None:
        self._subscribers = subscribers
        self.callback = callback

    def close(self) -> None:
        """Stop receiving events (idempotent)."""
        self._subscribers.remove(self)

    __call__ = close

    def __enter__(self) -> Subscription[E]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Subscription {self.callback!r}>"


class Subscribers(Generic[E]):
    """Delivers each event to every subscriber, in order, on the emitting thread.

    Subscribing and unsubscribing are thread-safe (emit works on a snapshot). A callback
    that returns an awaitable has it scheduled as a task on the running loop, which the
    emitting thread must then be.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscriptions: tuple[Subscription[E], ...] = ()
        self._tasks: set[asyncio.Future[Any]] = set()

    def add(self, callback: Callable[[E], Any]) -> Subscription[E]:
        subscription = Subscription(self, callback)
        with self._lock:
            self._subscriptions += (subscription,)
        return subscription

    def remove(self, subscription: Subscription[E]) -> None:
        with self._lock:
            self._subscriptions = tuple(s for s in self._subscriptions if s is not subscription)

    def emit(self, event: E) -> None:
        """Call every subscriber; one that raises is logged and does not stop the others."""
        for subscription in self._subscriptions:  # a snapshot: the tuple is replaced, never changed
            try:
                result = subscription.callback(event)
                if inspect.isawaitable(result):
                    self._schedule(subscription, event, result)
            except Exception:  # noqa: BLE001 - a subscriber's bug must not disturb the emitter
                log.exception("event subscriber %r failed on %s", subscription.callback, event)

    def _schedule(self, subscription: Subscription[E], event: E, awaitable: Awaitable[Any]) -> None:
        try:
            task = asyncio.ensure_future(awaitable)
        except RuntimeError as exc:  # no event loop in the emitting thread, or a closed one
            if inspect.iscoroutine(awaitable):
                awaitable.close()  # it will never run: no "coroutine was never awaited" warning
            log.error("async event subscriber %r dropped %s (%s); an async subscriber needs events emitted "
                      "on its running loop - otherwise subscribe a plain function that hands the work to "
                      "your loop (loop.call_soon_threadsafe)", subscription.callback, event, exc)
            return
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("async event subscriber %r failed", task, exc_info=task.exception())

    def __len__(self) -> int:
        return len(self._subscriptions)
