"""Loading binary extension modules (``.so`` / ``.pyd``) so that a rebuilt one can be reloaded.

CPython cannot unload an extension, and it will not initialise one twice from the same
file: the dynamic loader hands back the already-mapped library for a known path, and the
import machinery caches single-phase modules by ``(path, name)``. So every generation is
loaded from its own private copy (``<copies>/<n>/<file name>``): a new path means a fresh
``dlopen`` and a fresh ``PyInit_<name>``. Consequences (documented in docs/runtime.md):
old generations stay mapped until the process exits, objects created by them keep
working, and C-level global state is per generation, not shared. Loading from a copy also
protects the process when a build overwrites the original file in place.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import itertools
import logging
import shutil
import sys
import tempfile
import types
from pathlib import Path

from .sources import SourceRef

__all__ = ["ExtensionCopies", "load_extension"]

logger = logging.getLogger(__name__)


class ExtensionCopies:
    """A private directory of per-generation copies, removed by :meth:`cleanup`."""

    def __init__(self) -> None:
        self._directory: Path | None = None
        self._counter = itertools.count(1)

    def fresh_copy(self, source: Path) -> Path:
        if self._directory is None:
            self._directory = Path(tempfile.mkdtemp(prefix="shellsvc-ext-"))
        target = self._directory / str(next(self._counter)) / source.name
        target.parent.mkdir()
        shutil.copy2(source, target)
        return target

    def cleanup(self) -> None:
        """Delete the copies (the mapped code stays valid; POSIX keeps unlinked files alive)."""
        if self._directory is not None:
            shutil.rmtree(self._directory, onerror=self._report)
            self._directory = None

    @staticmethod
    def _report(function: object, path: str, exc_info: object) -> None:
        logger.warning("could not remove extension copy %s: %s", path, exc_info)


def load_extension(fullname: str, ref: SourceRef, copies: ExtensionCopies) -> types.ModuleType:
    """Initialise a new instance of the extension ``ref`` as module ``fullname``.

    The last component of ``fullname`` must be the extension's own name (CPython calls
    ``PyInit_<last component>``). ``sys.modules`` is left untouched; the caller commits.
    """
    if fullname.rpartition(".")[2] != ref.stem:
        raise ValueError(f"module name {fullname!r} must end with the extension's name {ref.stem!r}")
    copy = copies.fresh_copy(ref.path)
    loader = importlib.machinery.ExtensionFileLoader(fullname, str(copy))
    spec = importlib.util.spec_from_file_location(fullname, copy, loader=loader)
    if spec is None:  # pragma: no cover - spec_from_file_location only fails without a loader
        raise ImportError(f"cannot build an import spec for {ref.path}", name=fullname, path=str(ref.path))
    previous = sys.modules.get(fullname)
    try:
        module = importlib.util.module_from_spec(spec)  # dlopen + PyInit_<name>
        loader.exec_module(module)
    finally:
        # Single-phase initialisation registers the module itself; undo that until commit.
        if previous is not None:
            sys.modules[fullname] = previous
        else:
            sys.modules.pop(fullname, None)
    module.__shellsvc_source__ = str(ref.path)  # type: ignore[attr-defined]
    return module
