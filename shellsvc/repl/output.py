"""Session output for a prompt_toolkit terminal, from any thread, above the prompt.

Writes are buffered under a lock and flushed on the event loop only (asyncssh channels
and prompt_toolkit outputs are not thread-safe). While an application is running in the
terminal's app session, text is printed above it with ``run_in_terminal``. A writer that
is not on the loop blocks while too much is buffered, so an output flood is throttled
to what the terminal drains instead of filling memory.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading

from prompt_toolkit.application import run_in_terminal
from prompt_toolkit.application.current import AppSession, get_app_session

from shellsvc.engine.bridge import on_loop_thread

__all__ = ["TerminalSink"]

MAX_BUFFERED = 256 * 1024
#: Minimum time between two repaints of a running application, to bundle a flood.
REPAINT_INTERVAL = 0.02
#: How long a line without its newline waits before it is written anyway.
PARTIAL_LINE_DELAY = 0.1


class TerminalSink:
    """A thread-safe ``write(text)`` that prints to one app session's terminal."""

    def __init__(self, loop: asyncio.AbstractEventLoop, app_session: AppSession | None = None) -> None:
        self.loop = loop
        self.app_session = app_session or get_app_session()
        self._lock = threading.Lock()
        self._drained = threading.Condition(self._lock)
        self._buffer: list[str] = []
        self._size = 0
        self._scheduled = False
        self._last_repaint = 0.0
        self.closed = False
        # Flushes run in this context: run_in_terminal must see the terminal's app
        # session, not the context of whichever thread printed.
        self._context = contextvars.copy_context()

    def write(self, text: str) -> None:
        if not text or self.closed:
            return
        on_loop = on_loop_thread(self.loop)
        with self._lock:
            if not on_loop:
                while self._size > MAX_BUFFERED and not self.closed:
                    self._drained.wait(0.05)
            self._buffer.append(text)
            self._size += len(text)
            if self._scheduled:
                return
            self._scheduled = True
        if on_loop:
            self.loop.call_soon(self._flush, context=self._context)
        else:
            try:
                self.loop.call_soon_threadsafe(self._flush, context=self._context)
            except RuntimeError:  # loop closed: nobody is left to read it
                self.closed = True

    def take_partial_line(self) -> str:
        """Remove and return buffered text after the last newline (an ``input()`` prompt)."""
        with self._lock:
            text = "".join(self._buffer)
            head, sep, tail = text.rpartition("\n")
            self._buffer = [head + sep] if sep else []
            self._size = len(head) + len(sep)
            return tail

    def flush_now(self) -> None:
        """Flush from the loop thread (e.g. when a command finished), partial lines too."""
        self._flush(partial=True)

    def close(self) -> None:
        with self._lock:
            self.closed = True
            self._drained.notify_all()

    def _flush(self, partial: bool = False) -> None:
        """Write what is buffered (on the loop). A trailing partial line is held back
        briefly - a repaint would overwrite it, and ``input()`` wants it as its prompt -
        unless ``partial`` is set."""
        app = self.app_session.app
        running = app is not None and app.is_running
        if running and not partial:
            wait = self._last_repaint + REPAINT_INTERVAL - self.loop.time()
            if wait > 0:
                self.loop.call_later(wait, self._flush)
                return
        with self._lock:
            text = "".join(self._buffer)
            rest = ""
            if not partial:
                text, sep, rest = text.rpartition("\n")
                text += sep
            self._buffer = [rest] if rest else []
            self._size = len(rest)
            self._scheduled = bool(rest)
            self._drained.notify_all()
        if rest:
            self.loop.call_later(PARTIAL_LINE_DELAY, self._flush, True)
        if text:
            self._emit(text)

    def _emit(self, text: str) -> None:
        output = self.app_session.output

        def write() -> None:
            output.enable_autowrap()
            output.write_raw(text)
            output.flush()

        app = self.app_session.app
        if app is not None and app.is_running:
            self._last_repaint = self.loop.time()
            run_in_terminal(write, in_executor=False)
        else:
            write()

