"""Building a version of a plugin source without making it live.

:func:`build_version` imports a fresh copy (or initialises a fresh extension copy),
finds the plugin classes and instantiates them. Nothing is registered and ``sys.modules``
is untouched: the runtime decides afterwards whether to commit or to throw it away.
"""

from __future__ import annotations

import asyncio
import inspect
import types
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .binary import ExtensionCopies, load_extension
from .errors import PluginLoadError, describe, locate_error
from .importer import import_fresh
from .plugin import _snake_case
from .sources import SourceRef, digest

__all__ = ["Selector", "StagedVersion", "build_version", "call_lifecycle", "check_health"]

HealthCheck = Callable[[Any], "bool | Awaitable[bool]"]


@dataclass(frozen=True)
class Selector:
    """Which classes of a source are plugins: subclasses of ``base``, or the named ``classes``."""

    base: type
    classes: tuple[str, ...] | None = None

    def describe(self) -> str:
        if self.classes is not None:
            return f"a class named {', '.join(self.classes)}"
        return f"a concrete subclass of {self.base.__qualname__}"


@dataclass(eq=False)
class StagedVersion:
    """A built, not yet live, version of a source."""

    ref: SourceRef
    root: str
    modules: dict[str, types.ModuleType]
    files: dict[Path, str]
    plugins: list[tuple[str, Any]]  #: (name, instance) in definition order


def build_version(
    ref: SourceRef,
    root: str,
    selector: Selector,
    snapshot: dict[Path, bytes],
    copies: ExtensionCopies,
) -> StagedVersion:
    """Import/instantiate a new version of ``ref``; raise :class:`PluginLoadError` with file and line."""
    files = {path: digest(data) for path, data in snapshot.items()}
    if not files:
        raise PluginLoadError(f"no source files found (was {ref.path} deleted?)", path=ref.path, file=str(ref.path))
    try:
        if ref.kind == "extension":
            module = load_extension(root, ref, copies)
            return StagedVersion(ref, root, {root: module}, files, [(ref.stem, module)])
        modules = import_fresh(root, ref, snapshot)
        plugins = []
        for cls in select_classes(modules[root], set(modules), selector):
            instance = cls()
            plugins.append((plugin_name(instance), instance))
    except Exception as exc:
        file, line = locate_error(exc, files, ref.path)
        raise PluginLoadError(
            f"loading failed: {describe(exc)}", path=ref.path, file=file, line=line, cause=exc
        ) from exc
    names = [name for name, _ in plugins]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise PluginLoadError(
            f"several plugins in one source are named {', '.join(duplicates)}; give each a distinct `name`",
            path=ref.path,
            file=str(ref.path),
        )
    return StagedVersion(ref, root, modules, files, plugins)


def select_classes(root_module: types.ModuleType, module_names: set[str], selector: Selector) -> list[type]:
    """Plugin classes visible in the source's main module and defined by the source itself.

    Classes imported from elsewhere (e.g. the application's own plugin base class) are
    never instantiated.
    """
    chosen: list[type] = []
    for value in list(vars(root_module).values()):
        if not isinstance(value, type) or value.__module__ not in module_names or value in chosen:
            continue
        if selector.classes is not None:
            if value.__name__ in selector.classes:
                chosen.append(value)
        elif issubclass(value, selector.base) and value is not selector.base and not inspect.isabstract(value):
            chosen.append(value)
    return chosen


def plugin_name(instance: Any) -> str:
    name = getattr(instance, "name", None)
    if isinstance(name, str) and name:
        return name
    return _snake_case(type(instance).__name__)


async def call_lifecycle(instance: Any, method: str, timeout: float | None) -> None:
    """Await ``instance.<method>()`` (sync or async) within ``timeout`` seconds, if it exists."""
    function = getattr(instance, method, None)
    if function is None:
        return
    result = function()
    if inspect.isawaitable(result):
        # asyncio.timeout (not wait_for) keeps the call in the caller's task, which the
        # runtime's re-entrancy guard relies on.
        try:
            async with asyncio.timeout(timeout):
                await result
        except TimeoutError:
            raise TimeoutError(f"{method}() did not finish within {timeout} s") from None


async def check_health(instance: Any, health_check: HealthCheck | None, timeout: float | None) -> None:
    """Raise if the plugin's own ``health()`` or the caller's ``health_check`` reports failure."""
    checks: list[tuple[str, Callable[[], Any]]] = []
    if callable(getattr(instance, "health", None)):
        checks.append(("health()", instance.health))
    if health_check is not None:
        checks.append((f"health check {getattr(health_check, '__qualname__', health_check)!r}", lambda: health_check(instance)))
    for label, check in checks:
        result = check()
        if inspect.isawaitable(result):
            async with asyncio.timeout(timeout):
                result = await result
        if result is not None and not result:
            raise HealthCheckFailed(f"{label} reported {result!r}")


class HealthCheckFailed(Exception):
    """A health check returned a false value."""
