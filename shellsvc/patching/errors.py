"""Exceptions raised by :mod:`shellsvc.patching`.

Every refusal happens *before* anything is changed, so catching one means the running
program is exactly as it was.
"""

from __future__ import annotations

__all__ = [
    "PatchCompileError",
    "PatchConflict",
    "PatchError",
    "PatchHealthError",
    "PatchNotFound",
    "PatchRefused",
    "ResolveError",
]


class PatchError(Exception):
    """Base class of every patching error."""


class PatchRefused(PatchError):
    """The target or the replacement cannot be patched safely; nothing was changed."""


class PatchCompileError(PatchRefused):
    """The replacement source does not compile; nothing was changed."""


class PatchConflict(PatchError):
    """Another patch of the same target is in progress, or later patches sit on top of this one."""


class PatchHealthError(PatchError):
    """The health check failed after applying; the patch was rolled back automatically."""


class PatchNotFound(PatchError, KeyError):
    """No patch with that id is in the journal."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "patch not found"


class ResolveError(PatchError, LookupError):
    """A dotted or short name does not resolve to an object."""
