"""Shell helpers: snapshot, fork and persist generators from the REPL.

Plain functions, so the REPL can seed them into a namespace (:func:`shell_names`).
Native generators are :func:`~.capture.capture`-d first, so an admin can save a generator
an application created before anyone thought of pickling it.
"""

from __future__ import annotations

import copy
import inspect
import logging
import os
import pickle
import stat
import tempfile
import types
from pathlib import Path
from typing import Any, Callable

from .capture import capture
from .errors import GeneratorStateError
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


def _describe(gen: Any) -> str:
    return getattr(gen, "__qualname__", type(gen).__name__)


def save_generator(gen: Any, path: str | os.PathLike[str]) -> Path:
    """Pickle ``gen``'s state to ``path`` (written atomically, mode 0600); returns the path."""
    target = Path(path)
    if not target.parent.is_dir():
        raise FileNotFoundError(f"cannot save generator {_describe(gen)!r} to {target}: directory {target.parent} does not exist")
    resumable_gen = _resumable(gen)
    try:
        data = pickle.dumps(resumable_gen, protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        raise GeneratorStateError(
            f"cannot save generator {_describe(gen)!r}: a value in its state cannot be pickled ({exc}); "
            "copy_generator() still works, or keep only picklable values in its variables"
        ) from exc
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temp, target)
    except BaseException:
        os.unlink(temp)
        raise
    logger.info("saved generator %s to %s (%d bytes)", _describe(gen), target, len(data))
    return target


def load_generator(path: str | os.PathLike[str]) -> Any:
    """Load a generator saved by :func:`save_generator`.

    Loading a pickle can run arbitrary code, so — as OpenSSH does with keys — files that
    another user could have written (writable by group/others, or owned by someone else)
    are refused.  Only load files you trust.
    """
    target = Path(path)
    with open(target, "rb") as handle:
        info = os.fstat(handle.fileno())
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise GeneratorStateError(
                f"refusing to load {target}: it is writable by group or others (mode {stat.S_IMODE(info.st_mode):04o}) "
                "and loading a pickle runs code; if you trust it, 'chmod go-w' it"
            )
        if hasattr(os, "geteuid") and info.st_uid != os.geteuid():
            raise GeneratorStateError(
                f"refusing to load {target}: it is owned by uid {info.st_uid}, not by this process's user "
                "and loading a pickle runs code; copy it to a file you own if you trust it"
            )
        data = handle.read()
    try:
        gen = pickle.loads(data)
    except GeneratorStateError:
        raise  # already names the generator and what to do (e.g. SourceChangedError)
    except (pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise GeneratorStateError(f"cannot load {target}: it is not a saved generator state ({exc})") from exc
    if not (inspect.isgenerator(gen) or inspect.isasyncgen(gen)):
        raise GeneratorStateError(f"cannot load {target}: it holds a {type(gen).__name__!r}, not a saved generator")
    logger.info("loaded generator %s from %s", _describe(gen), target)
    return gen


def shell_names() -> dict[str, Callable[..., Any]]:
    """Names to seed into an admin's REPL namespace (a stable API; see docs/gencopy.md).

    ``copy_generator(gen, deep=False)`` forks, ``save_generator(gen, path)`` persists and
    ``load_generator(path)`` restores a generator; native generators are captured first.
    ``capture`` and ``resumable`` are there for admins who want the twin itself.
    """
    from .decorator import resumable

    return {
        "copy_generator": copy_generator,
        "save_generator": save_generator,
        "load_generator": load_generator,
        "capture": capture,
        "resumable": resumable,
    }
