"""Uploading a patch file over SFTP into the server's patches directory.

The server jails SFTP into that directory, which the client sees as ``/``; so the
remote name is just the file's name.
"""

from __future__ import annotations

from pathlib import Path

import asyncssh

from shellsvc.protocol import valid_patch_name

__all__ = ["UploadError", "upload_patch"]


class UploadError(Exception):
    """The file could not be uploaded; the message names it and the reason."""


async def upload_patch(conn: asyncssh.SSHClientConnection, path: Path, name: str | None = None) -> str:
    """Copy ``path`` to the patches directory as ``name`` (default: its file name)."""
    remote = name or path.name
    if not valid_patch_name(remote):
        raise UploadError(f"{remote!r} cannot be a patch file name: use letters, digits, '_', '-' and '.'")
    if not path.is_file():
        raise UploadError(f"{path}: no such file")
    try:
        async with conn.start_sftp_client() as sftp:
            await sftp.put(str(path), remote)
    except asyncssh.ChannelOpenError as exc:
        raise UploadError(f"upload of {path.name} refused: {exc.reason}") from None
    except (asyncssh.SFTPError, OSError) as exc:
        reason = getattr(exc, "reason", None) or str(exc)
        raise UploadError(f"upload of {path.name} failed: {reason} (only admins may upload; the server "
                          "refuses the sftp subsystem for other roles)") from None
    return remote
