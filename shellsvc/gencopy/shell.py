"""Shell helpers: snapshot, fork and persist generators from the REPL.

Plain functions, so the REPL can seed them into a namespace (:func:`shell_names`).
Native generators are :func:`~.capture.capture`-d first, so an admin can save a generator
an application created before anyone thought of pickling it.
"""

from __future__ import annotations

import copy
import logging
import os
import pickle
import tempfile
import types
from pathlib import Path
from typing import Any, Callable

from .capture import capture
from .state import is_resumable_generator

__all__ = ["copy_generator", "save_generator", "load_generator", "shell_names"]

logger = logging.getLogger(__name__)


def _resumable(gen: Any) -> Any:
    if isinstance(gen, types.GeneratorType) and not is_resumable_generator(gen):
        return capture(gen)
    return gen


def copy_generator(gen: Any, deep: bool = False) -> Any:
    """An independent copy of ``gen`` at its current yield (``deep``: copy its objects too)."""
    gen = _resumable(gen)
    return copy.deepcopy(gen) if deep else copy.copy(gen)


def save_generator(gen: Any, path: str | os.PathLike[str]) -> Path:
    """Pickle ``gen``'s state to ``path`` (written atomically, mode 0600); returns the path."""
    data = pickle.dumps(_resumable(gen), protocol=pickle.HIGHEST_PROTOCOL)
    target = Path(path)
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temp, target)
    except BaseException:
        os.unlink(temp)
        raise
    logger.info("saved generator state to %s (%d bytes)", target, len(data))
    return target


def load_generator(path: str | os.PathLike[str]) -> Any:
    """Load a generator saved by :func:`save_generator`.

    Only load files you trust: like any pickle, loading can run arbitrary code.
    """
    with open(path, "rb") as handle:
        return pickle.load(handle)


def shell_names() -> dict[str, Callable[..., Any]]:
    """Names to seed into a REPL namespace."""
    from .capture import capture as capture_generator
    from .decorator import resumable

    return {
        "copy_generator": copy_generator,
        "save_generator": save_generator,
        "load_generator": load_generator,
        "capture": capture_generator,
        "resumable": resumable,
    }
