"""Live patching: in-place hot swap with a journal and rollback, scoped and per-call patches.

See docs/patching.md. The pieces, one job each:

* :mod:`.hotswap` - compile and apply an in-place code swap (every reference sees it);
* :mod:`.manager` / :mod:`.journal` - ids, users, health checks, conflicts, rollback, persistence;
* :mod:`.events` - what the manager tells subscribers after every change;
* :mod:`.commit` - write a patch back into the source file;
* :mod:`.instrument` / :mod:`.scoped` - the ContextVar trampoline behind scoped patches;
* :mod:`.percall` / :mod:`.plugin_methods` - per-call ``monkey_patch=``/``decorator=``... options;
* :mod:`.resolve` - dotted and short names for targets and the ``patches`` library.
"""

from __future__ import annotations

from .console import admin_names, patches_command
from .errors import (
    PatchCompileError,
    PatchConflict,
    PatchError,
    PatchHealthError,
    PatchNotFound,
    PatchRefused,
    ResolveError,
)
from .events import PatchEvent, PatchSubscription
from .journal import PatchJournal, PatchRecord
from .manager import (
    PatchManager,
    ReapplyReport,
    commit,
    current_user,
    default_manager,
    hotswap,
    patches,
    rollback,
    set_default_manager,
)
from .percall import percall
from .plugin_methods import prepare_plugin_class
from .resolve import PatchResolver, default_resolver, resolve_patch, resolve_target, set_default_resolver
from .scoped import original, scoped_patch

#: The REPL name for a hot swap.
patch = hotswap

__all__ = [
    "PatchCompileError",
    "PatchConflict",
    "PatchError",
    "PatchEvent",
    "PatchHealthError",
    "PatchJournal",
    "PatchManager",
    "PatchNotFound",
    "PatchRecord",
    "PatchRefused",
    "PatchResolver",
    "PatchSubscription",
    "ReapplyReport",
    "ResolveError",
    "admin_names",
    "commit",
    "current_user",
    "default_manager",
    "default_resolver",
    "hotswap",
    "original",
    "patch",
    "patches",
    "percall",
    "patches_command",
    "prepare_plugin_class",
    "resolve_patch",
    "resolve_target",
    "rollback",
    "scoped_patch",
    "set_default_manager",
    "set_default_resolver",
]
