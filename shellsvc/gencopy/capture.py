"""``capture(gen)``: turn a suspended *native* generator into a resumable one at the same point.

What is read from the live generator: its locals (``gi_frame.f_locals``), its position
(``gi_frame.f_lasti`` mapped through ``co_positions()`` to the ``yield`` in the source), and
what its frame holds on its value stack (the tail of :func:`gc.get_referents`): the
iterators of enclosing ``for`` loops, the bound ``__exit__`` of enclosing ``with`` blocks
(whose ``__self__`` is the manager) and the exception state of enclosing ``except``
handlers.  The compiler records, per yield, exactly what that stack must hold; a state
that does not match, or a yield where the stack holds more (inside an expression, a
``finally`` block, a ``yield from``), is refused with the reason.
"""

from __future__ import annotations

import dis
import gc
import logging
import types
from typing import Any

from .compiler import HIDDEN_PREFIX
from .errors import GeneratorStateError, UnsupportedGeneratorError
from .runtime import NO_EXCEPTION
from .spec import spec_for_code, spec_for_generator
from .state import NOT_STARTED, _detach, generator_state, install_copy_hooks, restore

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
            f"cannot capture {name}: it has finished or was closed, so its frame (and every value in it) is gone; "
            "capture generators while they are suspended"
        )
    frame = gen.gi_frame
    try:
        spec = spec_for_code(code, frame.f_globals)
    except UnsupportedGeneratorError as exc:
        raise GeneratorStateError(f"cannot capture {name}: {exc}") from exc
    # From here on, read quickly and check at the end that the generator did not move
    # meanwhile (another thread may drive it; a whole loop iteration cannot be noticed).
    position = frame.f_lasti
    point = _yield_point_at(gen, spec, name) if status == "suspended" else None
    values = dict(frame.f_locals)
    free_values = {n: values.pop(n) for n in code.co_freevars if n in values}
    user_locals = {n: v for n, v in values.items() if n in spec.user_locals}
    if point is None:
        state = {"pc": NOT_STARTED, "label": None, "locals": user_locals, "hidden": {}, "free": free_values}
    else:
        if point.capture_obstacle:
            raise GeneratorStateError(
                f"cannot capture {name} at line {point.lineno}: it is suspended {point.capture_obstacle} "
                "(the interpreter state there cannot be reconstructed faithfully); decorate the function "
                "with @resumable to make such states copyable"
            )
        hidden: dict[str, Any] = {slot: NO_EXCEPTION for slot in point.finally_slots}
        if point.native_stack:
            hidden.update(_from_value_stack(gen, point.native_stack, name, point.lineno))
        missing = set(point.hidden) - set(hidden)
        if missing:
            raise GeneratorStateError(f"cannot capture {name} at line {point.lineno}: state {sorted(missing)} is not readable")
        state = {"pc": point.index, "label": point.label, "locals": user_locals, "hidden": hidden, "free": free_values}
        state = _detach(state, name)
    if generator_state(gen) != status or frame.f_lasti != position:
        raise GeneratorStateError(
            f"cannot capture {name}: it ran while being read (is another thread driving it?); "
            "capture it from the thread that drives it, or while that thread leaves it alone"
        )
    logger.debug("captured %s at %s", name, state["label"] or "its start")
    return restore(spec, state)


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


def _from_value_stack(gen: types.GeneratorType, layout: tuple[tuple[str, str], ...], name: str, lineno: int) -> dict[str, Any]:
    """Hidden slots read from what ``gen``'s frame holds on its value stack.

    :func:`gc.get_referents` lists a suspended generator's code, names, frame, locals,
    then its value stack, then its saved exception (``gi_exc_state``) if it has one.  So
    the value stack is the tail, and ``layout`` says what each entry must be.
    """
    referents = gc.get_referents(gen)
    in_handler = any(kind == "exc" for kind, _ in layout)
    handled: Any = None
    if in_handler:
        handled = referents.pop() if referents and isinstance(referents[-1], BaseException) else None
    elif referents and (referents[-1] is None or isinstance(referents[-1], BaseException)):
        referents.pop()  # a leftover gi_exc_state
    entries = referents[len(referents) - len(layout) :]

    def refuse(detail: str) -> GeneratorStateError:
        found = [type(o).__name__ for o in entries]
        return GeneratorStateError(
            f"cannot capture {name} at line {lineno}: {detail} (its value stack holds {found}); "
            "decorate the function with @resumable to make such states copyable"
        )

    if len(entries) != len(layout) or (in_handler and handled is None):
        raise refuse("its enclosing loops, with blocks and except handlers were not found where expected")
    hidden: dict[str, Any] = {}
    exceptions = [obj for (kind, _), obj in zip(layout, entries) if kind == "exc"][1:] + [handled]
    for (kind, slot), obj in zip(layout, entries):
        if kind == "iter":
            if not hasattr(obj, "__next__"):
                raise refuse(f"a for-loop iterator was expected, found {type(obj).__name__!r}")
            hidden[slot] = obj
        elif kind == "exit":
            manager = getattr(obj, "__self__", None)
            if getattr(obj, "__name__", None) != "__exit__" or manager is None:
                raise refuse(f"the with-block's __exit__ is {obj!r}, not a bound method of its manager")
            hidden[slot] = manager
        else:
            if obj is not None and not isinstance(obj, BaseException):
                raise refuse(f"an except handler's saved exception state was expected, found {type(obj).__name__!r}")
            exception = exceptions.pop(0)
            if slot.startswith(HIDDEN_PREFIX):
                hidden[slot] = exception  # a handler without 'as name': the compiler's slot holds it
    return hidden
