"""``capture(gen)``: turn a suspended *native* generator into a resumable one at the same point.

What is read from the live generator: its locals (``gi_frame.f_locals``), its position
(``gi_frame.f_lasti`` mapped through ``co_positions()`` to the ``yield`` in the source), and
the iterators of the ``for`` loops it is suspended in (the tail of its value stack, as
reported by :func:`gc.get_referents`).  Only states whose value stack holds nothing but
those iterators are reconstructed; anything else is refused with the reason.
"""

from __future__ import annotations

import dis
import gc
import inspect
import logging
import types
from typing import Any

from .errors import GeneratorStateError, UnsupportedGeneratorError
from .runtime import NO_EXCEPTION
from .spec import spec_for_code, spec_for_generator
from .state import FINISHED, NOT_STARTED, _detach, generator_state, install_copy_hooks, restore

__all__ = ["capture"]

logger = logging.getLogger(__name__)


def capture(gen: types.GeneratorType) -> types.GeneratorType:
    """A resumable generator continuing exactly where native generator ``gen`` is suspended.

    ``gen`` itself is left untouched; the result is independent of it (it has its own loop
    iterators) but shares the objects ``gen``'s variables refer to.  Generators that are
    already resumable are returned as they are.
    """
    install_copy_hooks()
    if not isinstance(gen, types.GeneratorType):
        raise TypeError(f"capture() needs a generator object, got {type(gen).__name__!r}")
    if spec_for_generator(gen) is not None:
        return gen
    code = gen.gi_code
    name = f"{code.co_qualname}()"
    status = generator_state(gen)
    if status == "running":
        raise GeneratorStateError(f"cannot capture {name}: it is running; capture it while it is suspended")
    if status == "closed":
        raise GeneratorStateError(
            f"cannot capture {name}: it has finished, so its function's globals are gone; nothing is left to capture"
        )
    frame = gen.gi_frame
    values = dict(frame.f_locals)
    free_values = {n: values.pop(n) for n in code.co_freevars if n in values}
    try:
        spec = spec_for_code(code, frame.f_globals, free_values)
    except UnsupportedGeneratorError as exc:
        raise GeneratorStateError(f"cannot capture {name}: {exc}") from exc
    user_locals = {n: v for n, v in values.items() if n in spec.user_locals}
    if status == "created":
        return restore(spec, {"pc": NOT_STARTED, "label": None, "locals": user_locals, "hidden": {}})
    point = _yield_point_at(gen, spec, name)
    if point.capture_obstacle:
        raise GeneratorStateError(
            f"cannot capture {name} at line {point.lineno}: it is suspended {point.capture_obstacle} "
            "(the interpreter state there cannot be reconstructed faithfully); decorate the function "
            "with @resumable to make such states copyable"
        )
    hidden: dict[str, Any] = {slot: NO_EXCEPTION for slot in point.finally_slots}
    if point.loop_iterators:
        stack = _value_stack_tail(gen, len(point.loop_iterators), name, point.lineno)
        hidden.update(zip(point.loop_iterators, stack))
    missing = set(point.hidden) - set(hidden)
    if missing:
        raise GeneratorStateError(f"cannot capture {name} at line {point.lineno}: state {sorted(missing)} is not readable")
    state = {"pc": point.index, "label": point.label, "locals": user_locals, "hidden": hidden}
    logger.debug("captured %s at %s (line %d)", name, point.label, point.lineno)
    return restore(spec, _detach(state, name))


def _yield_point_at(gen: types.GeneratorType, spec: Any, name: str) -> Any:
    code = gen.gi_code
    lasti = gen.gi_frame.f_lasti
    instruction = next((i for i in dis.get_instructions(code) if i.offset == lasti), None)
    if instruction is None or instruction.opname != "YIELD_VALUE":
        raise GeneratorStateError(f"cannot capture {name}: it is not suspended at a yield instruction")
    position = tuple(instruction.positions)  # type: ignore[arg-type]
    point = spec.by_position.get(position)
    if point is None:
        raise GeneratorStateError(
            f"cannot capture {name}: its yield at line {position[0]} is not a plain 'yield' of the source "
            "(a 'yield from', an await, or a yield the compiler rewrote)"
        )
    return point


def _value_stack_tail(gen: types.GeneratorType, count: int, name: str, lineno: int) -> list[Any]:
    """The top ``count`` entries of ``gen``'s value stack (``gc.get_referents`` lists them last)."""
    referents = gc.get_referents(gen)
    if referents and (referents[-1] is None or isinstance(referents[-1], BaseException)):
        referents = referents[:-1]  # gi_exc_state (None or an exception) follows the frame
    tail = referents[-count:]
    if len(tail) != count or not all(hasattr(obj, "__next__") for obj in tail):
        raise GeneratorStateError(
            f"cannot capture {name} at line {lineno}: the iterators of its {count} enclosing for-loop(s) "
            f"were not found on its value stack (found {[type(o).__name__ for o in tail]})"
        )
    return tail
