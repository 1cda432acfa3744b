"""Importing a fresh copy of a plugin source under a private, namespaced module name.

Plugin modules live below a namespace package (``_shellsvc_plugins`` by default), as
``<namespace>.<stem>_<hash of path>``, so two plugins that each have a ``utils.py`` never
meet and nothing the host application imported is ever replaced. A meta-path finder that
only answers for registered plugin roots compiles from the bytes that were hashed
(no ``.pyc`` files, so two edits within one mtime tick are never confused) and caches code
objects by content hash, which keeps a reload of unchanged files cheap.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import threading
import types
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path

from .sources import SourceRef, digest

__all__ = [
    "PluginImporter",
    "claim_namespace",
    "commit_modules",
    "import_fresh",
    "module_names_under",
    "release_namespace",
    "remove_modules",
    "root_module_name",
]

_CODE_CACHE_SIZE = 1024


def root_module_name(namespace: str, ref: SourceRef) -> str:
    """Stable, collision-free module name for a source: ``<namespace>.<stem>_<8 hex of path>``."""
    tag = hashlib.sha256(str(ref.path).encode()).hexdigest()[:8]
    return f"{namespace}.{ref.stem}_{tag}"


def module_names_under(root: str) -> list[str]:
    """Names in ``sys.modules`` that are ``root`` or inside it (exact prefix ``root.``).

    A full scan of ``sys.modules``: used where completeness matters (unload); the hot
    reload path uses the names the importer itself served (:meth:`PluginImporter.live_names`).
    """
    prefix = root + "."
    return [name for name in list(sys.modules) if name == root or name.startswith(prefix)]


class _PluginSourceLoader(importlib.machinery.SourceFileLoader):
    """Source loader that compiles the runtime's snapshot bytes and never writes bytecode."""

    def __init__(self, fullname: str, path: str, importer: PluginImporter) -> None:
        super().__init__(fullname, path)
        self._importer = importer

    def get_code(self, fullname: str) -> types.CodeType:
        path = Path(self.get_filename(fullname))
        data = self._importer.source_bytes(path)
        return self._importer.compile(data, path, self)


class PluginImporter(importlib.abc.MetaPathFinder):
    """Meta-path finder for plugin roots; one per process, shared by all runtimes."""

    _instance: PluginImporter | None = None
    _instance_lock = threading.Lock()

    def __init__(self) -> None:
        self._roots: dict[str, SourceRef] = {}
        self._prefixes: tuple[str, ...] = ()
        self._snapshot: dict[Path, bytes] = {}
        self._code: OrderedDict[tuple[Path, str], types.CodeType] = OrderedDict()
        #: Every module name answered (or committed) per root, so a reload need not scan
        #: all of ``sys.modules`` (thousands of names in a big app) to find a plugin's modules.
        self._served: dict[str, set[str]] = {}

    @classmethod
    def install(cls) -> PluginImporter:
        """Return the process-wide importer, inserting it at the front of ``sys.meta_path``."""
        with cls._instance_lock:
            if cls._instance is None:
                cls._instance = cls()
            if cls._instance not in sys.meta_path:
                sys.meta_path.insert(0, cls._instance)
            return cls._instance

    def register(self, root: str, ref: SourceRef) -> None:
        self._roots[root] = ref
        self._prefixes = tuple({name.rpartition(".")[0] + "." for name in self._roots})

    def unregister(self, root: str) -> None:
        self._roots.pop(root, None)
        self._served.pop(root, None)
        self._prefixes = tuple({name.rpartition(".")[0] + "." for name in self._roots})

    def live_names(self, root: str) -> list[str]:
        """The modules of ``root`` now in ``sys.modules`` (among those this importer made)."""
        served = self._served.get(root)
        return [name for name in served if name in sys.modules] if served else []

    def track(self, root: str, names: Iterable[str]) -> None:
        self._served.setdefault(root, set()).update(names)

    # -- finder ---------------------------------------------------------------------------
    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith(self._prefixes):  # every import passes here: reject fast
            return None
        namespace, _, rest = fullname.partition(".")
        name, _, inner = rest.partition(".")
        candidate = f"{namespace}.{name}"
        ref = self._roots.get(candidate)
        if ref is None:
            return None
        if not inner:
            spec = self._spec(fullname, ref.path, package=ref.kind == "package")
        elif ref.kind != "package":
            return None
        else:
            base = ref.path.joinpath(*inner.split("."))
            module_file = base.with_name(base.name + ".py")
            if base / "__init__.py" in self._snapshot or (base / "__init__.py").is_file():
                spec = self._spec(fullname, base, package=True)
            elif module_file in self._snapshot or module_file.is_file():
                spec = self._spec(fullname, module_file, package=False)
            else:
                return None
        self._served.setdefault(candidate, set()).add(fullname)
        return spec

    def _spec(self, fullname: str, path: Path, *, package: bool) -> importlib.machinery.ModuleSpec:
        origin = path / "__init__.py" if package else path
        loader = _PluginSourceLoader(fullname, str(origin), self)
        return importlib.util.spec_from_file_location(
            fullname,
            origin,
            loader=loader,
            submodule_search_locations=[str(path)] if package else None,
        )  # type: ignore[return-value]

    # -- loader support -------------------------------------------------------------------
    def source_bytes(self, path: Path) -> bytes:
        data = self._snapshot.get(path)
        return data if data is not None else path.read_bytes()

    def compile(self, data: bytes, path: Path, loader: _PluginSourceLoader) -> types.CodeType:
        key = (path, digest(data))
        code = self._code.get(key)
        if code is None:
            code = loader.source_to_code(data, str(path))
            self._code[key] = code
            if len(self._code) > _CODE_CACHE_SIZE:
                self._code.popitem(last=False)
        else:
            self._code.move_to_end(key)
        return code

    def import_fresh(self, root: str, ref: SourceRef, snapshot: dict[Path, bytes]) -> dict[str, types.ModuleType]:
        """Execute a brand-new copy of ``ref`` and return its modules, root first.

        ``sys.modules`` is left exactly as it was found (the previous version's entries are
        stashed while the new code runs, so its relative imports see the new helpers, and
        put back afterwards); the caller commits the returned modules when it decides to.
        """
        stashed = {name: sys.modules.pop(name) for name in self.live_names(root)}
        parent_name, _, child = root.rpartition(".")
        parent = sys.modules.get(parent_name)
        old_attr = getattr(parent, child, None) if parent is not None else None
        self.register(root, ref)
        self._snapshot = snapshot
        try:
            importlib.import_module(root)
            fresh = {name: sys.modules[name] for name in self.live_names(root)}
        finally:
            self._snapshot = {}
            for name in self.live_names(root):
                del sys.modules[name]
            sys.modules.update(stashed)
            if parent is not None:
                if old_attr is not None:
                    setattr(parent, child, old_attr)
                elif hasattr(parent, child):
                    delattr(parent, child)
        return dict(sorted(fresh.items(), key=lambda item: (item[0] != root, item[0])))


def import_fresh(root: str, ref: SourceRef, snapshot: dict[Path, bytes]) -> dict[str, types.ModuleType]:
    return PluginImporter.install().import_fresh(root, ref, snapshot)


def commit_modules(root: str, modules: dict[str, types.ModuleType]) -> None:
    """Make ``modules`` the live ones for ``root`` (replacing any previous version)."""
    importer = PluginImporter.install()
    for name in importer.live_names(root):
        del sys.modules[name]
    importer.track(root, modules)
    sys.modules.update(modules)
    parent_name, _, child = root.rpartition(".")
    parent = sys.modules.get(parent_name)
    if parent is not None and root in modules:
        setattr(parent, child, modules[root])


def remove_modules(root: str) -> list[str]:
    """Drop ``root`` and its submodules from ``sys.modules``; returns the names removed."""
    names = module_names_under(root)
    for name in names:
        del sys.modules[name]
    parent_name, _, child = root.rpartition(".")
    parent = sys.modules.get(parent_name)
    if parent is not None and hasattr(parent, child):
        delattr(parent, child)
    return names


_claimed_namespaces: set[str] = set()


def claim_namespace(namespace: str | None) -> str:
    """Reserve a parent package for one runtime's modules; ``None`` picks a free default.

    The parent is an empty package module created here; a name the application already
    uses is refused rather than replaced.
    """
    if namespace is None:
        namespace, counter = "_shellsvc_plugins", 1
        while namespace in _claimed_namespaces or namespace in sys.modules:
            counter += 1
            namespace = f"_shellsvc_plugins_{counter}"
    elif namespace in _claimed_namespaces:
        raise ValueError(f"plugin namespace {namespace!r} is already used by another Runtime; pick another")
    elif namespace in sys.modules:
        raise ValueError(f"plugin namespace {namespace!r} is an existing module; pick a name nothing imports")
    if not namespace.isidentifier():
        raise ValueError(f"plugin namespace {namespace!r} must be a valid identifier")
    module = types.ModuleType(namespace, "Plugin modules loaded by a shellsvc Runtime.")
    module.__path__ = []  # a package, so "<namespace>.<plugin>" names resolve
    module.__package__ = namespace
    sys.modules[namespace] = module
    _claimed_namespaces.add(namespace)
    return namespace


def release_namespace(namespace: str) -> None:
    """Undo :func:`claim_namespace` once the runtime has unloaded everything."""
    if namespace in _claimed_namespaces:
        _claimed_namespaces.discard(namespace)
        sys.modules.pop(namespace, None)
