"""What the REPL and the operator console offer admins (wired in by the SSH service).

* :func:`admin_names` - ``patch``, ``rollback``, ``patches``, ``commit_patch`` (and the scoped /
  per-call tools) bound to one manager and, optionally, one user, for an admin's REPL
  namespace;
* :func:`patches_command` - the ``patches list | show <id> | rollback <id> | commit <id>``
  console command, returning the text to print (errors included, never raised).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from typing import Any

from .errors import PatchError
from .journal import PatchRecord
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


def admin_names(manager: PatchManager, *, user: str | None = None) -> dict[str, Callable[..., Any]]:
    """REPL names for admins; each acts on ``manager`` (its journal, its state dir).

    ``user`` is recorded as the author of every patch, rollback and commit made through
    these names; without it the author comes from :data:`~shellsvc.patching.current_user`
    (which the service sets per session) or the OS user.
    """

    def patch(
        target: Any, replacement: Any, *, health_check: Callable[[], Any] | None = None, note: str | None = None
    ) -> PatchRecord:
        """Hot-swap ``target`` (object or dotted name) with source text or a function.

        Every reference runs the new code; returns the journal record (``.id`` for
        ``rollback``). ``health_check`` runs after applying; failing it rolls back.
        """
        return manager.patch(target, replacement, user=user, health_check=health_check, note=note)

    def rollback(patch_id: int) -> PatchRecord:
        """Restore exactly what patch ``patch_id`` replaced (the original code objects)."""
        return manager.rollback(patch_id, user=user)

    def patches() -> _PatchList:
        """Every patch with its status, author and time; prints as a table."""
        return _PatchList(manager)

    def commit(patch_id: int) -> Any:
        """Write patch ``patch_id`` into its module's source file (a backup is kept next to it)."""
        return manager.commit(patch_id, user=user)

    return {
        "patch": patch,
        "rollback": rollback,
        "patches": patches,
        "commit_patch": commit,  # not ``commit``: too likely to mean the app's own (a database's)
        "scoped_patch": scoped_patch,
        "percall": percall,
        "original": original,
    }


def patches_command(manager: PatchManager, argv: list[str] | str, *, user: str | None = None) -> str:
    """Run the console's ``patches`` command; errors come back as text, never raised.

    ``user`` is recorded as the author of a rollback or commit.
    """
    try:
        args = shlex.split(argv) if isinstance(argv, str) else list(argv)
    except ValueError as exc:
        return f"error: cannot parse {argv!r}: {exc}\n{PATCHES_USAGE}"
    if not args or args == ["list"]:
        return manager.format_list()
    if len(args) != 2 or args[0] not in ("rollback", "commit", "show"):
        return PATCHES_USAGE
    try:
        patch_id = int(args[1].lstrip("#"))
    except ValueError:
        return f"not a patch id: {args[1]!r}\n{PATCHES_USAGE}"
    try:
        if args[0] == "rollback":
            record = manager.rollback(patch_id, user=user)
            return f"rolled back {record.summary()}"
        if args[0] == "commit":
            return f"patch #{patch_id} committed to {manager.commit(patch_id, user=user)}"
        record = manager.get(patch_id)
        return (
            f"{record.summary()}\n--- before\n{record.before_source or '(unavailable)'}\n"
            f"+++ after\n{record.after_source or '(unavailable)'}"
        )
    except PatchError as exc:
        return f"error: {exc}"
