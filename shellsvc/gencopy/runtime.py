"""Helpers referenced by the code that :mod:`.compiler` generates.

The generated generator functions receive these objects as closure cells, so they are
looked up as fast ``LOAD_DEREF`` s.  Everything here runs only on the *re-entry* path (a
copy or unpickled generator finding its way back to its yield point) or once per
``yield from``, never per loop iteration.
"""

from __future__ import annotations

import itertools
import types
from typing import Any, AsyncIterator, Iterator

__all__ = [
    "RESTORE_MARK",
    "NO_EXCEPTION",
    "reentry_chain",
    "ReenteredContext",
    "ReenteredAsyncContext",
    "async_reentry_chain",
    "delegate_iter",
    "resumed_delegate",
    "JumpSignal",
    "ReturnSignal",
    "BreakSignal",
    "ContinueSignal",
    "HELPERS",
]


class _Sentinel:
    """A named singleton that survives copy and pickle as itself."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return f"<gencopy.{self._name}>"

    def __reduce__(self) -> str:
        return self._name

    def __copy__(self) -> "_Sentinel":
        return self

    def __deepcopy__(self, memo: dict) -> "_Sentinel":
        return self


#: Value yielded once by a re-entered generator; consumed by the restore code, never seen by users.
RESTORE_MARK = _Sentinel("RESTORE_MARK")
#: Pending-exception slot value of a ``finally`` block entered without an exception.
NO_EXCEPTION = _Sentinel("NO_EXCEPTION")


class JumpSignal(BaseException):
    """A ``return``/``break``/``continue`` travelling to a ``finally`` block that contains a yield.

    Generated code raises it in place of the jump and turns it back into the jump after the
    block ran; user code never sees it unless it catches ``BaseException`` (refused at
    decoration).  It pickles, so a generator suspended in that ``finally`` can be saved.
    """


class ReturnSignal(JumpSignal):
    """``return args[0]`` once the ``finally`` block has run."""


class BreakSignal(JumpSignal):
    """``break`` once the ``finally`` block has run."""


class ContinueSignal(JumpSignal):
    """``continue`` once the ``finally`` block has run."""


def reentry_chain(current: Any, iterator: Iterator[Any]) -> Iterator[Any]:
    """Iterate ``current`` first, then ``iterator``: re-enters a ``for`` body without advancing.

    ``current`` is the loop target's present value, so re-assigning it is a no-op.
    """
    return itertools.chain((current,), iterator)


class _AsyncReentryChain:
    def __init__(self, current: Any, iterator: AsyncIterator[Any]) -> None:
        self._current = current
        self._iterator = iterator
        self._first = True

    def __aiter__(self) -> "_AsyncReentryChain":
        return self

    async def __anext__(self) -> Any:
        if self._first:
            self._first = False
            return self._current
        return await self._iterator.__anext__()


class _EmptyAsyncIterator:
    """``async for`` over nothing: skips a loop the re-entry target lies behind."""

    def __aiter__(self) -> "_EmptyAsyncIterator":
        return self

    async def __anext__(self) -> Any:
        raise StopAsyncIteration


def async_reentry_chain(current: Any, iterator: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """The ``async for`` counterpart of :func:`reentry_chain`."""
    return _AsyncReentryChain(current, iterator)


class ReenteredContext:
    """Re-enters a ``with`` block: skips ``__enter__`` (already done), delegates ``__exit__``."""

    __slots__ = ("_manager", "_value")

    def __init__(self, manager: Any, value: Any = None) -> None:
        self._manager = manager
        self._value = value

    def __enter__(self) -> Any:
        return self._value

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        return type(self._manager).__exit__(self._manager, exc_type, exc, tb)


class ReenteredAsyncContext:
    """Re-enters an ``async with`` block (see :class:`ReenteredContext`)."""

    __slots__ = ("_manager", "_value")

    def __init__(self, manager: Any, value: Any = None) -> None:
        self._manager = manager
        self._value = value

    async def __aenter__(self) -> Any:
        return self._value

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        return await type(self._manager).__aexit__(self._manager, exc_type, exc, tb)


def delegate_iter(obj: Any) -> Iterator[Any]:
    """What ``yield from obj`` iterates (``GET_YIELD_FROM_ITER``): generators as themselves."""
    if isinstance(obj, types.GeneratorType):
        return obj
    return iter(obj)


def resumed_delegate(delegate: Iterator[Any]) -> Iterator[Any]:
    """What a restored ``yield from`` delegates to.

    A delegate restored *unprimed* (a resumable generator not yet started, see
    :mod:`.state`) is delegated to natively: its first step re-enters it and yields
    :data:`RESTORE_MARK`, which passes up to the restore code, and from then on the outer
    generator's ``gi_yieldfrom`` is that delegate, at native speed.  Any other (already
    suspended) iterator goes through :func:`_delegate_proxy`.
    """
    if isinstance(delegate, types.GeneratorType) and delegate.gi_frame is not None and not delegate.gi_suspended and not delegate.gi_running:
        return delegate
    return _delegate_proxy(delegate)


def _delegate_proxy(delegate: Iterator[Any]) -> Iterator[Any]:
    """Resume a ``yield from`` whose delegate is already suspended (PEP 380 expansion).

    Yields :data:`RESTORE_MARK` first (consumed by the restore code); afterwards the first
    value sent or exception thrown goes to the *suspended* delegate, unlike a fresh
    ``yield from`` which would start it with ``next()``.
    """
    try:
        sent = yield RESTORE_MARK
    except GeneratorExit as exc:
        _close_delegate(delegate)
        raise exc
    except BaseException as exc:  # noqa: BLE001 - forwarded to the delegate per PEP 380
        result = yield from _forward(delegate, None, exc)
        return result
    result = yield from _forward(delegate, sent, None)
    return result


def _close_delegate(delegate: Any) -> None:
    close = getattr(delegate, "close", None)
    if close is not None:
        close()


def _forward(delegate: Any, sent: Any, thrown: BaseException | None) -> Iterator[Any]:
    """PEP 380's ``RESULT = yield from EXPR`` loop, starting with a send or throw."""
    while True:
        try:
            if thrown is not None:
                throw = getattr(delegate, "throw", None)
                if throw is None:
                    raise thrown
                value = throw(thrown)
            elif sent is None:
                value = next(delegate)
            else:
                value = delegate.send(sent)
        except StopIteration as stop:
            return stop.value
        thrown = None
        try:
            sent = yield value
        except GeneratorExit as exc:
            _close_delegate(delegate)
            raise exc
        except BaseException as exc:  # noqa: BLE001 - forwarded to the delegate per PEP 380
            thrown = exc


#: Closure cells every generated function may reference, by the name used in generated code.
HELPERS: dict[str, Any] = {
    "_gc_MARK": RESTORE_MARK,
    "_gc_NOEXC": NO_EXCEPTION,
    "_gc_chain": reentry_chain,
    "_gc_achain": async_reentry_chain,
    "_gc_aempty": _EmptyAsyncIterator,
    "_gc_reenter_cm": ReenteredContext,
    "_gc_reenter_acm": ReenteredAsyncContext,
    "_gc_yf_iter": delegate_iter,
    "_gc_resumed": resumed_delegate,
    "_gc_Return": ReturnSignal,
    "_gc_Break": BreakSignal,
    "_gc_Continue": ContinueSignal,
}
