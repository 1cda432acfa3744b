"""What the service adds to an admin's Python namespace, next to the application's names.

* the patch tools on the service's :class:`~shellsvc.patching.PatchManager` (``patch``,
  ``rollback``, ``patches``, ``commit_patch``, ``scoped_patch``, ``percall``, ``original``),
  each recording the admin - not the server's OS user - as the author;
* the generator tools (``copy_generator``, ``save_generator``, ``load_generator``, ...);
* ``cmd``: the console commands, run as this admin and audited like an operator's
  (``cmd("plugins reload ticker")``);
* the names started plugins offer (``Plugin.shell_names``), kept current as plugins are
  started, reloaded, stopped and unloaded.

A name the admin has rebound is never overwritten or removed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shellsvc.console import Console
    from shellsvc.engine import NamespaceRegistry
    from shellsvc.patching import PatchManager
    from shellsvc.runtime import Runtime

__all__ = ["AdminNames"]


class AdminNames:
    """Seeds and refreshes the service-provided names in admins' namespaces."""

    def __init__(self, namespaces: NamespaceRegistry, *, patches: PatchManager, runtime: Runtime | None,
                 console_for: Callable[[str], Console], loop: asyncio.AbstractEventLoop) -> None:
        self.namespaces = namespaces
        self.patches = patches
        self.runtime = runtime
        self._console_for = console_for
        self._loop = loop
        self._prepared: set[str] = set()
        self._plugin_names: dict[str, object] = {}

    def names_for(self, user: str) -> dict[str, Any]:
        """The fixed names for ``user`` (everything but the plugins' names)."""
        from shellsvc.console import CommandCaller
        from shellsvc.gencopy import shell_names
        from shellsvc.patching import admin_names

        # Admin code runs in engine worker threads that know nothing of the SSH session:
        # name the author explicitly, or the journal would record the server's OS user.
        names: dict[str, Any] = dict(admin_names(self.patches, user=user))
        names.update(shell_names())
        names["cmd"] = CommandCaller(self._console_for(user), self._loop)
        return names

    def prepare(self, user: str) -> None:
        """Add the names to ``user``'s namespace (once per user; on the loop)."""
        if user in self._prepared:
            return
        space = self.namespaces.get(user)
        for key, value in {**self.names_for(user), **self._plugin_names}.items():
            space.setdefault(key, value)
        self._prepared.add(user)

    def sync_plugins(self) -> None:
        """Bring every prepared namespace in line with what started plugins offer now."""
        offered = dict(self.runtime.shell_names()) if self.runtime is not None else {}
        previous, self._plugin_names = self._plugin_names, offered
        if offered.keys() == previous.keys() and all(offered[k] is previous[k] for k in offered):
            return
        for user in self._prepared:
            _replace_offered(self.namespaces.get(user), previous, offered)

    def __repr__(self) -> str:
        return f"<AdminNames users={sorted(self._prepared)} plugin names={sorted(self._plugin_names)}>"


def _replace_offered(space: dict[str, Any], previous: Mapping[str, object], offered: Mapping[str, object]) -> None:
    """Swap previously offered values for the new ones where the user has not rebound them."""
    missing = object()
    for key, old in previous.items():
        if key not in offered and space.get(key, missing) is old:
            del space[key]
    for key, value in offered.items():
        current = space.get(key, missing)
        if current is missing or current is previous.get(key, missing):
            space[key] = value
