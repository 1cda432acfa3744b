"""Snapshot and restore generator state; the ``copy``/``pickle`` hooks for generator objects.

A snapshot is plain data::

    {"pc": 3, "label": "yield3", "locals": {...}, "hidden": {...}, "free": {...}}

``pc`` 0 means "not started", -1 "finished or closed".  ``locals`` are the user's
variables, ``hidden`` the compiler's slots the continuation needs (loop iterators, context
managers, delegates, caught exceptions), ``free`` the values of the function's closure
variables (restored generators get their own cells: closures are captured by value).
Restoring calls the function's *restore twin*, which re-enters the code and stops at the
yield point, ready for ``next``/``send``/``throw``/``close``.

Copy semantics: :func:`copy.copy` shares every object the generator's variables refer to
but gives the copy its own position, i.e. its own loop iterators and ``yield from``
delegates.  :func:`copy.deepcopy` copies everything.  A pickle refers to the function by
module and qualified name plus a hash of its source; it never contains code.
"""

from __future__ import annotations

import copy
import copyreg
import dis
import inspect
import logging
import types
from typing import Any

from .compiler import COUNTER, STATE_ARG
from .errors import GeneratorStateError, SourceChangedError
from .runtime import RESTORE_MARK
from .spec import GeneratorSpec, resolve_spec, spec_for_generator

__all__ = [
    "snapshot",
    "restore",
    "generator_state",
    "install_copy_hooks",
    "NOT_STARTED",
    "FINISHED",
]

logger = logging.getLogger(__name__)

_YIELD_VALUE = dis.opmap["YIELD_VALUE"]
NOT_STARTED = 0
FINISHED = -1
#: Hidden slot kinds whose objects carry the generator's *position*; copies get their own.
_POSITIONAL_SLOTS = ("_gc_it", "_gc_ait", "_gc_d")
#: Iterators whose shallow copy is a new iterator over the *same* sequence (their
#: ``__reduce__`` returns the sequence, or a fresh list of what is left, plus the index).
_SHALLOW_ITERATORS = frozenset(
    type(it)
    for it in (
        iter(range(0)),
        iter(range(1 << 64)),
        iter([]),
        iter(()),
        iter(""),
        iter(b""),
        iter(bytearray()),
        iter({}),
        iter({}.values()),
        iter({}.items()),
        reversed([]),
        reversed(range(0)),
    )
)


def generator_state(gen: Any) -> str:
    """``"created"``, ``"running"``, ``"suspended"`` or ``"closed"`` for (async) generators."""
    is_async = isinstance(gen, types.AsyncGeneratorType)
    frame = gen.ag_frame if is_async else gen.gi_frame
    running = gen.ag_running if is_async else gen.gi_running
    if running:
        return "running"
    if frame is None:
        return "closed"
    if is_async:
        if gen.ag_await is not None:
            return "running"
        at_yield = frame.f_code.co_code[frame.f_lasti] == _YIELD_VALUE
        return "suspended" if at_yield else "created"
    return "suspended" if gen.gi_suspended else "created"


def _require_spec(gen: Any, action: str) -> GeneratorSpec:
    spec = spec_for_generator(gen)
    if spec is None:
        name = getattr(gen, "__qualname__", type(gen).__name__)
        raise TypeError(
            f"cannot {action} generator {name!r}: it was not created by a @resumable function; "
            "decorate the generator function with shellsvc.gencopy.resumable, or convert this "
            "generator with shellsvc.gencopy.capture(gen)"
        )
    return spec


def snapshot(gen: Any) -> dict[str, Any]:
    """The state of a resumable generator as plain data (objects are *not* copied)."""
    return _snapshot(gen, _require_spec(gen, "snapshot"))[0]


_Mark = tuple[str, int, int]


def _snapshot(gen: Any, spec: GeneratorSpec) -> tuple[dict[str, Any], _Mark]:
    """The state, and a mark to check later that the generator has not moved since.

    The app may drive a generator on another thread while an admin copies it: the state
    is read in one step (one dict copy) and refused if the generator ran meanwhile.
    """
    status = generator_state(gen)
    name = f"{spec.module}.{spec.qualname}"
    if status == "running":
        raise GeneratorStateError(
            f"cannot snapshot generator {name}: it is running (or awaiting); snapshot it while it is suspended at a yield"
        )
    if status == "closed":
        return {"pc": FINISHED, "label": None, "locals": {}, "hidden": {}, "free": {}}, (status, -1, 0)
    frame = gen.ag_frame if spec.is_async else gen.gi_frame
    position = frame.f_lasti
    values = dict(frame.f_locals)  # one C call; f_locals itself is a dict the frame reuses
    mark = (status, position, values.get(COUNTER, 0))
    _check_unmoved(gen, spec, mark)
    free = {n: values[n] for n in spec.freevars if n in values}
    if status == "created" and STATE_ARG in values:
        values = values[STATE_ARG]  # an unstarted restored generator: its arguments are still in the mapping
    user_locals = {n: values[n] for n in spec.user_locals if n in values}
    if status == "created":
        return {"pc": NOT_STARTED, "label": None, "locals": user_locals, "hidden": {}, "free": free}, mark
    pc = values["_gc_pc"]
    point = spec.yield_points[pc]
    hidden = {n: values[n] for n in point.hidden if n in values}
    return {"pc": pc, "label": point.label, "locals": user_locals, "hidden": hidden, "free": free}, mark


def _check_unmoved(gen: Any, spec: GeneratorSpec, mark: _Mark) -> None:
    """Refuse a state read while the generator ran (it yields a counter, so a full loop shows too)."""
    status, position, count = mark
    if status == "closed":
        return
    frame = gen.ag_frame if spec.is_async else gen.gi_frame
    if generator_state(gen) == status and frame.f_lasti == position and frame.f_locals.get(COUNTER, 0) == count:
        return
    raise GeneratorStateError(
        f"cannot snapshot generator {spec.module}.{spec.qualname}: it ran while being read (is another thread "
        "driving it?); snapshot it from the thread that drives it, or while that thread leaves it alone"
    )


def restore(spec: GeneratorSpec, state: dict[str, Any], prime: bool = True) -> Any:
    """A new generator of ``spec``'s function, suspended where ``state`` says.

    ``prime=False`` leaves it unstarted: its first step re-enters and yields the restore
    mark (used for ``yield from`` delegates, see :class:`_UnprimedDelegate`).
    """
    pc = state["pc"]
    twin = spec.make_restore(state.get("free", {}))
    if pc == FINISHED:
        gen = twin({"_gc_pc": NOT_STARTED})
        if spec.is_async:
            _drive_async(gen.aclose(), spec)
        else:
            gen.close()
        return gen
    if pc != NOT_STARTED and pc not in spec.yield_points:
        raise GeneratorStateError(f"cannot restore {spec.module}.{spec.qualname}: it has no yield point {pc}")
    mapping = {**state["locals"], **state["hidden"], "_gc_pc": pc}
    started: dict[int, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, _UnprimedDelegate):
            if id(value) not in started:
                started[id(value)] = value.start()
            mapping[key] = started[id(value)]
    gen = twin(mapping)
    if pc == NOT_STARTED or not prime:
        return gen
    mark = _drive_async(gen.asend(None), spec) if spec.is_async else next(gen)
    if mark is not RESTORE_MARK:
        raise GeneratorStateError(
            f"restoring {spec.module}.{spec.qualname} at yield point {pc} did not stop at that point "
            "(the saved state does not match the code); this is a bug in shellsvc.gencopy"
        )
    return gen


def _drive_async(awaitable: Any, spec: GeneratorSpec) -> Any:
    """Run an ``asend``/``aclose`` awaitable that must finish without suspending."""
    try:
        awaitable.send(None)
    except StopIteration as stop:
        return stop.value
    except StopAsyncIteration:
        return None
    awaitable.close()
    raise GeneratorStateError(f"restoring {spec.module}.{spec.qualname} awaited something; this is a bug in shellsvc.gencopy")


class _UnprimedDelegate:
    """A ``yield from`` delegate generator, saved to be restored *unstarted*.

    The restored outer generator re-enters ``yield from`` with it; the first step then
    re-enters the delegate, so delegation continues natively (see
    :func:`.runtime.resumed_delegate`).  Reduces to the delegate's spec and state, so it
    copies and pickles like the generator it stands for.
    """

    __slots__ = ("spec", "state")

    def __init__(self, spec: GeneratorSpec | tuple[str, str, str], state: dict[str, Any]) -> None:
        self.spec = spec
        self.state = state

    def __reduce__(self) -> tuple[Any, ...]:
        return (_UnprimedDelegate, (self.spec, self.state))

    def start(self) -> Any:
        spec, state = _resolve(self.spec, self.state)
        return restore(spec, state, prime=False)


def _delegate_state(delegate: Any, name: str) -> _UnprimedDelegate:
    spec = spec_for_generator(delegate)
    if spec is None:
        from .capture import capture  # a native delegate: convert it (capture imports this module)

        try:
            delegate = capture(delegate)
        except GeneratorStateError as exc:
            raise GeneratorStateError(f"cannot copy generator {name}: its 'yield from' delegate cannot be captured: {exc}") from exc
        spec = spec_for_generator(delegate)
        assert spec is not None
    state, mark = _snapshot(delegate, spec)
    state = _detach(state, f"{spec.module}.{spec.qualname}")
    _check_unmoved(delegate, spec, mark)
    return _UnprimedDelegate(spec, state)


def _detach(state: dict[str, Any], name: str) -> dict[str, Any]:
    """Give ``state`` its own loop iterators and delegates while sharing everything else.

    Iterators are deep-copied with every object held in a user variable pre-seeded in the
    memo, so ``for x in items`` gets a new list iterator over the *same* ``items``.
    ``yield from`` delegates that are generators are saved as :class:`_UnprimedDelegate`.
    """
    positional = {k: v for k, v in state["hidden"].items() if k.startswith(_POSITIONAL_SLOTS)}
    if not positional:
        return state
    memo: dict[int, Any] | None = None
    copies: dict[int, Any] = {}
    hidden = dict(state["hidden"])
    for key, value in positional.items():
        if id(value) not in copies:
            try:
                if key.startswith("_gc_d") and isinstance(value, types.GeneratorType):
                    copies[id(value)] = _delegate_state(value, name)
                elif type(value) in _SHALLOW_ITERATORS or isinstance(value, (types.GeneratorType, types.AsyncGeneratorType)):
                    copies[id(value)] = copy.copy(value)  # a new iterator over the same sequence
                else:
                    if memo is None:
                        positional_ids = {id(v) for v in positional.values()}
                        shared = [*state["locals"].values(), *state.get("free", {}).values()]
                        memo = {id(v): v for v in shared if id(v) not in positional_ids}
                        memo[id(memo)] = [state]  # keep-alive list, as copy.deepcopy does
                    copies[id(value)] = copy.deepcopy(value, memo)
            except Exception as exc:
                raise GeneratorStateError(
                    f"cannot copy generator {name} at {state['label']}: its iterator {type(value).__name__!r} "
                    f"({key}) cannot be copied: {exc}"
                ) from exc
        hidden[key] = copies[id(value)]
    local_values = {k: copies.get(id(v), v) for k, v in state["locals"].items()}
    return {**state, "locals": local_values, "hidden": hidden}


def _reduce_generator(gen: Any, spec: GeneratorSpec) -> tuple[Any, ...]:
    state, mark = _snapshot(gen, spec)
    state = _detach(state, f"{spec.module}.{spec.qualname}")
    _check_unmoved(gen, spec, mark)  # its iterators were copied from a generator that had not moved
    return (_restore_from_reduce, (spec, state))


def _restore_from_reduce(spec_or_reference: GeneratorSpec | tuple[str, str, str], state: dict[str, Any]) -> Any:
    """Called by ``copy`` (with the spec) and by ``pickle`` (with its reference)."""
    return restore(*_resolve(spec_or_reference, state))


def _resolve(spec_or_reference: GeneratorSpec | tuple[str, str, str], state: dict[str, Any]) -> tuple[GeneratorSpec, dict[str, Any]]:
    """The spec a reduced generator refers to, and its state (migrated if the source changed)."""
    if isinstance(spec_or_reference, GeneratorSpec):
        return spec_or_reference, state
    module, qualname, source_hash = spec_or_reference
    spec = resolve_spec(module, qualname)
    if spec.source_hash != source_hash:
        state = _migrate(spec, state, source_hash)
    return spec, state


def _migrate(spec: GeneratorSpec, state: dict[str, Any], old_hash: str) -> dict[str, Any]:
    name = f"{spec.module}.{spec.qualname}"
    if spec.code_change is None:
        raise SourceChangedError(
            f"cannot load generator {name}: it was saved from source {old_hash}, the code now is "
            f"{spec.source_hash}; pass code_change=... to @resumable to migrate saved states"
        )
    old = {
        "label": state["label"],
        "pc": state["pc"],
        "locals": dict(state["locals"]),
        "hidden": dict(state["hidden"]),
        "free": dict(state.get("free", {})),
        "source_hash": old_hash,
    }
    new = spec.code_change(old)
    if not isinstance(new, dict) or "locals" not in new:
        raise SourceChangedError(f"code_change of {name} must return a state dict with 'label' and 'locals', got {new!r}")
    free = new.get("free", old["free"])
    if new.get("pc") in (NOT_STARTED, FINISHED) and new.get("label") is None:
        return {"pc": new["pc"], "label": None, "locals": new["locals"], "hidden": {}, "free": free}
    point = spec.by_label.get(new.get("label"))  # type: ignore[arg-type]
    if point is None:
        raise SourceChangedError(
            f"code_change of {name} returned label {new.get('label')!r}, which is not a yield label of the "
            f"current code (labels: {sorted(spec.by_label)})"
        )
    hidden = _rename_hidden(dict(new.get("hidden", {})), point.hidden, name)
    logger.info("migrated a saved %s from %s at %s to %s", name, old_hash, state["label"], point.label)
    return {"pc": point.index, "label": point.label, "locals": new["locals"], "hidden": hidden, "free": free}


def _slot_kind(slot: str) -> str:
    return slot[len("_gc_") :].rstrip("0123456789")


def _rename_hidden(hidden: dict[str, Any], wanted: tuple[str, ...], name: str) -> dict[str, Any]:
    """Match saved compiler slots to the new code's by kind and nesting order.

    Slot numbers shift when code before a yield gains or loses a loop, so a migrated state
    whose slots are the same kinds in the same order (outermost first) is renamed
    positionally; anything else must be rebuilt by ``code_change``.
    """
    if set(hidden) == set(wanted):
        return hidden
    if [_slot_kind(s) for s in hidden] == [_slot_kind(s) for s in wanted]:
        return dict(zip(wanted, hidden.values()))
    raise SourceChangedError(
        f"cannot migrate generator {name}: its saved compiler slots {list(hidden)} do not match the new "
        f"code's {list(wanted)} (loops, with/try blocks or yield from around the yield changed); "
        "build 'hidden' for the new slots in code_change"
    )


_installed = False
_previous: dict[type, Any] = {}


def _chained_reducer(kind: type) -> Any:
    def reducer(gen: Any) -> tuple[Any, ...]:
        spec = spec_for_generator(gen)
        if spec is None:
            if _previous.get(kind) is not None:
                return _previous[kind](gen)
            spec = _require_spec(gen, "copy or pickle")  # raises, saying how to make it copyable
        return _reduce_generator(gen, spec)

    reducer.__name__ = f"reduce_{kind.__name__}"
    return reducer


def install_copy_hooks() -> None:
    """Register generator reducers with :mod:`copyreg` (idempotent).

    Only generators created by compiled twins change behaviour; every other generator is
    still refused, with a message saying how to make it copyable.
    """
    global _installed
    if _installed:
        return
    for kind in (types.GeneratorType, types.AsyncGeneratorType):
        _previous[kind] = copyreg.dispatch_table.get(kind)
        copyreg.pickle(kind, _chained_reducer(kind))
    _installed = True


def is_resumable_generator(gen: Any) -> bool:
    """Whether ``gen`` can be copied/pickled by :mod:`shellsvc.gencopy`."""
    return (inspect.isgenerator(gen) or inspect.isasyncgen(gen)) and spec_for_generator(gen) is not None
