"""Per-call keywords on plugin methods: ``plugin.method(x, decorator="timer")``.

:func:`prepare_plugin_class` instruments every public method a class defines so that a
call may add ``monkey_patch=``, ``decorator=``, ``decorators=`` and ``context_manager=``
(see :func:`~shellsvc.patching.percall.percall`). The keywords become parameters with
``None`` defaults, checked by a five-comparison prologue in the method's own code - no
wrapper, no extra call - so a call without them costs little; a positional argument too
many still raises the original's TypeError (see :mod:`~shellsvc.patching.instrument`).
Methods whose source is unavailable get a forwarding trampoline instead (same behaviour,
one extra call). The compiled prologues are cached per code object: re-creating a class
from unchanged code (a plugin reload) compiles nothing.
"""

from __future__ import annotations

import logging
import types
from typing import Any

from . import instrument
from .errors import PatchError

__all__ = ["prepare_plugin_class"]

log = logging.getLogger(__name__)

def _public_functions(cls: type) -> list[types.FunctionType]:
    found = []
    for name, value in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(value, (classmethod, staticmethod)):
            value = value.__func__
        if isinstance(value, types.FunctionType):
            found.append(value)
    return found


def _percall_enabled(fn: types.FunctionType) -> bool:
    state = instrument.state_for(fn, create=False)
    return state is not None and state.percall_enabled


def prepare_plugin_class(cls: type) -> type:
    """Give every public method defined by ``cls`` the per-call keywords; returns ``cls``.

    Called from ``Plugin.__init_subclass__``; idempotent. A method that already has a
    parameter named like one of the keywords keeps its own meaning for that name: it is
    left untouched, with a debug log.
    """
    for fn in _public_functions(cls):
        if _percall_enabled(fn):
            continue
        code = instrument.base_code(fn)
        names = set(code.co_varnames[: code.co_argcount + code.co_kwonlyargcount])
        clash = names.intersection((*instrument.PERCALL_KEYWORDS, instrument.OVERFLOW_PARAMETER))
        if clash:
            log.debug("%s.%s has parameter(s) %s; per-call keywords not added", cls.__qualname__, fn.__name__, sorted(clash))
            continue
        try:
            instrument.enable(fn, percall=True)
        except (SyntaxError, PatchError) as exc:  # pragma: no cover - a plugin must still load
            log.warning("could not add per-call keywords to %s.%s: %s", cls.__qualname__, fn.__name__, exc)
    return cls


def percall_ready(fn: Any) -> bool:
    """Whether ``fn`` (a function, bound method or a wrapper of one) accepts the per-call keywords.

    Follows ``__func__`` and ``__wrapped__``: the operator console uses this to keep the
    keywords out of command arguments, so a decorated plugin method must count too.
    """
    seen: set[int] = set()
    while fn is not None and id(fn) not in seen:
        seen.add(id(fn))
        fn = getattr(fn, "__func__", fn)
        if isinstance(fn, types.FunctionType) and _percall_enabled(fn):
            return True
        fn = getattr(fn, "__wrapped__", None)
    return False
