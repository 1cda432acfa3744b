"""Interrupting the command a session's worker thread is running.

Pure-Python code is stopped with ``PyThreadState_SetAsyncExc`` (a ``KeyboardInterrupt``
raised in the worker thread at its next bytecode boundary). ``time.sleep`` and awaits on
the app loop block in C and would not see that exception until they return, so they
wait on the control's event instead (see :func:`install_sleep_hook` and
``bridge.LoopBridge``). Code blocked in other C calls sees the interrupt when the call
returns. Nothing here touches signal handlers.

Known blocking waits also give the command's scheduler slot away while they wait
(:class:`paused`), so a sleeping session does not hold up the others.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import ctypes
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .scheduler import Scheduler

__all__ = ["CommandControl", "current_control", "install_sleep_hook", "paused", "real_sleep"]

_raise_in_thread = ctypes.pythonapi.PyThreadState_SetAsyncExc
_raise_in_thread.argtypes = [ctypes.c_ulong, ctypes.py_object]
_raise_in_thread.restype = ctypes.c_int
# Never call it with NULL to "clear": on 3.11 that sets the interpreter-wide async-exc
# flag, which only a thread that really has a pending exception clears again - every
# thread's eval loop would then take the slow path for good. A pending interrupt is
# instead made to land where we choose (see CommandControl.finish/land).

# CPython remembers, in this process-wide flag, that a KeyboardInterrupt escaped code run
# by ``exec(str)``/``eval(str)`` (PyRun_String) - even one caught later - and when the flag
# is still set at exit, the process kills itself with SIGINT (exit status 130). An
# interrupt sent to a session's command must not change the host app's exit status.
try:
    _unhandled_interrupt: ctypes.c_int | None = ctypes.c_int.in_dll(ctypes.pythonapi, "_Py_UnhandledKeyboardInterrupt")
except ValueError:  # not exported by this interpreter build
    _unhandled_interrupt = None

_current: contextvars.ContextVar[CommandControl | None] = contextvars.ContextVar("shellsvc_control", default=None)

#: How long a spin loop may wait for a self-injected interrupt to land (iterations).
_LAND_SPINS = 1_000_000


def current_control() -> CommandControl | None:
    """The control of the command running in this context, if any."""
    return _current.get()


def _land_here() -> None:
    """Raise a KeyboardInterrupt injected into this very thread, from this frame."""
    _raise_in_thread(threading.get_ident(), KeyboardInterrupt)
    for _ in range(_LAND_SPINS):  # each backward jump checks for the pending exception
        pass


class CommandControl:
    """Interrupt state for the commands of one worker thread, one command at a time."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.thread_id: int | None = None
        self.running = False
        self.injected = False
        self.reason: str | None = None
        self.interrupted = threading.Event()
        # Held while a command runs; released by interrupt() to wake an interruptible
        # sleep with a plain C-level lock wait (no Python frames for the interrupt to land in).
        self.wakeup = threading.Lock()
        self.pending: concurrent.futures.Future[Any] | None = None
        #: The scheduler that gives this worker's commands their turn (set by the worker).
        self.scheduler: Scheduler | None = None
        #: Wakes whatever the worker waits on in the scheduler; called after an interrupt.
        self.on_interrupt: Callable[[], None] | None = None

    def bind_current_thread(self) -> None:
        """Called once by the worker thread that will run this control's commands."""
        self.thread_id = threading.get_ident()
        _current.set(self)

    def begin(self) -> None:
        with self.lock:
            self.running = True
            self.injected = False
            self.reason = None
            self.interrupted.clear()
            self.wakeup.acquire(blocking=False)

    def interrupt(self, reason: str = "interrupt") -> bool:
        """Ask the running command to stop; thread-safe. False when nothing was running.

        Calling it again re-sends the interrupt: on 3.11 a pending one can go unnoticed
        when another thread's interrupt lands at the same moment (the flag is shared).
        """
        with self.lock:
            if not self.running or self.thread_id is None:
                return False
            if self.reason is None:
                self.reason = reason
            _raise_in_thread(self.thread_id, KeyboardInterrupt)
            self.injected = True
            self.interrupted.set()
            if self.wakeup.locked():
                self.wakeup.release()
            pending = self.pending
            wake = self.on_interrupt
        if pending is not None:
            pending.cancel()
        if wake is not None:
            wake()
        return True

    def finish(self) -> None:
        """Mark the command finished; an interrupt still in flight lands here, harmlessly.

        Loops because the interrupt may land anywhere in this method; once ``running`` is
        False under the lock no new one can be sent.
        """
        while True:
            try:
                with self.lock:
                    self.running = False
                    injected, self.injected = self.injected, False
                if injected:
                    _land_here()
                break
            except KeyboardInterrupt:
                continue
        if self.reason is not None and _unhandled_interrupt is not None:
            _unhandled_interrupt.value = 0  # our interrupt, not the host's (see above)

    def land(self) -> None:
        """Raise the interrupt now, from a blocking wait that noticed it (sleep, await)."""
        with self.lock:
            self.injected = False
        _land_here()
        raise KeyboardInterrupt  # unreachable unless the spin somehow finished


class paused:
    """Around a known blocking wait in a worker thread: lend the scheduler slot to others.

    A no-op outside the worker's own thread (threads the session's code started share
    its context, hence its control).
    """

    __slots__ = ("_control",)

    def __init__(self, control: CommandControl | None) -> None:
        if control is not None and (control.scheduler is None or control.thread_id != threading.get_ident()):
            control = None
        self._control = control

    def __enter__(self) -> None:
        if self._control is not None:
            self._control.scheduler.pause(self._control)  # type: ignore[union-attr]

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._control is not None:
            self._control.scheduler.resume(self._control)  # type: ignore[union-attr]


#: The interpreter's own ``time.sleep`` (the hook below replaces the module attribute).
real_sleep = time.sleep
_sleep_hook_lock = threading.Lock()


def _interruptible_sleep(seconds: float) -> None:
    control = _current.get()
    if control is None or control.thread_id != threading.get_ident():
        return real_sleep(seconds)
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    with paused(control):
        woken = control.wakeup.acquire(True, min(seconds, threading.TIMEOUT_MAX))
    if woken:
        control.wakeup.release()
        control.land()
    return None


_interruptible_sleep.__doc__ = real_sleep.__doc__
_interruptible_sleep.__wrapped__ = real_sleep  # type: ignore[attr-defined]


def install_sleep_hook() -> None:
    """Make ``time.sleep`` in a session's worker thread interruptible (idempotent).

    Outside session worker threads the hook calls the real ``time.sleep`` unchanged.
    """
    with _sleep_hook_lock:
        if time.sleep is not _interruptible_sleep:
            time.sleep = _interruptible_sleep  # type: ignore[assignment]
