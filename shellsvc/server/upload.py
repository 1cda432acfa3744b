"""The patches directory: SFTP/scp uploads jailed into it, and applying the patch files there.

``scp fix.py admin@host:`` and ``sftp admin@host`` reach one directory,
``<state_dir>/patches`` (0700), and nothing else: the client sees it as ``/``; a path
naming anything but a plain file directly inside it is refused, symbolic links are
never followed (files are opened ``O_NOFOLLOW``), directories cannot be made, and
uploaded files are created 0600. Only admins get SFTP or scp; every refusal, upload,
rename and removal is audited.

asyncssh's ``sftp_factory``/``allow_scp`` listen options cannot be used: with them
asyncssh serves *every* session channel itself and never asks the server for the
session, which would bypass roles and audit. Instead :class:`ChannelSession` hands a
channel that asked for ``sftp`` (or ran ``scp``) to :func:`open_upload`'s stream session.

A patch file is a Python module defining ``PATCHES``, a mapping (or list of pairs) of
target -> replacement as accepted by :meth:`PatchManager.patch`, and optionally
``health_check()``. :func:`apply_patch_file` applies all of it or nothing.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import posixpath
import re
import stat
import types
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncssh
from asyncssh.sftp import MIN_SFTP_VERSION
from asyncssh.stream import SSHServerStreamSession

from shellsvc.patching import PatchError, PatchManager, PatchRecord
from shellsvc.patching.manager import health_check_result
from shellsvc.protocol import valid_patch_name

from .audit import AuditLog

if TYPE_CHECKING:
    from .service import Service

__all__ = ["PatchDirectory", "PatchFileError", "PatchesSFTPServer", "apply_patch_file", "open_upload",
           "patch_directory"]

log = logging.getLogger(__name__)

#: Largest file accepted by an upload.
MAX_UPLOAD = 4 * 1024 * 1024


class PatchFileError(PatchError):
    """A patch file is missing, malformed, or failed to apply (nothing stays applied)."""


class PatchDirectory:
    """One directory of uploaded patch files; names are checked before any path is built."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def ensure(self) -> Path:
        """Create the directory (0700) and refuse one that is a symlink or open to others."""
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = os.lstat(self.path)
        if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
            raise PatchFileError(f"patches directory {self.path} is not a plain directory; remove it")
        if stat.S_IMODE(info.st_mode) & 0o077:
            raise PatchFileError(f"patches directory {self.path} is accessible by group/others "
                                 f"(mode {stat.S_IMODE(info.st_mode):04o}); run `chmod 700 {self.path}`")
        return self.path

    def file(self, name: str) -> Path:
        """The patch file ``name``; PatchFileError names what is wrong if there is none."""
        if not valid_patch_name(name):
            raise PatchFileError(f"{name!r} is not a patch file name: use a plain file name such as fix.py "
                                 "(letters, digits, '_', '-', '.'; no directories)")
        path = self.path / name
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            known = ", ".join(self.files()) or "none"
            raise PatchFileError(f"no patch file {name!r} in the patches directory (uploaded: {known}); "
                                 f"upload it first: scp {name} USER@HOST:") from None
        if not stat.S_ISREG(info.st_mode):
            raise PatchFileError(f"{name!r} in the patches directory is not a regular file")
        return path

    def files(self) -> list[str]:
        """Names of the regular files in the directory, sorted."""
        try:
            entries = list(os.scandir(self.path))
        except FileNotFoundError:
            return []
        return sorted(e.name for e in entries if e.is_file(follow_symlinks=False))


def patch_directory(service: Service) -> PatchDirectory:
    """The service's patches directory: the first of its patch manager's ``patch_dirs``
    (where the patch library also finds admins' own patches), else ``<state_dir>/patches``."""
    dirs = getattr(getattr(service, "patches", None), "patch_dirs", None)
    return PatchDirectory(Path(dirs[0]) if dirs else service.config.server.state_dir / "patches")


# -- applying ----------------------------------------------------------------------------------

def _load(path: Path) -> types.ModuleType:
    """Run the patch file as a fresh module (the caller is a worker thread, never the loop)."""
    source = path.read_text(encoding="utf-8")
    module = types.ModuleType("shellsvc_patchfile_" + re.sub(r"\W", "_", path.stem))
    module.__file__ = str(path)
    try:
        code = compile(source, str(path), "exec")
    except SyntaxError as exc:
        raise PatchFileError(f"{path.name}: line {exc.lineno}: {exc.msg}; nothing was applied") from None
    exec(code, module.__dict__)
    return module


def _entries(module: types.ModuleType, name: str) -> list[tuple[Any, Any]]:
    patches = getattr(module, "PATCHES", None)
    if isinstance(patches, dict):
        entries = list(patches.items())
    elif isinstance(patches, (list, tuple)) and all(isinstance(p, tuple) and len(p) == 2 for p in patches):
        entries = list(patches)
    else:
        raise PatchFileError(f"{name}: define PATCHES = {{'module.function': replacement, ...}} "
                             f"(a dict or a list of (target, replacement) pairs); got {type(patches).__name__}")
    if not entries:
        raise PatchFileError(f"{name}: PATCHES is empty; nothing to apply")
    return entries


def apply_patch_file(manager: PatchManager, path: Path, *, user: str | None = None) -> list[PatchRecord]:
    """Apply every entry of the patch file at ``path``, or none of them.

    Entries are applied in order; if one is refused or fails, or ``health_check()``
    raises or returns a false value afterwards, the ones already applied are rolled
    back and :class:`PatchFileError` says which entry and why.
    """
    name = path.name
    try:
        module = _load(path)
    except PatchFileError:
        raise
    except Exception as exc:
        raise PatchFileError(f"{name}: running the file raised {type(exc).__name__}: {exc}; nothing was applied") from exc
    entries = _entries(module, name)
    summary = (module.__doc__ or "").strip().splitlines()  # empty for a blank docstring
    note = f"{name}: {summary[0]}" if summary else name
    applied: list[PatchRecord] = []
    try:
        for target, replacement in entries:
            try:
                applied.append(manager.patch(target, replacement, user=user, note=note))
            except Exception as exc:
                raise PatchFileError(f"{name}: patching {target!r} failed: {type(exc).__name__}: {exc}") from exc
        check: Callable[[], Any] | None = getattr(module, "health_check", None)
        if check is not None:
            try:
                result = health_check_result(check)  # awaited if async, as for patch(health_check=)
            except Exception as exc:
                raise PatchFileError(f"{name}: health_check() raised {type(exc).__name__}: {exc}") from exc
            if not result and result is not None:
                raise PatchFileError(f"{name}: health_check() returned {result!r}")
    except PatchFileError as exc:
        _undo(manager, applied, user)
        what = f"; rolled back #{', #'.join(str(r.id) for r in applied)}" if applied else "; nothing was applied"
        raise PatchFileError(f"{exc}{what}") from exc.__cause__
    log.info("patch file %s applied by %s: %s", name, user, ", ".join(f"#{r.id}" for r in applied))
    return applied


def _undo(manager: PatchManager, records: list[PatchRecord], user: str | None) -> None:
    for record in reversed(records):
        try:
            manager.rollback(record.id, user=user)
        except PatchError:
            log.exception("could not roll back patch #%d while undoing a patch file", record.id)


# -- SFTP / scp ----------------------------------------------------------------------------------

def _denied(what: str) -> asyncssh.SFTPPermissionDenied:
    return asyncssh.SFTPPermissionDenied(f"{what}: only plain files directly in the patches directory are reachable")


class PatchesSFTPServer(asyncssh.SFTPServer):
    """asyncssh's SFTP server, jailed into the patches directory (also serves scp)."""

    def __init__(self, chan: asyncssh.SSHServerChannel[bytes], directory: PatchDirectory, audit: AuditLog,
                 user: str, label: str) -> None:
        root = directory.ensure()
        super().__init__(chan, chroot=os.fsencode(root))
        self._root = os.fsencode(os.path.realpath(root))
        self._audit = audit
        self._user = user
        self._label = label
        self._writes: dict[int, tuple[str, Any]] = {}

    def _record(self, event: str, **fields: Any) -> None:
        self._audit.write(event, user=self._user, session=self._label, **fields)

    # -- the jail -------------------------------------------------------------------------
    def map_path(self, path: bytes) -> bytes:
        relative = posixpath.normpath(posixpath.join(b"/", path)).lstrip(b"/")
        if relative in (b"", b".") and b".." not in path.split(b"/"):
            return self._root
        name = os.fsdecode(relative)
        if b"/" in relative or b".." in path.split(b"/") or not valid_patch_name(name):
            self._record("upload_refused", path=os.fsdecode(path), reason="outside the patches directory")
            raise _denied(os.fsdecode(path))
        local = self._root + b"/" + relative
        if os.path.islink(local):
            self._record("upload_refused", path=name, reason="symbolic link")
            raise _denied(f"{name} is a symbolic link")
        return local

    def open(self, path: bytes, pflags: int, attrs: asyncssh.SFTPAttrs) -> object:
        local = self.map_path(path)
        if local == self._root:
            raise asyncssh.SFTPFailure("the patches directory itself cannot be opened as a file")
        writing = bool(pflags & (asyncssh.FXF_WRITE | asyncssh.FXF_APPEND))
        flags = os.O_NOFOLLOW | os.O_CLOEXEC
        flags |= (os.O_RDWR if pflags & asyncssh.FXF_READ else os.O_WRONLY) if writing else os.O_RDONLY
        for bit, os_bit in ((asyncssh.FXF_CREAT, os.O_CREAT), (asyncssh.FXF_TRUNC, os.O_TRUNC),
                            (asyncssh.FXF_EXCL, os.O_EXCL), (asyncssh.FXF_APPEND, os.O_APPEND)):
            if pflags & bit:
                flags |= os_bit
        try:
            fd = os.open(local, flags, 0o600)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise _denied(f"{os.fsdecode(path)} is a symbolic link") from None
            raise
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise _denied(f"{os.fsdecode(path)} is not a regular file")
        file_obj = os.fdopen(fd, "r+b" if writing and pflags & asyncssh.FXF_READ else ("wb" if writing else "rb"),
                             buffering=0)
        if writing:
            name = os.fsdecode(local[len(self._root) + 1:])
            self._writes[id(file_obj)] = (name, file_obj)
            self._record("upload_open", file=name)
        return file_obj

    def write(self, file_obj: object, offset: int, data: bytes) -> int:
        if offset + len(data) > MAX_UPLOAD:
            raise asyncssh.SFTPFailure(f"patch files are limited to {MAX_UPLOAD // (1024 * 1024)} MiB")
        return super().write(file_obj, offset, data)  # type: ignore[return-value]

    def close(self, file_obj: object) -> None:
        entry = self._writes.pop(id(file_obj), None)
        super().close(file_obj)
        if entry is not None:
            name = entry[0]
            data = (Path(os.fsdecode(self._root)) / name).read_bytes()
            self._record("upload", file=name, size=len(data), sha256=hashlib.sha256(data).hexdigest())
            log.info("%s uploaded patch file %s (%d bytes)", self._user, name, len(data))

    def scandir(self, path: bytes) -> Any:
        if self.map_path(path) != self._root:
            raise asyncssh.SFTPNoSuchFile("only the patches directory can be listed")
        return self._scan()

    async def _scan(self) -> Any:
        with os.scandir(self._root) as entries:
            for entry in entries:
                if entry.is_file(follow_symlinks=False):
                    yield asyncssh.SFTPName(os.fsencode(entry.name),
                                            attrs=asyncssh.SFTPAttrs.from_local(entry.stat(follow_symlinks=False)))

    def stat(self, path: bytes) -> Any:
        return os.lstat(self.map_path(path))  # never follow a link (map_path refuses them anyway)

    def remove(self, path: bytes) -> None:
        local = self.map_path(path)
        if local == self._root:
            raise _denied("/")
        super().remove(path)
        self._record("upload_remove", file=os.fsdecode(os.path.basename(local)))

    def rename(self, oldpath: bytes, newpath: bytes) -> None:
        old, new = self.map_path(oldpath), self.map_path(newpath)
        if self._root in (old, new):
            raise _denied("/")
        super().rename(oldpath, newpath)
        self._record("upload_rename", file=os.fsdecode(os.path.basename(old)), to=os.fsdecode(os.path.basename(new)))

    posix_rename = rename

    def setstat(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        attrs.permissions = None  # scp -p / sftp chmod: files stay 0600
        attrs.uid = attrs.gid = None
        super().setstat(path, attrs)

    def fsetstat(self, file_obj: object, attrs: asyncssh.SFTPAttrs) -> None:
        attrs.permissions = None
        attrs.uid = attrs.gid = None
        super().fsetstat(file_obj, attrs)

    def _refuse(self, what: str) -> None:
        self._record("upload_refused", reason=what)
        raise asyncssh.SFTPPermissionDenied(f"{what} is not allowed in the patches directory")

    def mkdir(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        self._refuse("making directories")

    def rmdir(self, path: bytes) -> None:
        self._refuse("removing directories")

    def symlink(self, oldpath: bytes, newpath: bytes) -> None:
        self._refuse("making symbolic links")

    def link(self, oldpath: bytes, newpath: bytes) -> None:
        self._refuse("making hard links")

    def readlink(self, path: bytes) -> bytes:
        raise _denied(os.fsdecode(path))

    lsetstat = setstat

    def exit(self) -> None:
        for _, file_obj in list(self._writes.values()):
            self.close(file_obj)
        self._record("upload_close")
        # sshd reports the sftp-server's exit status; without one, OpenSSH's scp exits 1.
        # (After an scp transfer the channel is already closed and this does nothing.)
        self.channel.exit(0)


def open_upload(service: Service, chan: asyncssh.SSHServerChannel[str], user: str, role: str, label: str,
                request: str) -> asyncssh.SSHServerSession[Any] | None:
    """The session serving an ``sftp`` subsystem or ``scp`` command on ``chan``; None if refused.

    ``request`` is ``"sftp"`` or the scp command line. Refusals are audited here.
    """
    audit = service.audit
    kind = "sftp" if request == "sftp" else "scp"
    if role != "admin":
        audit.write("upload_refused", user=user, session=label, kind=kind, reason=f"role {role} may not upload")
        return None
    directory = patch_directory(service)
    try:
        directory.ensure()
    except (OSError, PatchFileError) as exc:
        log.error("refusing %s for %s: %s", kind, user, exc)
        audit.write("upload_refused", user=user, session=label, kind=kind, reason=str(exc))
        return None
    def sftp_server(sftp_chan: Any) -> PatchesSFTPServer:
        return PatchesSFTPServer(sftp_chan, directory, audit, user, label)

    session = SSHServerStreamSession(None, sftp_server,
                                     sftp_version=MIN_SFTP_VERSION, allow_scp=True)
    session.connection_made(chan)
    accepted = session.subsystem_requested("sftp") if kind == "sftp" else session.exec_requested(request)
    audit.write("upload_session", user=user, session=label, kind=kind, command=None if kind == "sftp" else request)
    return session if accepted else None
