"""Fair time-slicing of session commands, so the app's event loop keeps its latency.

Why: every thread that runs Python competes with the app's loop thread for the GIL, and
CPython hands a released GIL to an arbitrary waiter only after ``sys.getswitchinterval()``
(5 ms). With N busy session threads the loop waits for several of those hand-offs each
time it wakes: p50 loop lag ≈ 5 ms with one busy session, p99 in the hundreds of ms with
16 (``benchmarks/bench_engine.py``; ≈ 0.5 ms and ≈ 5 ms with the scheduler).

The scheduler therefore lets at most ``slots`` commands execute Python at once (one by
default: the GIL runs one thread at a time anyway) and rotates them every ``quantum``
so every session progresses; the others wait on a lock, which costs the loop nothing.
While any command runs it also lowers the switch interval, so the one busy thread gives
the GIL back to the loop within ``switch_interval`` instead of 5 ms; the app's own
value is restored when the last command ends.

Rotation is cooperative. ``compiler`` puts a checkpoint - one attribute test,
``if __shellsvc_tick__.preempt: __shellsvc_tick__()`` - at the top of every loop body,
comprehension and function body typed into a session. Known blocking waits (``time.sleep``,
``await``, ``input()``) give the slot away while they wait. Code without checkpoints
(library loops, C calls) cannot be rotated out: when a command ignores a rotation request
for ``grace``, it loses its slot to the next waiting command (an eviction), so nothing
starves; it then runs unscheduled - competing for the GIL as if there were no
scheduler - until its next checkpoint or blocking wait, where it queues again.

Worker-side code here must survive an interrupt (an asynchronous ``KeyboardInterrupt``)
landing at any bytecode: locks are only taken with ``with`` on plain locks, and
:meth:`Scheduler.end` repairs whatever state an interrupted call left behind.
"""

from __future__ import annotations

import builtins
import contextvars
import logging
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .control import current_control, real_sleep

if TYPE_CHECKING:
    from .control import CommandControl

__all__ = ["Scheduler", "SchedulerStats", "CHECKPOINT_NAME", "install_checkpoint"]

log = logging.getLogger(__name__)

#: The name compiled cells use for their checkpoints. It lives in ``builtins`` so a
#: function typed into a session keeps working when its code is moved into an app module
#: (hot patching), whose globals know nothing of shellsvc.
CHECKPOINT_NAME = "__shellsvc_tick__"

#: How long an evicted command is nudged to queue again before it is left to itself
#: (a command stuck in C for good must not make every checkpoint call in for ever).
NUDGE_FOR = 1.0


class _Tick:
    """What ``__shellsvc_tick__`` is: a flag the checkpoints test, callable to yield."""

    __slots__ = ("preempt",)

    def __init__(self) -> None:
        #: True while some command has used up its quantum and another one waits.
        self.preempt = False

    def __call__(self) -> bool:
        control = current_control()
        if control is not None and control.scheduler is not None and control.thread_id == threading.get_ident():
            control.scheduler.checkpoint(control)
        return True

    def __repr__(self) -> str:
        return f"<shellsvc checkpoint preempt={self.preempt}>"


TICK = _Tick()


def install_checkpoint() -> None:
    """Make ``__shellsvc_tick__`` resolvable from any module (idempotent)."""
    if getattr(builtins, CHECKPOINT_NAME, None) is not TICK:
        setattr(builtins, CHECKPOINT_NAME, TICK)


class _Ticket:
    """One command waiting for a slot; ``lock`` is released to wake it (grant or interrupt)."""

    __slots__ = ("control", "lock", "granted", "woken")

    def __init__(self, control: CommandControl) -> None:
        self.control = control
        self.lock = threading.Lock()
        self.lock.acquire()
        self.granted = False
        self.woken = False


@dataclass(frozen=True)
class SchedulerStats:
    """Counters since the scheduler was created (for benchmarks and diagnostics)."""

    running: int
    waiting: int
    rotations: int
    evictions: int


class Scheduler:
    """Shares the GIL between session commands and the app's event loop.

    ``slots=None`` disables the slot limit and rotation; ``switch_interval=None`` leaves
    ``sys.setswitchinterval`` alone. One scheduler is normally shared by every engine in
    the process (:meth:`shared`), since they all share one GIL.
    """

    _shared: Scheduler | None = None
    _shared_lock = threading.Lock()

    def __init__(
        self,
        slots: int | None = 1,
        *,
        quantum: float = 0.02,
        grace: float = 0.05,
        switch_interval: float | None = 0.0002,
    ) -> None:
        if slots is not None and slots < 1:
            raise ValueError(f"Scheduler slots must be a positive number or None, not {slots!r}")
        if quantum <= 0 or grace <= 0:
            raise ValueError(f"Scheduler quantum and grace must be positive, not {quantum!r} and {grace!r}")
        if switch_interval is not None and switch_interval <= 0:
            raise ValueError(f"Scheduler switch_interval must be positive seconds or None, not {switch_interval!r}")
        self.slots = slots
        self.quantum = quantum
        self.grace = grace
        self.switch_interval = switch_interval
        self._lock = threading.Lock()
        self._active: set[CommandControl] = set()
        self._running: dict[CommandControl, float] = {}
        self._queue: deque[_Ticket] = deque()
        self._evicted: dict[CommandControl, float] = {}
        self._saved_interval: float | None = None
        self._set_interval: float | None = None
        self._rotations = 0
        self._evictions = 0
        self._doorbell = threading.Lock()
        self._doorbell.acquire()
        self._ticker: threading.Thread | None = None
        if slots is not None:
            self._ticker = threading.Thread(target=self._tick_main, name="shellsvc-scheduler", daemon=True)
            contextvars.Context().run(self._ticker.start)  # no session's context, even if made in one

    @classmethod
    def shared(cls) -> Scheduler:
        """The process-wide scheduler engines use unless given their own."""
        with cls._shared_lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    @property
    def enabled(self) -> bool:
        return self.slots is not None

    def stats(self) -> SchedulerStats:
        with self._lock:
            return SchedulerStats(len(self._running), len(self._queue), self._rotations, self._evictions)

    # -- worker side ----------------------------------------------------------------------
    def begin(self, control: CommandControl) -> None:
        """A command starts in ``control``'s thread: wait for a slot (interruptible)."""
        with self._lock:
            self._active.add(control)
            if self.switch_interval is not None and self._saved_interval is None:
                current = sys.getswitchinterval()
                self._saved_interval = current
                self._set_interval = min(current, self.switch_interval)
                sys.setswitchinterval(self._set_interval)
        self._acquire(control)

    def end(self, control: CommandControl) -> None:
        """The command is over (or its worker abandoned): free everything it held. Idempotent."""
        with self._lock:
            self._active.discard(control)
            self._running.pop(control, None)
            self._evicted.pop(control, None)
            for ticket in [t for t in self._queue if t.control is control]:
                self._queue.remove(ticket)
                self._wake_locked(ticket)
            self._grant_waiting()
            if not self._active and self._saved_interval is not None:
                # Restore unless the app chose another value meanwhile (µs resolution).
                if self._set_interval is not None and abs(sys.getswitchinterval() - self._set_interval) < 1e-6:
                    sys.setswitchinterval(self._saved_interval)
                self._saved_interval = self._set_interval = None

    def pause(self, control: CommandControl) -> None:
        """``control``'s thread starts a known blocking wait: let another command run."""
        if self.slots is None:
            return
        with self._lock:
            self._evicted.pop(control, None)
            if self._running.pop(control, None) is not None:
                self._grant_waiting()

    def resume(self, control: CommandControl) -> None:
        """The blocking wait is over: take a slot again before running more Python."""
        self._acquire(control)

    def checkpoint(self, control: CommandControl) -> None:
        """Called from a compiled checkpoint: give the slot away if the quantum is used up."""
        if self.slots is None:
            return
        with self._lock:
            since = self._running.get(control)
            if since is None:
                # Evicted, or an interrupt landed inside resume(): take a slot again.
                if control not in self._active:
                    return
                self._evicted.pop(control, None)
                if self._has_room():
                    self._running[control] = time.monotonic()
                    return
                ticket = self._enqueue(control)
            elif not self._queue or time.monotonic() - since < self.quantum:
                return
            else:
                del self._running[control]
                self._rotations += 1
                self._grant_waiting()
                ticket = self._enqueue(control)
        self._wait(control, ticket)

    def _acquire(self, control: CommandControl) -> None:
        if self.slots is None:
            return
        if control.interrupted.is_set():
            control.land()
        with self._lock:
            self._evicted.pop(control, None)
            if control in self._running:
                return
            if self._has_room():
                self._running[control] = time.monotonic()
                return
            ticket = self._enqueue(control)
        self._wait(control, ticket)

    def _wait(self, control: CommandControl, ticket: _Ticket) -> None:
        control.on_interrupt = lambda: self._wake(ticket)
        if control.interrupted.is_set():
            self._wake(ticket)
        # Woken by a grant or by an interrupt; the timeout only guards against a lost wake-up.
        while not ticket.lock.acquire(timeout=1.0):
            if ticket.granted or control.interrupted.is_set():
                break
        control.on_interrupt = None
        if not ticket.granted:
            control.land()

    # -- bookkeeping (called with self._lock held) ----------------------------------------
    def _has_room(self) -> bool:
        return self.slots is None or (len(self._running) < self.slots and not self._queue)

    def _enqueue(self, control: CommandControl) -> _Ticket:
        ticket = _Ticket(control)
        self._queue.append(ticket)
        self._ring()
        return ticket

    def _grant(self, ticket: _Ticket, now: float) -> None:
        ticket.granted = True
        self._running[ticket.control] = now
        self._wake_locked(ticket)

    def _grant_waiting(self) -> None:
        TICK.preempt = bool(self._evicted)
        now = time.monotonic()
        while self._queue and self.slots is not None and len(self._running) < self.slots:
            self._grant(self._queue.popleft(), now)

    def _wake(self, ticket: _Ticket) -> None:
        with self._lock:
            self._wake_locked(ticket)

    @staticmethod
    def _wake_locked(ticket: _Ticket) -> None:
        if not ticket.woken:
            ticket.woken = True
            ticket.lock.release()

    # -- the ticker: asks holders to rotate, evicts holders that do not --------------------
    def _ring(self) -> None:
        if self._doorbell.locked():
            self._doorbell.release()

    def _tick_main(self) -> None:
        while True:
            with self._lock:
                wait = self._tick(time.monotonic())
            if wait is None:
                self._doorbell.acquire()  # released by the next _enqueue
            else:
                real_sleep(wait)

    def _tick(self, now: float) -> float | None:
        """One scheduling decision; returns how long to sleep (None: until work arrives)."""
        for control in [c for c, at in self._evicted.items() if now - at > NUDGE_FOR]:
            del self._evicted[control]  # stop asking it to queue again: it may never return
        # Evicted commands queue again at their next checkpoint.
        preempt = bool(self._evicted)
        wait = self.quantum if self._evicted else None
        if self._queue:
            if not self._running:
                self._grant_waiting()
                return self.quantum
            control, since = min(self._running.items(), key=lambda item: item[1])
            used = now - since
            if used < self.quantum:
                wait = min(wait or self.quantum, self.quantum - used)
            elif used < self.quantum + self.grace:
                preempt = True
                wait = min(self.quantum + self.grace - used, self.quantum / 4)
            else:
                # The holder ignored the request: blocked in C, or code without checkpoints.
                self._evictions += 1
                del self._running[control]
                self._evicted[control] = now
                self._grant(self._queue.popleft(), now)
                preempt, wait = True, self.quantum
                log.debug("scheduler: a command ignored rotation for %.0f ms; it runs unscheduled until "
                          "its next checkpoint", used * 1000)
        TICK.preempt = preempt
        return wait

    def __repr__(self) -> str:
        return (f"<Scheduler slots={self.slots} quantum={self.quantum * 1000:.0f}ms "
                f"switch_interval={self.switch_interval}>")
