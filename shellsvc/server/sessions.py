"""One SSH session channel: decides what was asked for and hands it to the user's role.

PTY + shell: the role's interactive handler (the REPL for admins). Exec request, or a
``command=`` forced by the user's key: one command. Shell without a PTY
(``ssh host < script.py``): the channel's input is read to EOF and run as a script.
The ``shellsvc`` subsystem: the client protocol (:mod:`.subsystem`). The ``sftp``
subsystem or an ``scp`` command: handed to asyncssh's SFTP/scp server jailed in the
patches directory (:mod:`.upload`, admins only). Closing the channel or losing the
connection cancels whatever the session was running.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from typing import TYPE_CHECKING, Any

import asyncssh

from shellsvc.protocol import SUBSYSTEM

from .channelio import ChannelInput, ChannelOutput
from .context import RoleHandler, SessionContext
from .subsystem import SubsystemSession
from .upload import open_upload

if TYPE_CHECKING:
    from .auth import ShellServer
    from .service import Service

__all__ = ["ChannelSession"]

log = logging.getLogger(__name__)

_channel_numbers = itertools.count(1)

#: Signals from the client (``signal`` requests) that interrupt the running command.
_INTERRUPT_SIGNALS = frozenset({"INT", "TERM", "QUIT", "HUP"})


class ChannelSession(asyncssh.SSHServerSession):  # type: ignore[type-arg]
    def __init__(self, service: Service, server: ShellServer, handler: RoleHandler) -> None:
        assert server.user is not None
        self._service = service
        self._server = server
        self._handler = handler
        self.user = server.user.name
        self.role = server.user.role
        self.label = f"{self.user}/{server.conn_id}.{next(_channel_numbers)}"
        self._chan: asyncssh.SSHServerChannel[str] | None = None
        self._term_type: str | None = None
        self._command: str | None = None
        self._original_command: str | None = None
        self._ctx: SessionContext | None = None
        self._task: asyncio.Task[None] | None = None
        self._early_input: list[str] = []
        self._early_eof = False
        self._wants_subsystem = False
        self._subsystem: SubsystemSession | None = None  # the shellsvc protocol (subsystem.py)
        self._inner: asyncssh.SSHServerSession[Any] | None = None  # sftp/scp, served by upload.py
        self._opened = time.monotonic()

    # -- requests (before the session starts) ------------------------------------------------
    def connection_made(self, chan: asyncssh.SSHServerChannel[str]) -> None:
        self._chan = chan

    def pty_requested(self, term_type: str, term_size: tuple[int, int, int, int],
                      term_modes: object) -> bool:
        grant = self._server.grant
        if grant is not None and not grant.allow_pty:
            self._service.audit.write("pty_refused", user=self.user, session=self.label,
                                      reason=f"no-pty/restrict on authorized_keys line {grant.line}")
            return False
        self._term_type = term_type or "xterm"
        return True

    def shell_requested(self) -> bool:
        return self._start(None)

    def exec_requested(self, command: str) -> bool:
        if command.startswith("scp ") and not self._forced():
            return self._hand_over(command)
        return self._start(command)

    def subsystem_requested(self, subsystem: str) -> bool:
        if self._forced():
            return self._start(None)  # a key's command= wins over subsystems too, as in OpenSSH
        if subsystem == SUBSYSTEM:
            self._wants_subsystem = True
            return True
        if subsystem == "sftp":
            return self._hand_over("sftp")
        self._service.audit.write("subsystem_refused", user=self.user, session=self.label, subsystem=subsystem)
        return False

    def _forced(self) -> bool:
        return self._server.grant is not None and self._server.grant.forced_command is not None

    def _hand_over(self, request: str) -> bool:
        """SFTP/scp: an upload session (admins only) serves this channel from now on."""
        assert self._chan is not None
        self._inner = open_upload(self._service, self._chan, self.user, self.role, self.label, request)
        return self._inner is not None

    def _start(self, command: str | None) -> bool:
        grant = self._server.grant
        if grant is not None and grant.forced_command is not None:
            self._original_command = command
            command = grant.forced_command
        self._command = command
        return True

    # -- running --------------------------------------------------------------------------------
    def session_started(self) -> None:
        if self._inner is not None:
            self._inner.session_started()
            return
        chan = self._chan
        assert chan is not None
        loop = asyncio.get_running_loop()
        terminal = self._term_type is not None
        stdout = ChannelOutput(chan, loop, terminal=terminal)
        stderr = stdout if terminal else ChannelOutput(chan, loop, stderr=True)
        service = self._service
        ctx = SessionContext(
            user=self.user, role=self.role, label=self.label, peer=self._server._peer(), chan=chan,
            stdout=stdout, stderr=stderr, stdin=ChannelInput(loop), audit=service.audit, engine=service.engine,
            state_dir=service.config.server.state_dir, command_timeout=service.config.limits.command_timeout,
            term_type=self._term_type, original_command=self._original_command,
        )
        self._ctx = ctx
        if self._wants_subsystem:
            self._subsystem = SubsystemSession(ctx, service)  # takes the channel's input from here on
        for data in self._early_input:
            ctx.feed(data)
        if self._early_eof:
            ctx.stdin.feed_eof()
        if self._subsystem is not None:
            kind = "subsystem"
        elif self._command is not None and self._command.strip():
            kind = "exec"
        elif self._command is None and terminal:
            kind = "pty"
        else:
            kind = "script"  # no PTY and no command (or an empty one): the script comes on stdin
        service.audit.write("session_open", user=self.user, session=self.label, role=self.role, kind=kind,
                            peer=ctx.peer, term=self._term_type, command=self._command,
                            original_command=self._original_command)
        self._task = loop.create_task(self._run(ctx, kind), name=f"shellsvc-session-{self.label}")

    async def _run(self, ctx: SessionContext, kind: str) -> None:
        status: int | None = None
        reason = "finished"
        try:
            if kind == "pty":
                status = await self._handler.interactive(ctx)
            elif kind == "subsystem":
                assert self._subsystem is not None
                status = await self._subsystem.run()
            elif kind == "exec":
                assert self._command is not None
                status = await self._handler.command(ctx, self._command, from_stdin=False)
            else:
                script = await ctx.stdin.read_all()
                if ctx.stdin.overflow:
                    ctx.stderr.write("shellsvc: script on stdin is larger than 16 MiB; not run\n")
                    status = 1
                else:
                    status = await self._handler.command(ctx, script, from_stdin=True)
        except asyncio.CancelledError:
            reason = "disconnected"
            raise
        except Exception:
            reason = "internal error"
            log.exception("session %s failed", self.label)
            ctx.stderr.write("shellsvc: internal error in this session (details are in the server log)\n")
            status = 1
        finally:
            ctx.audit.write("session_close", user=self.user, session=self.label, reason=reason,
                            exit_status=status, duration=round(time.monotonic() - self._opened, 3))
            self._service.release_session(self)
            ctx.stdout.flush()
            ctx.stderr.flush()
            chan = self._chan
            if status is not None and chan is not None:
                try:
                    chan.exit(status & 0xFF)
                except OSError:
                    pass  # the client went away first

    # -- events from the client ------------------------------------------------------------------
    def data_received(self, data: str, datatype: asyncssh.DataType) -> None:
        if self._inner is not None:
            self._inner.data_received(data, datatype)
            return
        if self._ctx is None:
            self._early_input.append(data)
            return
        if self._ctx.input_sink is None and self._ctx.has_pty and "\x03" in data and self._ctx.on_interrupt:
            self._ctx.on_interrupt()
            data = data.replace("\x03", "")
        if data:
            self._ctx.feed(data)

    def eof_received(self) -> bool:
        if self._inner is not None:
            return bool(self._inner.eof_received())
        if self._ctx is None:
            self._early_eof = True
        else:
            self._ctx.stdin.feed_eof()
        return True  # half-close: output and the exit status still have to go out

    def terminal_size_changed(self, width: int, height: int, pixwidth: int, pixheight: int) -> None:
        if self._ctx is not None and self._ctx.on_resize is not None:
            self._ctx.on_resize()

    def signal_received(self, signal: str) -> None:
        if signal.upper() in _INTERRUPT_SIGNALS and self._ctx is not None and self._ctx.on_interrupt:
            self._ctx.on_interrupt()

    def break_received(self, msec: int) -> bool:
        if self._ctx is not None and self._ctx.on_interrupt:
            self._ctx.on_interrupt()
        return True

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()
        if self._ctx is not None:
            self._ctx.stdout.pause()
            self._ctx.stderr.pause()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()
        if self._ctx is not None:
            self._ctx.stdout.resume()
            self._ctx.stderr.resume()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._inner is not None:
            self._inner.connection_lost(exc)
        ctx = self._ctx
        if ctx is not None:
            ctx.stdout.close()
            ctx.stderr.close()
            ctx.stdin.feed_eof()
        task = self._task
        if task is not None and not task.done():
            task.cancel()
        elif task is None:
            self._service.release_session(self)
