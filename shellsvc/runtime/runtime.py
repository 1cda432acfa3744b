"""The plugin ``Runtime``: a registry of live plugins with load, atomic reload and unload.

All mutating methods are coroutines that run on the host application's event loop and
are serialised by one lock, so the registry is only ever changed on that loop (the file
watcher is a task on the same loop). A reload builds and starts the new version beside
the old one and swaps only when everything succeeded; otherwise the old version keeps
serving with the same module objects and the same state.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .binary import ExtensionCopies
from .errors import PluginError, PluginLoadError, PluginNotFound, ReloadError, describe, locate_error
from .events import EventHub, RuntimeEvent, Subscription
from .handle import PluginHandle, PluginState
from .importer import (
    PluginImporter,
    claim_namespace,
    commit_modules,
    release_namespace,
    remove_modules,
    root_module_name,
)
from .plugin import Plugin, plugin_commands
from .sources import SourceRef, classify, digest, discover, read_snapshot
from .staging import HealthCheck, Selector, StagedVersion, build_version, call_lifecycle, check_health
from .watcher import Watcher

__all__ = ["Runtime"]

logger = logging.getLogger(__name__)

PathLike = str | Path


@dataclass(eq=False)
class _Source:
    """One loaded source and the plugins it defines (reloaded and unloaded together)."""

    ref: SourceRef
    root: str
    selector: Selector
    modules: dict[str, Any]
    files: dict[Path, str]
    names: list[str] = field(default_factory=list)


class Runtime:
    """Hosts plugins inside a running asyncio application.

    >>> runtime = Runtime()                                   # doctest: +SKIP
    >>> await runtime.load("plugins/")                        # doctest: +SKIP
    >>> runtime["counter_service"].increment()                # doctest: +SKIP
    >>> await runtime.reload("counter_service")               # doctest: +SKIP

    ``runtime[name]`` is the live plugin object (the module, for a binary extension);
    :meth:`handle` gives its registry entry. Reload and unload act on the plugin's whole
    source (file, package or extension), so plugins defined together move together.
    """

    def __init__(
        self,
        *,
        base: type = Plugin,
        namespace: str | None = None,
        start_timeout: float | None = 10.0,
        stop_timeout: float | None = 5.0,
    ) -> None:
        self.base = base
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        #: Parent package of all plugin modules of this runtime (in ``sys.modules``).
        self.namespace = claim_namespace(namespace)
        PluginImporter.install()
        self._handles: dict[str, PluginHandle] = {}
        self._sources: dict[Path, _Source] = {}
        #: Sources that failed to load: (sha256 of their files, the error, how they were selected).
        self._failures: dict[Path, tuple[dict[Path, str], PluginLoadError, Selector]] = {}
        self._inert: dict[Path, dict[Path, str]] = {}
        self._events = EventHub()
        self._watchers: list[Watcher] = []
        self._copies = ExtensionCopies()
        self._lock = asyncio.Lock()
        self._lock_owner: asyncio.Task[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    # -- registry access (read-only, safe from any thread) ---------------------------------
    def __getitem__(self, name: str) -> Any:
        return self.handle(name).plugin

    def get(self, name: str, default: Any = None) -> Any:
        handle = self._handles.get(name)
        return handle.plugin if handle is not None else default

    def handle(self, name: str) -> PluginHandle:
        try:
            return self._handles[name]
        except KeyError:
            raise PluginNotFound(
                f"no plugin named {name!r}; loaded: {', '.join(self._handles) or 'none'}", name=name
            ) from None

    def handles(self) -> list[PluginHandle]:
        return list(self._handles.values())

    def names(self) -> list[str]:
        return list(self._handles)

    def __contains__(self, name: object) -> bool:
        return name in self._handles

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._handles))

    def __len__(self) -> int:
        return len(self._handles)

    @property
    def failures(self) -> dict[Path, PluginLoadError]:
        """Sources that could not be loaded at all (kept until they load or disappear)."""
        return {path: error for path, (_, error, _) in self._failures.items()}

    @property
    def plugins(self) -> PluginsView:
        """Attribute access to live plugins: ``runtime.plugins.counter_service``."""
        return PluginsView(self)

    @property
    def watchers(self) -> list[Watcher]:
        return list(self._watchers)

    def shell_names(self) -> dict[str, object]:
        """Names offered by started plugins (``Plugin.shell_names``), first plugin wins a clash."""
        names: dict[str, object] = {}
        for handle in self._handles.values():
            if handle.state is not PluginState.STARTED or not callable(getattr(handle.plugin, "shell_names", None)):
                continue
            for key, value in handle.plugin.shell_names().items():
                if key in names:
                    logger.warning("shell name %r from plugin %r ignored: already offered", key, handle.name)
                    continue
                names[key] = value
        return names

    def commands(self) -> dict[str, list[Callable[..., Any]]]:
        """Commands offered by started plugins, by plugin name in load order.

        Each list is :func:`plugin_commands` of the live instance: a function whose first
        parameter is ``self`` (``commands = [increment]`` in a class body) comes bound to
        it. The operator console offers them as ``<plugin> <command>``.
        """
        return {
            handle.name: commands
            for handle in self._handles.values()
            if handle.state is PluginState.STARTED and (commands := plugin_commands(handle.plugin))
        }

    def subscribe(self, callback: Callable[[RuntimeEvent], Any]) -> Subscription:
        """Call ``callback(event)`` for every :class:`RuntimeEvent`; returns the unsubscribe handle."""
        return self._events.subscribe(callback)

    def __repr__(self) -> str:
        plugins = ", ".join(f"{h.name}({h.state})" for h in self._handles.values())
        extra = f" failures={len(self._failures)}" if self._failures else ""
        watching = f" watching={len(self._watchers)}" if self._watchers else ""
        count = len(self._handles)
        return f"<Runtime {count} plugin{'' if count == 1 else 's'}: {plugins or '-'}{extra}{watching}>"

    # -- loading ----------------------------------------------------------------------------
    async def load(
        self,
        path: PathLike,
        *,
        recursive: bool = False,
        base: type | None = None,
        classes: Iterable[str] | None = None,
        names: Iterable[str] | None = None,
        start: bool = True,
    ) -> list[PluginHandle]:
        """Load a plugin file, package, extension module, or a directory of them.

        ``base``/``classes`` select the plugin classes (default: subclasses of the runtime's
        ``base``); ``names`` restricts a directory to the sources with those module names.
        A single source raises :class:`PluginLoadError` on failure; a directory loads what
        it can and reports the rest (events, log, :attr:`failures`). Loading something
        already loaded is a no-op that returns its handles.
        """
        selector = Selector(base or self.base, tuple(classes) if classes is not None else None)
        target = Path(path).expanduser().resolve()
        ref = classify(target)
        async with self._locked():
            if ref is not None:
                return await self._load_source(ref, selector, start=start, strict=True)
            if not target.exists():
                raise PluginLoadError("no such file or directory; check the path", path=target, file=str(target))
            if not target.is_dir():
                raise PluginLoadError(
                    "not a plugin source: expected a .py file, a package directory, an extension "
                    "module (with identifier names) or a directory of those",
                    path=target,
                    file=str(target),
                )
            wanted = set(names) if names is not None else None
            handles: list[PluginHandle] = []
            for found in discover(target, recursive=recursive):
                if wanted is None or found.stem in wanted:
                    handles += await self._load_source(found, selector, start=start, strict=False)
            return handles

    async def load_binary(self, path: PathLike, *, names: Iterable[str] | None = None) -> list[PluginHandle]:
        """Load binary extension modules: one file, or those in a directory (optionally by ``names``)."""
        target = Path(path).expanduser().resolve()
        ref = classify(target)
        if ref is not None and ref.kind != "extension":
            raise PluginLoadError("not a binary extension module", path=target, file=str(target))
        async with self._locked():
            if ref is not None:
                return await self._load_source(ref, Selector(self.base), start=True, strict=True)
            wanted = set(names) if names is not None else None
            handles: list[PluginHandle] = []
            for found in discover(target):
                if found.kind == "extension" and (wanted is None or found.stem in wanted):
                    handles += await self._load_source(found, Selector(self.base), start=True, strict=False)
            return handles

    async def _load_source(
        self, ref: SourceRef, selector: Selector, *, start: bool, strict: bool, snapshot: dict[Path, bytes] | None = None
    ) -> list[PluginHandle]:
        existing = self._sources.get(ref.path)
        if existing is not None:
            return [self._handles[name] for name in existing.names]
        snapshot = read_snapshot(ref) if snapshot is None else snapshot
        files = {path: digest(data) for path, data in snapshot.items()}
        if not strict and self._inert.get(ref.path) == files:
            return []
        try:
            staged = build_version(ref, self._root_for(ref), selector, snapshot, self._copies)
            if not staged.plugins:
                PluginImporter.install().unregister(staged.root)
                if not strict:  # a helper or data module: remember it, do not run it again
                    logger.debug("%s defines no plugin; skipped until it changes", ref.path)
                    self._inert[ref.path] = files
                    self._failures.pop(ref.path, None)
                    return []
                raise PluginLoadError(f"defines no plugin ({selector.describe()})", path=ref.path, file=str(ref.path))
            self._check_name_conflicts(staged, owner=None)
        except PluginLoadError as error:
            PluginImporter.install().unregister(self._root_for(ref))
            self._failures[ref.path] = (files, error, selector)
            self._events.emit(RuntimeEvent("load_failed", None, ref.path, error=error))
            if strict:
                raise
            return []
        self._failures.pop(ref.path, None)
        self._inert.pop(ref.path, None)
        source = _Source(ref, staged.root, selector, staged.modules, staged.files)
        commit_modules(source.root, staged.modules)
        self._sources[ref.path] = source
        handles = []
        for name, instance in staged.plugins:
            handle = PluginHandle(name, ref.path, ref.kind, staged.root, instance, dict(staged.files))
            self._handles[name] = handle
            source.names.append(name)
            handles.append(handle)
            self._events.emit(RuntimeEvent("loaded", name, ref.path, handle.generation))
        if start and ref.kind != "extension":
            failed = [await self._start(handle) for handle in handles]
            errors = [error for error in failed if error is not None]
            if strict and errors:
                raise errors[0]
        return handles

    def _root_for(self, ref: SourceRef) -> str:
        root = root_module_name(self.namespace, ref)
        # An extension's module name must end in its own name: CPython calls PyInit_<last part>.
        return f"{root}.{ref.stem}" if ref.kind == "extension" else root

    def _check_name_conflicts(self, staged: StagedVersion, owner: _Source | None) -> None:
        for name, _ in staged.plugins:
            handle = self._handles.get(name)
            if handle is not None and (owner is None or name not in owner.names):
                raise PluginLoadError(
                    f"plugin name {name!r} is already used by {handle.path}; give one of them another `name`",
                    name=name,
                    path=staged.ref.path,
                    file=str(staged.ref.path),
                )

    async def _start(self, handle: PluginHandle) -> PluginLoadError | None:
        try:
            await call_lifecycle(handle.plugin, "start", self.start_timeout)
        except Exception as exc:
            file, line = locate_error(exc, handle.files, handle.path)
            error = PluginLoadError(
                f"start() failed: {describe(exc)}", name=handle.name, path=handle.path, file=file, line=line, cause=exc
            )
            error.__cause__ = exc
            handle.state, handle.error = PluginState.FAILED, error
            self._events.emit(RuntimeEvent("load_failed", handle.name, handle.path, handle.generation, error))
            await self._discard(handle.plugin)
            return error
        handle.state, handle.error = PluginState.STARTED, None
        self._events.emit(RuntimeEvent("started", handle.name, handle.path, handle.generation))
        return None

    async def _stop(self, handle: PluginHandle, timeout: float | None) -> PluginError | None:
        """Stop a started plugin; a failure or timeout is recorded and reported, never raised."""
        if handle.state is not PluginState.STARTED:
            return None
        error = None
        try:
            await call_lifecycle(handle.plugin, "stop", timeout)
        except Exception as exc:
            file, line = locate_error(exc, handle.files, handle.path)
            error = PluginError(
                f"stop() failed: {describe(exc)}", name=handle.name, path=handle.path, file=file, line=line, cause=exc
            )
            handle.state, handle.error = PluginState.FAILED, error
        else:
            handle.state = PluginState.STOPPED
        self._events.emit(RuntimeEvent("stopped", handle.name, handle.path, handle.generation, error))
        return error

    async def start_plugin(self, name: str) -> PluginHandle:
        """Start a loaded or stopped plugin again; raises :class:`PluginLoadError` if ``start()`` fails."""
        async with self._locked():
            handle = self.handle(name)
            if handle.kind == "extension" or handle.state is PluginState.STARTED:
                return handle
            error = await self._start(handle)
            if error is not None:
                raise error
            return handle

    async def stop_plugin(self, name: str, *, timeout: float | None = None) -> PluginHandle:
        """Stop a plugin but keep it registered (and its modules loaded)."""
        async with self._locked():
            handle = self.handle(name)
            await self._stop(handle, self.stop_timeout if timeout is None else timeout)
            return handle

    # -- reloading --------------------------------------------------------------------------
    async def reload(
        self, target: PathLike, *, health_check: HealthCheck | None = None, force: bool = False
    ) -> list[PluginHandle]:
        """Atomically replace a plugin's source (by plugin name or path) with its current files.

        The new version is imported, instantiated, started and health-checked beside the
        old one; only then are they swapped (``migrate_from`` carries state) and the old
        one stopped. On any failure the old version keeps serving untouched and
        :class:`ReloadError` (with file and line) is raised. Unchanged files (same sha256)
        are not reloaded unless ``force``.

        A source that failed to *load* (see :attr:`failures`; give its path) has no old
        version to keep: it is loaded again, raising :class:`PluginLoadError` on failure.
        """
        async with self._locked():
            retry = self._failed_source(target)
            if retry is not None:
                ref, selector = retry
                return await self._load_source(ref, selector, start=True, strict=True)
            source = self._source_for(target)
            return await self._reload_source(source, health_check=health_check, force=force)

    def _failed_source(self, target: PathLike) -> tuple[SourceRef, Selector] | None:
        if isinstance(target, str) and target in self._handles:
            return None
        path = Path(target).expanduser().resolve()
        recorded = self._failures.get(path)
        ref = classify(path) if recorded is not None else None
        return (ref, recorded[2]) if ref is not None else None

    async def reload_changed(self, *, health_check: HealthCheck | None = None) -> list[PluginHandle]:
        """Reload every source whose files changed; failures are reported, not raised."""
        reloaded: list[PluginHandle] = []
        async with self._locked():
            for source in list(self._sources.values()):
                try:
                    before = {name: self._handles[name].generation for name in source.names}
                    handles = await self._reload_source(source, health_check=health_check, force=False)
                except ReloadError:
                    continue  # already reported as a reload_failed event
                reloaded += [h for h in handles if before.get(h.name) != h.generation]
        return reloaded

    async def _reload_source(
        self,
        source: _Source,
        *,
        health_check: HealthCheck | None,
        force: bool,
        snapshot: dict[Path, bytes] | None = None,
    ) -> list[PluginHandle]:
        ref = source.ref
        snapshot = read_snapshot(ref) if snapshot is None else snapshot
        if not force and {path: digest(data) for path, data in snapshot.items()} == source.files:
            logger.debug("%s unchanged (sha256); not reloaded", ref.path)
            return [self._handles[name] for name in source.names]
        old = {name: self._handles[name] for name in source.names}
        # A plugin the admin stopped (or never started) is replaced but not started.
        idle = {name for name, h in old.items() if h.state in (PluginState.LOADED, PluginState.STOPPED)}
        started: list[Any] = []
        staged: StagedVersion | None = None
        try:
            staged = build_version(ref, source.root, source.selector, snapshot, self._copies)
            if not staged.plugins:
                raise PluginLoadError(
                    f"the new version defines no plugin ({source.selector.describe()})", path=ref.path, file=str(ref.path)
                )
            self._check_name_conflicts(staged, owner=source)
            for name, instance in staged.plugins:
                if ref.kind != "extension" and name not in idle:
                    started.append(instance)  # even a failed start() gets a stop() to clean up
                    await call_lifecycle(instance, "start", self.start_timeout)
                    await check_health(instance, health_check, self.start_timeout)
                elif ref.kind == "extension":
                    await check_health(instance, health_check, self.start_timeout)
            # From here to the swap nothing awaits: no other task sees a half-done state.
            for name, instance in staged.plugins:
                previous = old.get(name)
                if previous is not None and callable(getattr(instance, "migrate_from", None)):
                    instance.migrate_from(previous.plugin)
        except BaseException as exc:
            for instance in reversed(started):
                await self._discard(instance)
            if not isinstance(exc, Exception):
                raise
            raise self._reload_failed(source, old, staged, exc) from exc
        retired = {name: (handle.plugin, handle.state, handle.generation) for name, handle in old.items()}
        self._commit(source, staged, old, idle)
        for name, (instance, state, generation) in retired.items():
            if state is PluginState.STARTED:
                await self._retire(name, instance, ref.path, generation)
            if name in source.names:
                self._events.emit(RuntimeEvent("reloaded", name, ref.path, self._handles[name].generation))
            else:  # the new version no longer defines it
                self._events.emit(RuntimeEvent("unloaded", name, ref.path, generation))
        return [self._handles[name] for name in source.names]

    async def _retire(self, name: str, instance: Any, path: Path, generation: int) -> None:
        """Stop a replaced version; by now the new one serves, so a failure is only reported."""
        try:
            await call_lifecycle(instance, "stop", self.stop_timeout)
        except Exception as exc:
            logger.warning("plugin %r: stopping replaced generation %d failed: %s", name, generation, describe(exc))

    def _reload_failed(
        self, source: _Source, old: dict[str, PluginHandle], staged: StagedVersion | None, exc: Exception
    ) -> ReloadError:
        cause = exc.cause if isinstance(exc, PluginError) and exc.cause is not None else exc
        if isinstance(exc, PluginError) and exc.file:
            file, line = exc.file, exc.line
        else:
            file, line = locate_error(exc, staged.files if staged else source.files, source.ref.path)
        generations = ", ".join(f"{name} generation {h.generation}" for name, h in old.items())
        message = exc.message if isinstance(exc, PluginError) else describe(exc)
        error = ReloadError(
            f"reload failed, previous version keeps serving ({generations}): {message}",
            name=next(iter(old), None),
            path=source.ref.path,
            file=file,
            line=line,
            cause=cause,
        )
        for name, handle in old.items():
            handle.error = error
            self._events.emit(RuntimeEvent("reload_failed", name, source.ref.path, handle.generation, error))
        return error

    async def _discard(self, instance: Any) -> None:
        """Stop a new version that will not be used; its failure must not mask the original one."""
        try:
            await call_lifecycle(instance, "stop", self.stop_timeout)
        except Exception:
            logger.exception("stopping the rejected new version of %r failed", instance)

    def _commit(
        self, source: _Source, staged: StagedVersion, old: dict[str, PluginHandle], idle: set[str]
    ) -> None:
        commit_modules(source.root, staged.modules)
        source.modules, source.files, source.names = staged.modules, staged.files, []
        now = time.time()
        for name, instance in staged.plugins:
            handle = old.get(name)
            if source.ref.kind == "extension":
                started = PluginState.LOADED
            else:
                started = handle.state if name in idle and handle is not None else PluginState.STARTED
            if handle is None:
                handle = PluginHandle(name, source.ref.path, source.ref.kind, source.root, instance, dict(staged.files))
                handle.state = started
                self._handles[name] = handle
                self._events.emit(RuntimeEvent("loaded", name, source.ref.path, handle.generation))
            else:
                handle.plugin, handle.files, handle.loaded_at = instance, dict(staged.files), now
                handle.generation += 1
                handle.state, handle.error = started, None
            source.names.append(name)
        for name, handle in old.items():
            if name not in source.names:
                del self._handles[name]

    # -- unloading --------------------------------------------------------------------------
    async def unload(self, target: PathLike, *, timeout: float | None = None) -> list[str]:
        """Stop a plugin's source (by plugin name or exact path) and remove its modules.

        ``stop()`` gets ``timeout`` seconds (default: the runtime's ``stop_timeout``); a
        plugin that overruns is reported and removed anyway. Returns the plugin names removed.
        """
        async with self._locked():
            return await self._unload_source(self._source_for(target), timeout)

    async def _unload_source(self, source: _Source, timeout: float | None) -> list[str]:
        timeout = self.stop_timeout if timeout is None else timeout
        errors = {name: await self._stop(self._handles[name], timeout) for name in reversed(source.names)}
        remove_modules(source.root)
        PluginImporter.install().unregister(source.root)
        del self._sources[source.ref.path]
        for name in source.names:
            handle = self._handles.pop(name)
            self._events.emit(RuntimeEvent("unloaded", name, source.ref.path, handle.generation, errors[name]))
        return list(source.names)

    def _source_for(self, target: PathLike) -> _Source:
        if isinstance(target, str) and target in self._handles:
            return self._sources[self._handles[target].path]
        path = Path(target).expanduser().resolve()
        source = self._sources.get(path)  # exact path: /p/foo never matches /p/foobar
        if source is None:
            raise PluginNotFound(
                f"no plugin or plugin source {str(target)!r}; plugins: {', '.join(self._handles) or 'none'}",
                path=path,
            )
        return source

    # -- watching ---------------------------------------------------------------------------
    def watch(
        self,
        *directories: PathLike,
        recursive: bool = False,
        interval: float = 0.25,
        debounce: float = 0.3,
        base: type | None = None,
        classes: Iterable[str] | None = None,
    ) -> Watcher:
        """Poll ``directories`` and load, reload or unload sources as their files change.

        Must be called on the runtime's loop; stop it with ``await watcher.stop()``.
        A change is acted on once the files stayed still for ``debounce`` seconds, and
        only if their sha256 differs from the loaded version.
        """
        self._check_loop()
        if not directories:
            raise ValueError("watch() needs at least one directory")
        selector = Selector(base or self.base, tuple(classes) if classes is not None else None)
        watcher = Watcher(
            self,
            [Path(d).expanduser().resolve() for d in directories],
            selector=selector,
            recursive=recursive,
            interval=interval,
            debounce=debounce,
        )
        self._watchers.append(watcher)
        watcher.start()
        return watcher

    def _forget_watcher(self, watcher: Watcher) -> None:
        if watcher in self._watchers:
            self._watchers.remove(watcher)

    def known_paths(self) -> set[Path]:
        """Every source path the runtime tracks: loaded, failed, or without plugins."""
        return set(self._sources) | set(self._failures) | set(self._inert)

    async def refresh(self, path: PathLike, *, selector: Selector | None = None) -> str:
        """Bring one source path in line with the disk; returns what happened.

        ``"loaded"``, ``"reloaded"``, ``"unchanged"``, ``"unloaded"``, ``"failed"``,
        ``"inert"`` (no plugin in it) or ``"forgotten"`` (a failed/inert file vanished).
        Failures are reported through events and the log, not raised. Used by the watcher.
        """
        target = Path(path).expanduser().resolve()
        async with self._locked():
            ref = classify(target) if target.exists() else None
            source = self._sources.get(target)
            if source is not None:
                if ref is None:
                    await self._unload_source(source, None)
                    return "unloaded"
                snapshot = read_snapshot(ref)
                if {p: digest(d) for p, d in snapshot.items()} == source.files:
                    return "unchanged"
                try:
                    await self._reload_source(source, health_check=None, force=True, snapshot=snapshot)
                except ReloadError:
                    return "failed"
                return "reloaded"
            if ref is None:
                known = self._failures.pop(target, None) or self._inert.pop(target, None)
                return "forgotten" if known else "unchanged"
            snapshot = read_snapshot(ref)
            files = {p: digest(d) for p, d in snapshot.items()}
            recorded = self._failures.get(target)
            if self._inert.get(target) == files or (recorded is not None and recorded[0] == files):
                return "unchanged"
            handles = await self._load_source(
                ref, selector or Selector(self.base), start=True, strict=False, snapshot=snapshot
            )
            if target in self._failures:
                return "failed"
            return "loaded" if handles else "inert"

    # -- lifetime ---------------------------------------------------------------------------
    async def aclose(self) -> None:
        """Stop watchers, unload every plugin (last loaded first) and release the namespace."""
        if self._closed:
            return
        for watcher in list(self._watchers):
            await watcher.stop()
        async with self._locked():
            for source in reversed(list(self._sources.values())):
                await self._unload_source(source, None)
            self._failures.clear()
            self._inert.clear()
            self._closed = True
        self._copies.cleanup()
        release_namespace(self.namespace)

    async def __aenter__(self) -> Runtime:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _check_loop(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise RuntimeError(
                "this Runtime lives on another event loop; from another thread use "
                "asyncio.run_coroutine_threadsafe(runtime.<method>(...), runtime.loop)"
            )
        return loop

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the runtime is bound to (set on first use)."""
        return self._loop

    def _locked(self) -> _RuntimeLock:
        self._check_loop()
        if self._closed:
            raise RuntimeError("this Runtime is closed; create a new one")
        return _RuntimeLock(self)


class _RuntimeLock:
    """The runtime's lock, refusing re-entry (a plugin's ``start()`` calling ``runtime.load``)."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    async def __aenter__(self) -> None:
        runtime = self._runtime
        task = asyncio.current_task()
        if task is not None and runtime._lock_owner is task:
            raise RuntimeError(
                "re-entrant Runtime call: a plugin's start()/stop()/health() cannot load, reload or "
                "unload plugins; schedule it as a separate task instead"
            )
        await runtime._lock.acquire()
        runtime._lock_owner = task

    async def __aexit__(self, *exc_info: object) -> None:
        self._runtime._lock_owner = None
        self._runtime._lock.release()


class PluginsView:
    """``runtime.plugins.<name>``: always the currently serving version of a plugin."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def __getattr__(self, name: str) -> Any:
        plugin = self._runtime.get(name, _MISSING)
        if plugin is _MISSING:
            raise AttributeError(f"no plugin named {name!r}; loaded: {', '.join(self._runtime.names()) or 'none'}")
        return plugin

    def __dir__(self) -> list[str]:
        return self._runtime.names()

    def __repr__(self) -> str:
        return f"<plugins: {', '.join(self._runtime.names()) or 'none'}>"


_MISSING = object()

