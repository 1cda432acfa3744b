"""Running Python for an admin over SSH: one command (exec / script on stdin) or the REPL.

Every command is audited before it runs and again with its result. The REPL's
commands pass through :class:`AuditedSession`, a thin wrapper the REPL sees as its
ExecSession, so the audit does not depend on how the REPL is written.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

from shellsvc.engine import ExecSession, Outcome, SessionIO

from .context import SessionContext

__all__ = ["AuditedSession", "PythonHandler", "run_audited"]

log = logging.getLogger(__name__)

_command_ids = itertools.count(1)

#: Longest command text kept in one audit record; longer text is cut and marked.
AUDIT_TEXT_LIMIT = 64 * 1024


async def run_audited(ctx: SessionContext, session: ExecSession, source: str, *,
                      timeout: float | None = None) -> Outcome:
    """Audit ``source``, run it, audit the outcome. The first record is written before it runs."""
    command_id = next(_command_ids)
    text = source if len(source) <= AUDIT_TEXT_LIMIT else source[:AUDIT_TEXT_LIMIT]
    ctx.audit.write("command", id=command_id, user=ctx.user, session=ctx.label, text=text,
                    truncated=len(source) > AUDIT_TEXT_LIMIT)
    outcome: Outcome | None = None
    try:
        outcome = await session.run(source, timeout=timeout)
        return outcome
    finally:
        ctx.audit.write("command_result", id=command_id, user=ctx.user, session=ctx.label,
                        status=outcome.status if outcome else "cancelled",
                        exit_code=outcome.exit_code if outcome else None,
                        duration=round(outcome.duration, 6) if outcome else None)


class AuditedSession:
    """An ExecSession whose ``run`` is audited; everything else is the session itself."""

    def __init__(self, ctx: SessionContext, session: ExecSession) -> None:
        self._ctx = ctx
        self._session = session

    async def run(self, source: str, *, timeout: float | None = None) -> Outcome:
        return await run_audited(self._ctx, self._session, source, timeout=timeout)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)

    def __repr__(self) -> str:
        return f"<AuditedSession {self._session!r}>"


def open_exec_session(ctx: SessionContext, io: SessionIO) -> ExecSession:
    session = ctx.engine.open_session(ctx.user, io, label=ctx.label)
    ctx.on_interrupt = session.interrupt
    return session


class PythonHandler:
    """The admin role: full Python in the user's namespace."""

    async def interactive(self, ctx: SessionContext) -> int:
        from .pty import run_python_repl  # prompt_toolkit is only needed for PTY sessions

        return await run_python_repl(ctx)

    async def command(self, ctx: SessionContext, source: str, *, from_stdin: bool) -> int:
        io = SessionIO(
            write_out=ctx.stdout.write,
            write_err=ctx.stderr.write,
            readline=(lambda prompt: ctx.stdin.readline_from_thread(prompt, ctx.stdout.write))
            if not from_stdin else _no_more_input,
        )
        session = open_exec_session(ctx, io)
        try:
            outcome = await run_audited(ctx, session, source, timeout=ctx.command_timeout)
            return outcome.exit_code
        finally:
            await session.close()


def _no_more_input(prompt: str) -> str:
    raise EOFError("stdin held the script itself; there is no further input")
