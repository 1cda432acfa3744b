"""The plugin runtime: load, atomically reload (with rollback), unload and watch plugins.

See docs/runtime.md. ``Plugin`` is the base class for plugins, ``Runtime`` hosts them.
"""

from __future__ import annotations

from .errors import PluginError, PluginLoadError, PluginNotFound, ReloadError
from .events import EVENT_KINDS, RuntimeEvent, Subscription
from .handle import PluginHandle, PluginState
from .plugin import Plugin, plugin_commands
from .runtime import PluginsView, Runtime
from .sources import extension_module_name
from .watcher import Watcher

__all__ = [
    "EVENT_KINDS",
    "Plugin",
    "PluginError",
    "PluginHandle",
    "PluginLoadError",
    "PluginNotFound",
    "PluginState",
    "PluginsView",
    "ReloadError",
    "Runtime",
    "RuntimeEvent",
    "Subscription",
    "Watcher",
    "extension_module_name",
    "plugin_commands",
]
