"""Bridging an SSH channel and a session's worker thread.

User code prints from its worker thread (or threads it starts); asyncssh channels may
only be touched on the event loop. :class:`ChannelOutput` hops to the loop and applies
backpressure, so ``while True: print(x)`` stalls the worker instead of growing memory.
:class:`ChannelInput` buffers what the client sends for scripts and ``input()``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable

import asyncssh

from shellsvc.engine.bridge import on_loop_thread
from shellsvc.engine.control import current_control

__all__ = ["ChannelInput", "ChannelOutput", "may_overshoot", "wait_from_thread"]

log = logging.getLogger(__name__)

#: Bytes written by worker threads but not yet handed to asyncssh before writers wait.
HIGH_WATER = 256 * 1024
#: How far past the limits an interrupted command may still write (its traceback): an
#: interrupt must not wait for a client that stopped reading, or the engine would give
#: up on the command after its grace period and abandon its worker thread.
INTERRUPTED_ALLOWANCE = 1024 * 1024


def may_overshoot(unsent: int) -> bool:
    """Whether the calling thread may write although the client is behind: its command
    was interrupted and less than :data:`INTERRUPTED_ALLOWANCE` is unsent."""
    control = current_control()
    return control is not None and control.interrupted.is_set() and unsent < INTERRUPTED_ALLOWANCE


def unsent_bytes(chan: asyncssh.SSHServerChannel[str]) -> int:
    """Bytes asyncssh holds for ``chan`` that the client has not taken yet (0 once closed)."""
    try:
        return int(chan.get_write_buffer_size())
    except (AttributeError, OSError):
        return 0


class ChannelOutput:
    """A thread-safe writer for one channel stream (stdout or stderr).

    Writes from other threads are buffered and handed to asyncssh in one piece per loop
    iteration, so a stream of small ``print`` calls becomes a few large packets.
    """

    def __init__(self, chan: asyncssh.SSHServerChannel[str], loop: asyncio.AbstractEventLoop, *,
                 stderr: bool = False, terminal: bool = False, high_water: int = HIGH_WATER) -> None:
        self._chan = chan
        self._loop = loop
        self._datatype = asyncssh.EXTENDED_DATA_STDERR if stderr else None
        self._terminal = terminal
        self._high_water = high_water
        self._cond = threading.Condition()
        self._buffer: list[str] = []
        self._buffered = 0
        self._scheduled = False
        self._paused = False
        self.closed = False

    def write(self, text: str) -> None:
        """Write from any thread; worker threads wait while the client is not reading."""
        if self.closed or not text:
            return
        if self._terminal:
            text = text.replace("\r\n", "\n").replace("\n", "\r\n")
        if on_loop_thread(self._loop):
            self.flush()
            self._write_now(text)
            return
        with self._cond:
            self._wait_writable()
            if self.closed:
                return
            self._buffer.append(text)
            self._buffered += len(text)
            if self._scheduled:
                return
            self._scheduled = True
        try:
            self._loop.call_soon_threadsafe(self.flush)
        except RuntimeError:  # the loop has shut down; nobody is listening any more
            self.close()

    def wait_writable(self) -> None:
        """Block a worker thread while the client is behind (no-op on the loop thread).

        For writers that reach the channel through the loop (the REPL's terminal output),
        so they are throttled like :meth:`write` is.
        """
        if self.closed or on_loop_thread(self._loop):
            return
        with self._cond:
            self._wait_writable()

    def _wait_writable(self) -> None:
        """With ``_cond`` held: wait until there is room, the stream closed, or an interrupted
        command may overshoot. Short waits so an interrupt (an async exception) can land."""
        while not self.closed and (self._buffered > self._high_water or self._paused):
            if may_overshoot(self._buffered + unsent_bytes(self._chan)):
                return
            self._cond.wait(0.1)

    def flush(self) -> None:
        """Hand everything buffered to asyncssh now (on the loop thread)."""
        with self._cond:
            text = "".join(self._buffer)
            self._buffer.clear()
            self._buffered = 0
            self._scheduled = False
            self._cond.notify_all()
        if text:
            self._write_now(text)

    def _write_now(self, text: str) -> None:
        if self.closed:
            return
        try:
            self._chan.write(text, self._datatype)
        except (BrokenPipeError, OSError, asyncssh.Error):
            self.close()

    def pause(self) -> None:
        with self._cond:
            self._paused = True

    def resume(self) -> None:
        with self._cond:
            self._paused = False
            self._cond.notify_all()

    def close(self) -> None:
        """Drop further output and release waiting writers (the channel is gone)."""
        with self._cond:
            self.closed = True
            self._buffer.clear()
            self._buffered = 0
            self._cond.notify_all()


def wait_from_thread(future: concurrent.futures.Future[str]) -> str:
    """Block a worker thread on ``future`` in short slices, so an interrupt can land."""
    try:
        while True:
            try:
                return future.result(timeout=0.1)
            except concurrent.futures.TimeoutError:
                continue
    finally:
        future.cancel()


class ChannelInput:
    """What the client sent on a channel without a PTY: a script, or lines for ``input()``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *, limit: int = 16 * 1024 * 1024) -> None:
        self._loop = loop
        self._buffer: list[str] = []
        self._size = 0
        self._limit = limit
        self.eof = False
        self.overflow = False
        self._changed = asyncio.Event()

    def feed(self, data: str) -> None:
        if self._size + len(data) > self._limit:
            self.overflow = True
            self.eof = True
        else:
            self._buffer.append(data)
            self._size += len(data)
        self._changed.set()

    def feed_eof(self) -> None:
        self.eof = True
        self._changed.set()

    async def read_all(self) -> str:
        """Everything until EOF (a script sent on stdin)."""
        while not self.eof:
            self._changed.clear()
            await self._changed.wait()
        text = "".join(self._buffer)
        self._buffer.clear()
        self._size = 0
        return text

    async def readline(self) -> str:
        """One line including its newline; ``""`` at EOF."""
        while True:
            text = "".join(self._buffer)
            index = text.find("\n")
            if index >= 0 or self.eof:
                line, rest = (text[: index + 1], text[index + 1:]) if index >= 0 else (text, "")
                self._buffer[:] = [rest] if rest else []
                self._size = len(rest)
                return line
            self._changed.clear()
            await self._changed.wait()

    def readline_from_thread(self, prompt: str, write_prompt: Callable[[str], object]) -> str:
        """``SessionIO.readline`` for exec sessions: blocks the worker, never the loop."""
        if prompt:
            write_prompt(prompt)
        future = asyncio.run_coroutine_threadsafe(self.readline(), self._loop)
        line = wait_from_thread(future)
        if not line:
            raise EOFError("end of input (the client closed stdin)")
        return line
