"""One place that turns names into objects: patch targets and library patches.

* :func:`resolve_target` - ``"pkg.mod.func"``, ``"pkg.mod.Cls.method"`` or
  ``"pkg.mod:Cls.method"`` to the object (importing the module if needed).
* :func:`resolve_patch` - a decorator from the ``patches`` library or an admin's patch
  directory, by dotted name (``"patches.trace.tracer"``) or short name (``"tracer"``).
  Objects pass through unchanged, so callers can accept either.

Import errors inside a module that *does* exist are never mistaken for "not found":
they propagate with the module named.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import logging
import os
import pkgutil
import stat
import sys
import threading
import types
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .errors import ResolveError

__all__ = ["PatchResolver", "default_resolver", "resolve_patch", "resolve_target", "set_default_resolver"]

log = logging.getLogger(__name__)

LIBRARY_PACKAGE = "patches"
ENV_PATCH_DIRS = "SHELLSVC_PATCH_DIRS"
_ADMIN_PREFIX = "shellsvc_admin_patches."


def _import(module_name: str) -> types.ModuleType | None:
    """Import ``module_name``; None only if that very module does not exist."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            return None
        raise


def _walk(obj: Any, attrs: Iterable[str], full: str) -> Any:
    for attr in attrs:
        try:
            obj = getattr(obj, attr)
        except AttributeError:
            raise ResolveError(f"{full!r} does not resolve: {obj!r} has no attribute {attr!r}") from None
    return obj


def resolve_target(name: str) -> Any:
    """Resolve ``"module.qualname"`` or ``"module:qualname"`` to the object it names."""
    if not isinstance(name, str) or not name.strip(". :"):
        raise ResolveError(f"not a dotted name: {name!r}")
    if ":" in name:
        module_name, _, qualname = name.partition(":")
        module = _import(module_name)
        if module is None:
            raise ResolveError(f"{name!r} does not resolve: no module named {module_name!r}")
        return _walk(module, qualname.split(".") if qualname else [], name)
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):  # fast path: the module is already imported
        module = sys.modules.get(".".join(parts[:cut]))
        if module is not None:
            try:
                return _walk(module, parts[cut:], name)
            except ResolveError:
                break  # perhaps a submodule not imported yet: take the slow path
    for cut in range(len(parts), 0, -1):
        module = _import(".".join(parts[:cut]))
        if module is not None:
            return _walk(module, parts[cut:], name)
    raise ResolveError(f"{name!r} does not resolve: no module named {parts[0]!r} is importable")


class PatchResolver:
    """Finds library patches by dotted or short name.

    Short names come from ``patches.SHORT_NAMES``, from the ``__all__`` of every module in
    the ``patches`` package, and from the ``__all__`` of every ``*.py`` file in the admin
    patch directories (``dirs``, plus ``$SHELLSVC_PATCH_DIRS``); a file without a top-level
    ``__all__`` is not run to build the index (it is loaded only when named explicitly,
    ``"<stem>.<name>"``). Files dropped into those
    places later are picked up on the next lookup that misses, or after :meth:`refresh`;
    a changed file is reloaded. An admin file runs with the application's privileges, so
    one that is writable by group/others, or in such a directory, or owned by another
    user, is refused (like OpenSSH refuses loose key files). A file that fails to import
    is logged and named in the error of any lookup that then misses.
    """

    def __init__(self, dirs: Iterable[str | os.PathLike[str]] = (), *, use_env: bool = True) -> None:
        self._dirs = [Path(d) for d in dirs]
        self._use_env = use_env
        self._lock = threading.RLock()
        self._short: dict[str, str] | None = None
        self._admin_mtimes: dict[Path, int] = {}
        self._broken: dict[Path, str] = {}  # admin files that could not be loaded -> why

    # -- configuration ------------------------------------------------------------

    @property
    def dirs(self) -> list[Path]:
        """The admin patch directories searched, configured ones first."""
        extra = os.environ.get(ENV_PATCH_DIRS, "") if self._use_env else ""
        return self._dirs + [Path(p) for p in extra.split(os.pathsep) if p]

    def add_dir(self, path: str | os.PathLike[str]) -> None:
        with self._lock:
            if Path(path) not in self._dirs:
                self._dirs.append(Path(path))
            self._short = None

    def refresh(self) -> None:
        """Forget the short-name index; the next lookup rescans."""
        with self._lock:
            self._short = None

    # -- lookups ------------------------------------------------------------------

    def resolve(self, name: Any) -> Any:
        """The object ``name`` refers to; non-strings are returned unchanged."""
        if not isinstance(name, str):
            return name
        with self._lock:
            if "." in name or ":" in name:
                return self._resolve_dotted(name)
            index = self._index()
            if name not in index:
                self._short = None
                index = self._index()
            if name not in index:
                broken = "".join(f"; admin patch file {path} was not loaded: {why}" for path, why in self._broken.items())
                raise ResolveError(
                    f"no patch named {name!r}; known short names: {', '.join(sorted(index)) or '(none)'}; "
                    f"or give a dotted name such as 'patches.trace.tracer'{broken}"
                )
            return self._resolve_dotted(index[name])

    def available(self) -> dict[str, str]:
        """Short name -> dotted name of every patch currently known."""
        with self._lock:
            self._short = None
            return dict(self._index())

    def _resolve_dotted(self, name: str) -> Any:
        head = name.split(":", 1)[0].split(".", 1)[0]
        if head not in sys.modules and _find_spec(head) is None:
            admin = self._admin_module(head)
            if admin is not None:
                rest = name[len(head) + 1 :].replace(":", ".")
                return _walk(admin, rest.split(".") if rest else [], name)
        return resolve_target(name)

    def _index(self) -> dict[str, str]:
        if self._short is not None:
            return self._short
        index: dict[str, str] = {}
        library = _import(LIBRARY_PACKAGE)
        if library is not None:
            for info in pkgutil.iter_modules(getattr(library, "__path__", [])):
                if info.name.startswith("_"):
                    continue
                module = importlib.import_module(f"{LIBRARY_PACKAGE}.{info.name}")
                for attr in getattr(module, "__all__", ()):
                    index.setdefault(attr, f"{module.__name__}.{attr}")
            index.update(getattr(library, "SHORT_NAMES", {}))
        self._broken.clear()
        for path in self._admin_files():
            if not _declares_all(path):
                continue  # not a patch library (e.g. an uploaded PATCHES file): never run it here
            try:
                module = self._load_admin(path)
            except Exception as exc:  # one bad admin file must not hide the others; reported on a miss
                self._broken[path] = f"{type(exc).__name__}: {exc}"
                log.error("admin patch file %s was not loaded: %s", path, self._broken[path])
                continue
            for attr in getattr(module, "__all__", ()):
                if attr in index and not index[attr].startswith(path.stem + "."):
                    log.warning("admin patch %s.%s shadows %s", path.stem, attr, index[attr])
                index[attr] = f"{path.stem}.{attr}"
        self._short = index
        return index

    def _admin_files(self) -> list[Path]:
        files: list[Path] = []
        for directory in self.dirs:
            if directory.is_dir():
                files.extend(sorted(p for p in directory.glob("*.py") if not p.name.startswith("_")))
        return files

    def _admin_module(self, stem: str) -> types.ModuleType | None:
        for path in self._admin_files():
            if path.stem == stem:
                return self._load_admin(path)
        return None

    def _load_admin(self, path: Path) -> types.ModuleType:
        """Load (or reload when changed) an admin patch file as ``shellsvc_admin_patches.<stem>``."""
        _check_private(path)
        module_name = _ADMIN_PREFIX + path.stem
        mtime = path.stat().st_mtime_ns
        module = sys.modules.get(module_name)
        if module is not None and self._admin_mtimes.get(path) == mtime:
            return module
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise ResolveError(f"cannot load admin patch file {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(module_name, None)
            raise
        self._admin_mtimes[path] = mtime
        log.info("loaded admin patch module %s", path)
        return module


def _declares_all(path: Path) -> bool:
    """Whether a file assigns ``__all__`` at top level (read, not run: indexing runs nothing else)."""
    try:
        tree = ast.parse(path.read_bytes(), str(path))
    except (OSError, SyntaxError, ValueError):
        return True  # let loading it report the problem
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, (ast.AnnAssign, ast.AugAssign)) else []
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            return True
    return False


def _check_private(path: Path) -> None:
    """Refuse an admin patch file others could have written: it runs as the application."""
    uid = os.getuid()
    for item in (path.parent, path):
        info = item.stat()
        if info.st_uid not in (uid, 0):
            raise ResolveError(
                f"refusing to load admin patch file {path}: {item} is owned by uid {info.st_uid}, not by this "
                "process's user; chown it to this user (or move the file out of the patch directory)"
            )
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise ResolveError(
                f"refusing to load admin patch file {path}: {item} is writable by group/others "
                f"(mode {stat.S_IMODE(info.st_mode):o}); run 'chmod go-w {item}'"
            )


def _find_spec(name: str) -> Any:
    try:
        return importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None


_default = PatchResolver()


def default_resolver() -> PatchResolver:
    """The resolver names are looked up with when none is given (plugin methods, ``percall``)."""
    return _default


def set_default_resolver(resolver: PatchResolver) -> PatchResolver:
    """Make ``resolver`` the process-wide default; returns the previous one."""
    global _default
    previous, _default = _default, resolver
    return previous


def resolve_patch(name: Any, resolver: PatchResolver | None = None) -> Any:
    """Resolve a patch/decorator given by object, dotted name or short name (one rule everywhere)."""
    if not isinstance(name, str):
        return name
    return (resolver or _default).resolve(name)
