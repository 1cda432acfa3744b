"""shellsvc: a shell inside a live Python application.

The public API is re-exported here; each concern lives in its own sub-package
(``engine``, ``repl``, ``runtime``, ``patching``, ``gencopy``, ``server``, ``console``).

Exports are resolved lazily (PEP 562): ``from shellsvc import Service`` imports only
what ``Service`` needs, so light users such as ``shellsvc-client`` (which needs just
``shellsvc.protocol``) start quickly.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

#: Public name -> the sub-package that defines it, one group per concern.
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(("Engine", "ExecSession", "NamespaceRegistry", "Outcome", "Scheduler", "SessionIO"), "engine"),
    "embed": "repl",
    **dict.fromkeys(("Plugin", "PluginError", "PluginHandle", "ReloadError", "Runtime", "RuntimeEvent"), "runtime"),
    **dict.fromkeys(("PatchError", "PatchManager", "hotswap", "percall", "scoped_patch"), "patching"),
    **dict.fromkeys(("capture", "copy_generator", "load_generator", "resumable", "save_generator"), "gencopy"),
    **dict.fromkeys(("Arg", "CommandContext", "CommandError", "CommandRegistry", "CommandResult", "Console",
                     "OperatorConsole", "builtin_registry", "command", "run_console"), "console"),
    **dict.fromkeys(("ConfigError", "Service", "ServiceConfig", "hash_password", "load_config"), "server"),
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    package = _EXPORTS.get(name)
    if package is None:
        raise AttributeError(f"module 'shellsvc' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{package}", __name__), name)
    globals()[name] = value  # resolve once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # what static tools see: the same names, imported eagerly
    from .console import (Arg, CommandContext, CommandError, CommandRegistry, CommandResult, Console,
                          OperatorConsole, builtin_registry, command, run_console)
    from .engine import Engine, ExecSession, NamespaceRegistry, Outcome, Scheduler, SessionIO
    from .gencopy import capture, copy_generator, load_generator, resumable, save_generator
    from .patching import PatchError, PatchManager, hotswap, percall, scoped_patch
    from .repl import embed
    from .runtime import Plugin, PluginError, PluginHandle, ReloadError, Runtime, RuntimeEvent
    from .server import ConfigError, Service, ServiceConfig, hash_password, load_config
