"""Per-session stdout, stderr and stdin without swapping the process-wide streams.

``install()`` puts one transparent proxy in ``sys.stdout``/``sys.stderr``/``sys.stdin``.
Each proxy looks up the :class:`SessionIO` held in a ContextVar: code running for a
session (its worker thread, tasks it starts on the app loop, threads it starts) writes
to that session; everything else - the app's own threads - falls through to the stream
that was there before, unchanged.
"""

from __future__ import annotations

import concurrent.futures.thread
import contextvars
import functools
import io
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from .control import current_control, paused

__all__ = ["SessionIO", "current_io", "install", "use_io"]

Writer = Callable[[str], object]


def _no_input(prompt: str) -> str:
    raise EOFError("this session has no input stream (non-interactive)")


@dataclass(eq=False)
class SessionIO:
    """Where one session's standard streams go.

    ``write_out``/``write_err`` are called from whatever thread prints, so they must
    be thread-safe. ``readline`` is called from the session's worker thread and may
    block until the user answers; it raises :class:`EOFError` when there is no input.
    """

    write_out: Writer
    write_err: Writer
    readline: Callable[[str], str] = field(default=_no_input)

    def redirect(self, write_out: Writer, write_err: Writer, readline: Callable[[str], str] | None = None) -> None:
        """Point this session's streams somewhere else (a front end taking over).

        Changed in place, so threads and tasks the session already started follow too.
        """
        self.write_out = write_out
        self.write_err = write_err
        self.readline = readline or _no_input


_current: contextvars.ContextVar[SessionIO | None] = contextvars.ContextVar("shellsvc_io", default=None)


def current_io() -> SessionIO | None:
    """The session whose code is running in this context, if any."""
    return _current.get()


class use_io:
    """Context manager routing this context's standard streams to ``sio``."""

    def __init__(self, sio: SessionIO) -> None:
        self._sio = sio
        self._token: contextvars.Token[SessionIO | None] | None = None

    def __enter__(self) -> SessionIO:
        self._token = _current.set(self._sio)
        return self._sio

    def __exit__(self, *exc: object) -> None:
        assert self._token is not None
        _current.reset(self._token)


class _RoutedStream(io.TextIOBase):
    """What a routed standard stream does the same whether it reads or writes: inside a
    session it is a terminal-less text stream; outside one, the application's own stream."""

    def __init__(self, fallback: TextIO) -> None:
        self.fallback = fallback

    def isatty(self) -> bool:
        return False if _current.get() is not None else self.fallback.isatty()

    def fileno(self) -> int:
        if _current.get() is not None:
            raise io.UnsupportedOperation("a shellsvc session stream has no file descriptor")
        return self.fallback.fileno()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.fallback, name)


class _RoutedOutput(_RoutedStream):
    """``sys.stdout``/``sys.stderr`` stand-in that writes to the current session."""

    def __init__(self, name: str, fallback: TextIO) -> None:
        super().__init__(fallback)
        self._name = name

    def _target(self) -> Writer | None:
        sio = _current.get()
        if sio is None:
            return None
        return sio.write_out if self._name == "stdout" else sio.write_err

    def write(self, text: str) -> int:  # type: ignore[override]
        target = self._target()
        if target is None:
            return self.fallback.write(text)
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        target(text)
        return len(text)

    def writelines(self, lines: Any) -> None:  # type: ignore[override]
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if _current.get() is None:
            self.fallback.flush()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8" if _current.get() is not None else getattr(self.fallback, "encoding", "utf-8")

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return "strict" if _current.get() is not None else getattr(self.fallback, "errors", None)


class _RoutedInput(_RoutedStream):
    """``sys.stdin`` stand-in: a session's ``input()`` asks that session's user."""

    def readline(self, size: int | None = -1) -> str:  # type: ignore[override]
        sio = _current.get()
        if sio is None:
            return self.fallback.readline() if size in (None, -1) else self.fallback.readline(size)
        with paused(current_control()):
            line = sio.readline("")
        return line if line.endswith("\n") else line + "\n"

    def read(self, size: int | None = -1) -> str:  # type: ignore[override]
        if _current.get() is None:
            return self.fallback.read() if size in (None, -1) else self.fallback.read(size)
        return self.readline()

    def close(self) -> None:
        # site.Quitter (``exit()``) closes sys.stdin before raising SystemExit: that must
        # end the session, never close the application's real stdin.
        if _current.get() is None:
            self.fallback.close()

    def readable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.fallback, "encoding", "utf-8")


_install_lock = threading.Lock()
_thread_hook_installed = False


def install() -> None:
    """Put the routing proxies in place (idempotent; cheap enough to call per command).

    If something replaced ``sys.stdout`` since the last call (a test harness, the app
    itself), the proxy is re-installed over the new stream, which becomes its fallback.
    """
    with _install_lock:
        if not isinstance(sys.stdout, _RoutedOutput):
            sys.stdout = _RoutedOutput("stdout", sys.stdout)  # type: ignore[assignment]
        if not isinstance(sys.stderr, _RoutedOutput):
            sys.stderr = _RoutedOutput("stderr", sys.stderr)  # type: ignore[assignment]
        if not isinstance(sys.stdin, _RoutedInput):
            sys.stdin = _RoutedInput(sys.stdin)  # type: ignore[assignment]
        _install_thread_hook()
        _install_pager_hook()


def _install_thread_hook() -> None:
    """Make threads and pool work started from session code inherit the session's context.

    On 3.11 a new thread starts with an empty context, so without this a thread that
    session code starts would print to the server's console. Threads the app starts
    outside any session are untouched: the hooks only act when a session is current.
    A thread pool's worker threads are shared and outlive the session that happened to
    create them, so they never inherit it; instead each work item submitted from session
    code (``loop.run_in_executor`` …) runs in that session's context.
    """
    global _thread_hook_installed
    if _thread_hook_installed:
        return
    original_start = threading.Thread.start
    pool_worker = getattr(concurrent.futures.thread, "_worker", None)

    def start(self: threading.Thread) -> None:
        if _current.get() is not None and getattr(self, "_target", None) is not pool_worker:
            context = contextvars.copy_context()
            run = self.run
            self.run = lambda: context.run(run)  # type: ignore[method-assign]
        original_start(self)

    original_submit = concurrent.futures.ThreadPoolExecutor.submit

    def submit(self: concurrent.futures.ThreadPoolExecutor, fn: Callable[..., Any], /,
               *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        if _current.get() is not None:
            fn = functools.partial(contextvars.copy_context().run, fn)
        return original_submit(self, fn, *args, **kwargs)

    start.__wrapped__ = original_start  # type: ignore[attr-defined]
    submit.__wrapped__ = original_submit  # type: ignore[attr-defined]
    threading.Thread.start = start  # type: ignore[method-assign]
    concurrent.futures.ThreadPoolExecutor.submit = submit  # type: ignore[method-assign,assignment]
    _thread_hook_installed = True


_pager_hook_installed = False


def _install_pager_hook() -> None:
    """Make ``help()`` page into the session, not into a pager on the server's terminal.

    ``pydoc.pager`` picks a pager on first use and caches it: if the app's terminal got
    ``less`` first, a session's ``help()`` would run ``less`` on the server's tty. The
    hook writes plainly (to the session's stdout) while a session is current and keeps
    pydoc's own choice, made lazily as before, for everyone else.
    """
    global _pager_hook_installed
    if _pager_hook_installed:
        return
    import pydoc

    chosen: list[Callable[[str], None]] = []

    def pager(text: str) -> None:
        if _current.get() is not None:
            pydoc.plainpager(text)
            return
        if not chosen:
            chosen.append(pydoc.getpager())
        chosen[0](text)

    pager.__wrapped__ = pydoc.pager  # type: ignore[attr-defined]
    pydoc.pager = pager
    _pager_hook_installed = True
