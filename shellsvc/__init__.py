"""shellsvc: a shell inside a live Python application.

The public API is re-exported here; each concern lives in its own sub-package
(``engine``, ``repl``, ``runtime``, ``patching``, ``gencopy``, ``server``, ``console``).
"""

from __future__ import annotations

import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

# Public API, one line per concern.
from .engine import Engine, ExecSession, NamespaceRegistry, Outcome, SessionIO  # noqa: E402
from .repl import embed  # noqa: E402
from .runtime import Plugin, PluginError, PluginHandle, ReloadError, Runtime, RuntimeEvent  # noqa: E402
from .patching import PatchError, PatchManager, hotswap, percall, scoped_patch  # noqa: E402
from .gencopy import capture, copy_generator, load_generator, resumable, save_generator  # noqa: E402
from .console import Arg, CommandContext, CommandError, CommandRegistry, CommandResult, Console, OperatorConsole, builtin_registry, command, run_console  # noqa: E402
from .server import ConfigError, Service, ServiceConfig, hash_password, load_config  # noqa: E402

__all__ = [
    "Engine",
    "ExecSession",
    "NamespaceRegistry",
    "Outcome",
    "SessionIO",
    "embed",
    "Plugin",
    "PluginError",
    "PluginHandle",
    "ReloadError",
    "Runtime",
    "RuntimeEvent",
    "PatchError",
    "PatchManager",
    "hotswap",
    "percall",
    "scoped_patch",
    "resumable",
    "capture",
    "copy_generator",
    "save_generator",
    "load_generator",
    "Arg",
    "CommandContext",
    "CommandError",
    "CommandRegistry",
    "CommandResult",
    "Console",
    "OperatorConsole",
    "builtin_registry",
    "command",
    "run_console",
    "ConfigError",
    "Service",
    "ServiceConfig",
    "hash_password",
    "load_config",
    "__version__",
]
