"""One user's execution session: a worker thread that runs cells in that user's namespace."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import streams
from .compiler import AITER_NAME, AWAIT_NAME, AWITH_NAME, compile_cell
from .control import CommandControl, install_sleep_hook
from .identity import current_user
from .scheduler import CHECKPOINT_NAME, TICK, install_checkpoint
from .streams import SessionIO
from .tracebacks import format_user_exception

if TYPE_CHECKING:
    from .engine import Engine

__all__ = ["ExecSession", "Outcome", "SessionClosedError"]

log = logging.getLogger(__name__)

_session_ids = itertools.count(1)

#: How long an interrupted command may take to stop before its worker is abandoned.
INTERRUPT_GRACE = 2.0


class SessionClosedError(RuntimeError):
    """Raised when code is sent to a session that has ended."""


@dataclass
class Outcome:
    """What running one cell did."""

    status: str  # "ok" | "error" | "exit" | "interrupted" | "timeout"
    exit_code: int = 0
    error: str | None = None
    duration: float = 0.0
    value_repr: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(eq=False)
class _Job:
    source: str
    future: asyncio.Future[Outcome]
    started: float = field(default_factory=time.perf_counter)
    #: Set by an interrupt that arrives before the worker picked the job up.
    cancelled: str | None = None
    #: Whether a watchdog waits for this interrupted job to stop.
    watched: bool = False


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF if code >= 0 else 1
    return 1


class _Worker:
    """A thread that runs one session's cells, one at a time.

    Long-lived so thread-bound objects (sqlite connections, thread-locals) survive
    between a user's commands; replaced only if an interrupted command will not stop.
    """

    def __init__(self, session: ExecSession) -> None:
        self.session = session
        self.control = CommandControl()
        self.control.scheduler = session.engine.scheduler
        self.jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self.thread = threading.Thread(
            target=self._main, name=f"shellsvc-{session.user}-{session.id}", daemon=True
        )
        self.thread.start()

    def _main(self) -> None:
        self.control.bind_current_thread()
        streams._current.set(self.session.io)
        current_user.set(self.session.user)  # e.g. the patch journal records who patched
        while True:
            job = self.jobs.get()
            if job is None:
                return
            try:
                outcome = self.session._execute(job, self.control)
            except KeyboardInterrupt:
                # Cannot happen by design (_execute lands every interrupt itself); be safe.
                self.session.io.write_err("KeyboardInterrupt\n")
                outcome = Outcome("interrupted", 1, error="KeyboardInterrupt\n")
            except BaseException as exc:  # noqa: BLE001 - an engine bug must not hang the caller
                log.exception("session %s: internal error running a command", self.session.label)
                outcome = Outcome("error", 1, error=f"shellsvc internal error: {exc!r}\n")
            self.control.finish()
            self.session.engine.scheduler.end(self.control)
            outcome.duration = time.perf_counter() - job.started
            self.session._deliver(job.future, outcome)


class ExecSession:
    """Runs a user's cells off the event loop, with their own output and interrupt.

    Sessions of one user share that user's namespace. Use :meth:`Engine.open_session`.
    """

    def __init__(self, engine: Engine, user: str, io: SessionIO, label: str = "") -> None:
        self.engine = engine
        self.user = user
        self.io = io
        self.id = next(_session_ids)
        self.label = label or f"{user}#{self.id}"
        self.namespace: dict[str, Any] = engine.namespaces.get(user)
        self.closed = False
        self.exit_code: int | None = None
        self.started_at = time.time()
        self.current_source: str | None = None
        self._worker: _Worker | None = None
        self._job: _Job | None = None
        self._lock = asyncio.Lock()

    # -- public API ---------------------------------------------------------------------
    async def run(self, source: str, *, timeout: float | None = None) -> Outcome:
        """Run one complete cell; returns when it finished, was interrupted or timed out."""
        if self.closed:
            raise SessionClosedError(f"session {self.label} has ended; open a new one")
        async with self._lock:
            # The job exists (and the session is busy) while it waits for an engine slot,
            # so an interrupt then marks it cancelled and the worker stops it at once.
            future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
            self.current_source = source
            job = self._job = _Job(source, future)
            try:
                async with self._slot():
                    streams.install()
                    install_sleep_hook()
                    install_checkpoint()
                    worker = self._worker
                    if worker is None or not worker.thread.is_alive():
                        worker = self._worker = _Worker(self)
                    worker.jobs.put(job)
                    try:
                        return await asyncio.wait_for(asyncio.shield(future), timeout)
                    except TimeoutError:
                        self._interrupt(worker, "timeout")
                        return await future  # settled by the command or by the watchdog
                    except asyncio.CancelledError:
                        self._interrupt(worker, "cancelled")
                        raise
            finally:
                self.current_source = None
                self._job = None
                if self.exit_code is not None:
                    self.closed = True

    def _slot(self) -> contextlib.AbstractAsyncContextManager[object]:
        slots = self.engine.slots
        return slots if slots is not None else contextlib.nullcontext()

    def interrupt(self) -> bool:
        """Interrupt the running (or queued) command; thread-safe. False when idle."""
        return self._interrupt(self._worker, "interrupt")

    def _interrupt(self, worker: _Worker | None, reason: str) -> bool:
        job = self._job
        if job is not None and job.cancelled is None:
            job.cancelled = reason  # in case the worker has not picked it up yet
        if worker is not None and worker.control.interrupt(reason):
            self.engine.loop.call_soon_threadsafe(self._resend, worker, 1)
            if job is not None and not job.watched:
                job.watched = True
                self.engine.loop.call_soon_threadsafe(self._watch, worker, job)
            return True
        return job is not None

    def _watch(self, worker: _Worker, job: _Job) -> None:
        self.engine.loop.call_later(INTERRUPT_GRACE, self._abandon_if_stuck, worker, job)

    def _abandon_if_stuck(self, worker: _Worker, job: _Job) -> None:
        """The interrupted command did not stop (blocked in C): give the session a fresh worker.

        The old thread keeps its pending interrupt and ends when its C call returns.
        """
        if job.future.done():
            return
        reason = worker.control.reason or "interrupt"
        log.warning("session %s: command did not stop within %.1fs of %s; abandoning its worker thread",
                    self.label, INTERRUPT_GRACE, reason)
        self._retire(worker)
        status = "timeout" if reason == "timeout" else "interrupted"
        text = (f"{'TimeoutError: command timed out' if status == 'timeout' else 'KeyboardInterrupt'}"
                " - the command is blocked in C code and still runs in a background thread;"
                " the session continues in a fresh thread\n")
        self.io.write_err(text)
        job.future.set_result(Outcome(status, 1, error=text, duration=time.perf_counter() - job.started))

    def _resend(self, worker: _Worker, attempt: int) -> None:
        """Re-send an interrupt that has not stopped the command yet (see CommandControl.interrupt)."""
        control = worker.control
        if attempt > 1 and not (control.running and control.interrupted.is_set()):
            return
        if attempt > 1:
            control.interrupt()
        if attempt < 100:
            self.engine.loop.call_later(0.05, self._resend, worker, attempt + 1)

    @property
    def busy(self) -> bool:
        return self.current_source is not None

    async def close(self) -> None:
        """End the session: interrupt what runs and let the worker thread exit."""
        self.closed = True
        worker, self._worker = self._worker, None
        if worker is not None:
            self._interrupt(worker, "closed")
            self._retire(worker)
        self.engine._forget(self)

    def _retire(self, worker: _Worker) -> None:
        """Let ``worker``'s thread exit once its command is over, and free its scheduler slot now.

        Now, not when the thread ends: a command stuck in C may never end, and if the loop
        closes before the watchdog fires nobody else would free the slot.
        """
        worker.jobs.put(None)
        if self._worker is worker:
            self._worker = None
        self.engine.scheduler.end(worker.control)

    # -- worker side ----------------------------------------------------------------------
    def _execute(self, job: _Job, control: CommandControl) -> Outcome:
        """Run the job's source in the worker thread; never raises except a late interrupt."""
        source = job.source
        namespace = self.namespace
        bridge = self.engine.bridge
        namespace[AWAIT_NAME] = bridge.await_
        namespace[AITER_NAME] = bridge.aiter
        namespace[AWITH_NAME] = bridge.awith
        # Also in builtins (for code moved elsewhere); here, top-level loops find it with
        # their first, unspecialised name lookup instead of their third.
        namespace[CHECKPOINT_NAME] = TICK
        try:
            try:
                control.begin()
                if job.cancelled:  # interrupted before the worker picked it up
                    control.interrupt(job.cancelled)
                self.engine.scheduler.begin(control)
                cell = compile_cell(source, label=self.label, checkpoints=self.engine.scheduler.enabled)
                if cell.body is not None:
                    exec(cell.body, namespace)
                value_repr = None
                if cell.last_expr is not None:
                    value = eval(cell.last_expr, namespace)
                    if value is not None:
                        namespace["_"] = value
                        value_repr = repr(value)
                        self.io.write_out(value_repr + "\n")
            finally:
                control.finish()
        except SystemExit as exc:
            code = _exit_code(exc.code)
            if exc.code is not None and not isinstance(exc.code, int):
                self.io.write_err(f"{exc.code}\n")
            self.exit_code = code
            return Outcome("exit", code)
        except KeyboardInterrupt as exc:
            status = "timeout" if control.reason == "timeout" else "interrupted"
            text = "TimeoutError: command timed out\n" if status == "timeout" else format_user_exception(exc)
            self.io.write_err(text)
            return Outcome(status, 1, error=text)
        except BaseException as exc:  # noqa: BLE001 - the user's error is reported, not raised
            text = format_user_exception(exc)
            self.io.write_err(text)
            return Outcome("error", 1, error=text)
        return Outcome("ok", 0, value_repr=value_repr)

    def _deliver(self, future: asyncio.Future[Outcome], outcome: Outcome) -> None:
        loop = self.engine.loop

        def settle() -> None:
            if not future.done():
                future.set_result(outcome)

        try:
            loop.call_soon_threadsafe(settle)
        except RuntimeError:
            log.warning("session %s finished a command after the event loop closed", self.label)

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("busy" if self.busy else "idle")
        return f"<ExecSession {self.label} {state}>"


OutputCallback = Callable[[str], object]
