"""What the REPL and the operator console offer admins (wired in by the SSH service).

* :func:`admin_names` - ``patch``, ``rollback``, ``patches`` (and friends) bound to one
  manager, for an admin's REPL namespace;
* :func:`patches_command` - the ``patches list|rollback <id>|commit <id>|show <id>``
  console command, returning the text to print.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from typing import Any

from .errors import PatchError
from .manager import PatchManager
from .percall import percall
from .scoped import original, scoped_patch

__all__ = ["PATCHES_USAGE", "admin_names", "patches_command"]

PATCHES_USAGE = "usage: patches list | patches show <id> | patches rollback <id> | patches commit <id>"


class _PatchList(list):  # type: ignore[type-arg]
    """``patches()`` in the REPL: a list of records that prints as a table."""

    def __init__(self, manager: PatchManager) -> None:
        super().__init__(manager.patches())
        self._manager = manager

    def __repr__(self) -> str:
        return self._manager.format_list()


def admin_names(manager: PatchManager) -> dict[str, Callable[..., Any]]:
    """REPL names for admins; each acts on ``manager`` (its journal, its state dir)."""

    def patch(target: Any, replacement: Any, *, health_check: Callable[[], Any] | None = None, note: str | None = None) -> Any:
        """Hot-swap ``target`` in place; returns the journal record (``.id`` for rollback)."""
        return manager.patch(target, replacement, health_check=health_check, note=note)

    def rollback(patch_id: int) -> Any:
        """Restore exactly what patch ``patch_id`` replaced."""
        return manager.rollback(patch_id)

    def patches() -> _PatchList:
        """Every patch with its status; prints as a table."""
        return _PatchList(manager)

    def commit(patch_id: int) -> Any:
        """Write patch ``patch_id`` into its source file (a backup is kept)."""
        return manager.commit(patch_id)

    return {
        "patch": patch,
        "rollback": rollback,
        "patches": patches,
        "commit_patch": commit,
        "scoped_patch": scoped_patch,
        "percall": percall,
        "original": original,
    }


def patches_command(manager: PatchManager, argv: list[str] | str) -> str:
    """Run the console's ``patches`` command; errors come back as text, never raised."""
    args = shlex.split(argv) if isinstance(argv, str) else list(argv)
    if not args or args[0] == "list":
        return manager.format_list()
    if len(args) != 2 or args[0] not in ("rollback", "commit", "show"):
        return PATCHES_USAGE
    try:
        patch_id = int(args[1].lstrip("#"))
    except ValueError:
        return f"not a patch id: {args[1]!r}\n{PATCHES_USAGE}"
    try:
        if args[0] == "rollback":
            record = manager.rollback(patch_id)
            return f"rolled back {record.summary()}"
        if args[0] == "commit":
            return f"patch #{patch_id} committed to {manager.commit(patch_id)}"
        record = manager.get(patch_id)
        return f"{record.summary()}\n--- before\n{record.before_source or '(unavailable)'}\n+++ after\n{record.after_source or '(unavailable)'}"
    except PatchError as exc:
        return f"error: {exc}"
