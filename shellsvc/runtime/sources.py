"""Finding plugin sources on disk and fingerprinting them.

A *source* is one unit that is loaded, reloaded and unloaded as a whole: a single ``.py``
file, a package directory (``__init__.py`` plus helper modules), or a binary extension
module. Names starting with ``_`` or ``.`` are never sources (helpers, ``__pycache__``).
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = [
    "SourceRef",
    "classify",
    "digest",
    "discover",
    "extension_module_name",
    "fingerprint",
    "read_snapshot",
    "source_files",
]

SourceKind = Literal["module", "package", "extension"]

#: Longest first, so ``x.cpython-311-x86_64-linux-gnu.so`` is not read as module ``x.cpython-311-…``.
_EXTENSION_SUFFIXES = sorted(importlib.machinery.EXTENSION_SUFFIXES, key=len, reverse=True)


@dataclass(frozen=True)
class SourceRef:
    """A plugin source: its resolved ``path``, ``kind`` and bare module name (``stem``)."""

    path: Path
    kind: SourceKind
    stem: str


def extension_module_name(filename: str) -> str | None:
    """``fast.cpython-311-x86_64-linux-gnu.so`` -> ``fast``; ``None`` if not an extension module."""
    for suffix in _EXTENSION_SUFFIXES:
        if filename.endswith(suffix) and len(filename) > len(suffix):
            stem = filename[: -len(suffix)]
            return stem if stem.isidentifier() else None
    return None


def classify(path: Path) -> SourceRef | None:
    """What kind of source ``path`` is, or ``None`` if it is not one."""
    path = path.resolve()
    if path.is_dir():
        if (path / "__init__.py").is_file() and path.name.isidentifier():
            return SourceRef(path, "package", path.name)
        return None
    if path.suffix == ".py" and path.stem.isidentifier():
        return SourceRef(path, "module", path.stem)
    stem = extension_module_name(path.name)
    if stem is not None:
        return SourceRef(path, "extension", stem)
    return None


def discover(directory: Path, *, recursive: bool = False) -> list[SourceRef]:
    """Sources directly in ``directory`` (and in plain sub-directories if ``recursive``), sorted."""
    found: list[SourceRef] = []
    try:
        entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
    except FileNotFoundError:
        return found
    for entry in entries:
        if entry.name.startswith(("_", ".")):
            continue
        ref = classify(Path(entry.path))
        if ref is not None:
            found.append(ref)
        elif recursive and entry.is_dir():
            found.extend(discover(Path(entry.path), recursive=True))
    return found


def source_files(ref: SourceRef) -> list[Path]:
    """Every file whose content makes up ``ref``: for a package, all its ``.py`` files."""
    if ref.kind != "package":
        return [ref.path]
    return sorted(_package_files(ref.path))


def _package_files(directory: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "__pycache__")))
        for filename in filenames:
            if filename.endswith(".py"):
                yield Path(dirpath, filename)


def fingerprint(ref: SourceRef) -> tuple[tuple[str, int, int, int], ...]:
    """Cheap change detector (path, mtime_ns, size, inode); confirm changes with :func:`digest`."""
    stats = []
    for path in source_files(ref):
        try:
            st = path.stat()
        except FileNotFoundError:
            continue
        stats.append((str(path), st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(stats)


def read_snapshot(ref: SourceRef) -> dict[Path, bytes]:
    """The bytes of every file of ``ref``, read once: what gets hashed is what gets executed."""
    snapshot: dict[Path, bytes] = {}
    for path in source_files(ref):
        try:
            snapshot[path] = path.read_bytes()
        except FileNotFoundError:
            continue  # deleted between listing and reading: it is simply not part of this version
    return snapshot


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
