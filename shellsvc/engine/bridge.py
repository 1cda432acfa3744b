"""Running awaitables from a session's worker thread on the app's event loop.

The rewritten cell calls these helpers (see ``compiler``); the awaited coroutine runs
as a task on the app loop, so it touches real app state safely, while the worker thread
waits - interruptibly: an interrupt cancels the task - and lends its scheduler slot to
other sessions meanwhile.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import threading
from collections.abc import AsyncIterable, Awaitable, Iterator
from types import TracebackType
from typing import Any, TypeVar

from .control import current_control, paused

__all__ = ["LoopBridge", "on_loop_thread"]

T = TypeVar("T")


class _Escaped(Exception):
    """Carries ``SystemExit``/``KeyboardInterrupt`` out of the awaited task.

    asyncio re-raises those two out of ``Task.__step``, which would stop the app's
    event loop; wrapped, they reach the session's worker thread and end (or interrupt)
    only that session.
    """

    def __init__(self, exc: BaseException) -> None:
        super().__init__(exc)
        self.exc = exc


def on_loop_thread(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether the caller runs on ``loop``'s own thread (while it runs): code there must not
    block on the loop, and may touch loop-owned objects without ``call_soon_threadsafe``."""
    return getattr(loop, "_thread_id", None) == threading.get_ident()


async def _guarded(awaitable: Awaitable[T]) -> T:
    try:
        return await awaitable
    except (SystemExit, KeyboardInterrupt) as exc:
        raise _Escaped(exc) from None


class LoopBridge:
    """The ``await``/``async for``/``async with`` helpers bound to one event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def await_(self, awaitable: Awaitable[T]) -> T:
        if not inspect.isawaitable(awaitable):
            raise TypeError(f"object {type(awaitable).__name__} can't be used in 'await' expression")
        if self.loop.is_closed():
            raise RuntimeError("the application's event loop is closed; nothing can be awaited")
        if on_loop_thread(self.loop):
            raise RuntimeError("await from the event loop's own thread would deadlock")
        future = asyncio.run_coroutine_threadsafe(_guarded(awaitable), self.loop)
        control = current_control()
        if control is not None and control.thread_id != threading.get_ident():
            control = None  # a thread the session's code started: not interruptible here
        try:
            if control is None:
                return future.result()
            with control.lock:
                control.pending = future
            if control.interrupted.is_set():
                future.cancel()
            try:
                with paused(control):
                    return future.result()
            except concurrent.futures.CancelledError:
                if control.interrupted.is_set():
                    control.land()
                raise
            finally:
                with control.lock:
                    control.pending = None
        except _Escaped as escaped:
            raise escaped.exc from None

    def aiter(self, iterable: AsyncIterable[T]) -> Iterator[T]:
        iterator = iterable.__aiter__()
        while True:
            try:
                item = self.await_(iterator.__anext__())
            except StopAsyncIteration:
                return
            yield item

    def awith(self, manager: Any) -> _SyncAsyncContext:
        return _SyncAsyncContext(self, manager)


class _SyncAsyncContext:
    """``async with`` as a plain ``with`` whose enter/exit run on the app loop."""

    def __init__(self, bridge: LoopBridge, manager: Any) -> None:
        if not hasattr(manager, "__aenter__") or not hasattr(manager, "__aexit__"):
            raise TypeError(
                f"'{type(manager).__name__}' object does not support the asynchronous context manager protocol"
            )
        self._bridge = bridge
        self._manager = manager

    def __enter__(self) -> Any:
        return self._bridge.await_(self._manager.__aenter__())

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        return bool(self._bridge.await_(self._manager.__aexit__(exc_type, exc, tb)))
