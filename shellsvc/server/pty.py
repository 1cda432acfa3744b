"""The admin's interactive session: the prompt_toolkit REPL rendered over a PTY channel.

The REPL runs in the channel's own prompt_toolkit app session (:mod:`.terminal`), so
concurrent users cannot cross-wire. Ctrl-C while a command runs interrupts it; keys typed
while it runs are kept for the next prompt.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from shellsvc.engine import ExecSession, SessionIO

from .context import SessionContext
from .execution import AuditedSession, open_exec_session
from .terminal import history_file_for, terminal_app_session

__all__ = ["banner_for", "run_python_repl"]

log = logging.getLogger(__name__)


def banner_for(ctx: SessionContext) -> str:
    return (f"shellsvc: Python {sys.version.split()[0]} inside pid {os.getpid()}, as {ctx.user}. "
            "Ctrl-C interrupts, Ctrl-D or exit() leaves.")


class _ThrottledIO:
    """The session's :class:`SessionIO` as the REPL sees it: writers it installs first wait
    for the channel.

    The REPL's terminal sink bounds its own buffer, but hands what it holds to the
    channel on the loop, where nothing may wait; without this a ``while True: print(x)``
    piles up in the channel's send buffer while the client does not read.
    """

    def __init__(self, io: SessionIO, wait: Callable[[], None]) -> None:
        self._io = io
        self._wait = wait

    def redirect(self, write_out: Callable[[str], object], write_err: Callable[[str], object],
                 readline: Callable[[str], str] | None = None) -> None:
        self._io.redirect(self._throttled(write_out), self._throttled(write_err), readline)

    def _throttled(self, write: Callable[[str], object]) -> Callable[[str], None]:
        def throttled(text: str) -> None:
            self._wait()
            write(text)
        return throttled

    def __getattr__(self, name: str) -> Any:
        return getattr(self._io, name)


class _TerminalSession(AuditedSession):
    """The audited session the REPL drives, with output throttled to the channel."""

    def __init__(self, ctx: SessionContext, session: ExecSession) -> None:
        super().__init__(ctx, session)
        self.io = _ThrottledIO(session.io, ctx.stdout.wait_writable)


async def run_python_repl(ctx: SessionContext) -> int:
    """Run the REPL until the user leaves; returns the session's exit status."""
    from shellsvc.repl import run_repl

    # run_repl redirects the session's streams to the terminal (above the prompt) and
    # answers input() with a prompt of its own; these are only the initial targets.
    session = open_exec_session(ctx, SessionIO(write_out=ctx.stdout.write, write_err=ctx.stdout.write))

    def interrupt_on_ctrl_c(data: str) -> None:
        # The REPL reads Ctrl-C itself while a command runs; interrupting here too
        # also covers a command that is queued but not started yet.
        if "\x03" in data and session.busy and ctx.on_interrupt is not None:
            ctx.on_interrupt()

    try:
        with terminal_app_session(ctx, on_input=interrupt_on_ctrl_c):
            await run_repl(_TerminalSession(ctx, session),  # type: ignore[arg-type]
                           history_file=history_file_for(ctx.state_dir, ctx.user),
                           banner=banner_for(ctx), command_timeout=None)
    finally:
        await session.close()
    return session.exit_code or 0
