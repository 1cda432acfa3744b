"""Snapshot and restore generator state; the ``copy``/``pickle`` hooks for generator objects.

A snapshot is plain data::

    {"pc": 3, "label": "yield3", "locals": {...}, "hidden": {...}}

``pc`` 0 means "not started", -1 "finished or closed".  ``locals`` are the user's
variables, ``hidden`` the compiler's slots the continuation needs (loop iterators, context
managers, delegates, caught exceptions).  Restoring calls the function's *restore twin*,
which re-enters the code and stops at the yield point, ready for ``next``/``send``/
``throw``/``close``.

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
    spec = _require_spec(gen, "snapshot")
    status = generator_state(gen)
    name = f"{spec.module}.{spec.qualname}"
    if status == "running":
        raise GeneratorStateError(
            f"cannot snapshot generator {name}: it is running (or awaiting); snapshot it while it is suspended at a yield"
        )
    if status == "closed":
        return {"pc": FINISHED, "label": None, "locals": {}, "hidden": {}}
    frame = gen.ag_frame if spec.is_async else gen.gi_frame
    values = frame.f_locals
    if status == "created":
        return {"pc": NOT_STARTED, "label": None, "locals": {n: values[n] for n in spec.user_locals if n in values}, "hidden": {}}
    pc = values["_gc_pc"]
    point = spec.yield_points[pc]
    return {
        "pc": pc,
        "label": point.label,
        "locals": {n: values[n] for n in spec.user_locals if n in values},
        "hidden": {n: values[n] for n in point.hidden if n in values},
    }


def restore(spec: GeneratorSpec, state: dict[str, Any]) -> Any:
    """A new generator of ``spec``'s function, suspended where ``state`` says."""
    pc = state["pc"]
    if pc == FINISHED:
        gen = spec.restore({"_gc_pc": NOT_STARTED})
        if spec.is_async:
            _drive_async(gen.aclose(), spec)
        else:
            gen.close()
        return gen
    if pc != NOT_STARTED and pc not in spec.yield_points:
        raise GeneratorStateError(f"cannot restore {spec.module}.{spec.qualname}: it has no yield point {pc}")
    mapping = {**state["locals"], **state["hidden"], "_gc_pc": pc}
    gen = spec.restore(mapping)
    if pc == NOT_STARTED:
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


def _detach(state: dict[str, Any], name: str) -> dict[str, Any]:
    """Give ``state`` its own loop iterators and delegates while sharing everything else.

    Iterators are deep-copied with every object held in a user variable pre-seeded in the
    memo, so ``for x in items`` gets a new list iterator over the *same* ``items``.
    """
    positional = {k: v for k, v in state["hidden"].items() if k.startswith(_POSITIONAL_SLOTS)}
    if not positional:
        return state
    positional_ids = {id(v) for v in positional.values()}
    memo: dict[int, Any] = {id(v): v for v in state["locals"].values() if id(v) not in positional_ids}
    memo[id(memo)] = [state]
    copies: dict[int, Any] = {}
    hidden = dict(state["hidden"])
    for key, value in positional.items():
        if id(value) not in copies:
            try:
                if isinstance(value, (types.GeneratorType, types.AsyncGeneratorType)):
                    copies[id(value)] = copy.copy(value)
                else:
                    copies[id(value)] = copy.deepcopy(value, memo)
            except Exception as exc:
                raise GeneratorStateError(
                    f"cannot copy generator {name} at {state['label']}: its iterator {type(value).__name__!r} "
                    f"({key}) cannot be copied: {exc}"
                ) from exc
        hidden[key] = copies[id(value)]
    local_values = {k: copies.get(id(v), v) for k, v in state["locals"].items()}
    return {**state, "locals": local_values, "hidden": hidden}


def _reduce_generator(gen: Any) -> tuple[Any, ...]:
    spec = _require_spec(gen, "copy or pickle")
    state = _detach(snapshot(gen), f"{spec.module}.{spec.qualname}")
    return (_restore_from_reduce, (spec, state))


def _restore_from_reduce(spec_or_reference: GeneratorSpec | tuple[str, str, str], state: dict[str, Any]) -> Any:
    """Called by ``copy`` (with the spec) and by ``pickle`` (with its reference)."""
    if isinstance(spec_or_reference, GeneratorSpec):
        return restore(spec_or_reference, state)
    module, qualname, source_hash = spec_or_reference
    spec = resolve_spec(module, qualname)
    if spec.source_hash != source_hash:
        state = _migrate(spec, state, source_hash)
    return restore(spec, state)


def _migrate(spec: GeneratorSpec, state: dict[str, Any], old_hash: str) -> dict[str, Any]:
    name = f"{spec.module}.{spec.qualname}"
    if spec.code_change is None:
        raise SourceChangedError(
            f"cannot load generator {name}: it was saved from source {old_hash}, the code now is "
            f"{spec.source_hash}; pass code_change=... to @resumable to migrate saved states"
        )
    old = {"label": state["label"], "locals": dict(state["locals"]), "hidden": dict(state["hidden"]), "source_hash": old_hash, "pc": state["pc"]}
    new = spec.code_change(old)
    if not isinstance(new, dict) or "locals" not in new:
        raise SourceChangedError(f"code_change of {name} must return a state dict with 'label' and 'locals', got {new!r}")
    if new.get("pc") in (NOT_STARTED, FINISHED) and new.get("label") is None:
        return {"pc": new["pc"], "label": None, "locals": new["locals"], "hidden": new.get("hidden", {})}
    point = spec.by_label.get(new.get("label"))  # type: ignore[arg-type]
    if point is None:
        raise SourceChangedError(
            f"code_change of {name} returned label {new.get('label')!r}, which is not a yield label of the "
            f"current code (labels: {sorted(spec.by_label)})"
        )
    logger.info("migrated a saved %s from %s at %s to %s", name, old_hash, state["label"], point.label)
    return {"pc": point.index, "label": point.label, "locals": new["locals"], "hidden": new.get("hidden", {})}


_installed = False
_previous: dict[type, Any] = {}


def _chained_reducer(kind: type) -> Any:
    def reducer(gen: Any) -> tuple[Any, ...]:
        if spec_for_generator(gen) is None and _previous.get(kind) is not None:
            return _previous[kind](gen)
        return _reduce_generator(gen)

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
