"""Running Python for an admin over SSH: one command (exec / script on stdin) or the REPL.

Every command is audited before it runs and again with its result. The REPL's
commands pass through :class:`AuditedSession`, a thin wrapper the REPL sees as its
ExecSession, so the audit does not depend on how the REPL is written.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any

from shellsvc.engine import ExecSession, Outcome, SessionIO

from .context import SessionContext

__all__ = ["AuditedSession", "ExecSessionPool", "PythonHandler", "run_audited"]

log = logging.getLogger(__name__)

_command_ids = itertools.count(1)

#: Longest command text kept in one audit record; longer text is cut and marked.
AUDIT_TEXT_LIMIT = 64 * 1024


async def run_audited(ctx: SessionContext, session: ExecSession, source: str, *,
                      timeout: float | None = None) -> Outcome:
    """Audit ``source``, run it, audit the outcome. The first record is written before it runs."""
    command_id = next(_command_ids)
    ctx.audit.write("command", id=command_id, user=ctx.user, session=ctx.label, text=source[:AUDIT_TEXT_LIMIT],
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
    ctx.on_interrupt = session.interrupt  # also stops a command still queued for a slot
    return session


def _drop(text: str) -> None:
    """Where an idle pooled session's output goes: its last channel is gone."""


class ExecSessionPool:
    """Idle engine sessions kept per user, so back-to-back exec requests reuse a worker.

    A fresh ExecSession starts a worker thread on its first command, and
    ``Thread.start()`` blocks the event loop until the new thread runs; under load that
    is most of an exec's cost and shows up as app loop lag. Sessions are only pooled
    after a command that ended normally (ok or error). While idle their output is
    dropped; threads a previous command started keep writing to the session, so their
    output can appear in the user's next exec on it (same user, same namespace).
    """

    def __init__(self, *, per_user: int = 2, idle_seconds: float = 60.0) -> None:
        self.per_user = per_user
        self.idle_seconds = idle_seconds
        self._idle: dict[str, list[tuple[ExecSession, asyncio.TimerHandle]]] = {}
        self._expiring: set[asyncio.Task[None]] = set()  # held: the loop keeps only weak references

    def acquire(self, ctx: SessionContext, io: SessionIO) -> ExecSession:
        idle = self._idle.get(ctx.user, [])
        while idle:
            session, expiry = idle.pop()
            expiry.cancel()
            if not session.closed:
                session.io.redirect(io.write_out, io.write_err, io.readline)
                ctx.on_interrupt = session.interrupt  # also stops a command still queued for a slot
                return session
        return open_exec_session(ctx, io)

    async def release(self, session: ExecSession, outcome: Outcome | None) -> None:
        idle = self._idle.setdefault(session.user, [])
        if session.closed or outcome is None or outcome.status not in ("ok", "error") or len(idle) >= self.per_user:
            await session.close()
            return
        session.io.redirect(_drop, _drop)
        loop = asyncio.get_running_loop()
        expiry = loop.call_later(self.idle_seconds, self._start_expiry, session)
        idle.append((session, expiry))

    def _start_expiry(self, session: ExecSession) -> None:
        task = asyncio.get_running_loop().create_task(self._expire(session))
        self._expiring.add(task)
        task.add_done_callback(self._expiring.discard)

    async def _expire(self, session: ExecSession) -> None:
        idle = self._idle.get(session.user, [])
        for entry in list(idle):
            if entry[0] is session:
                idle.remove(entry)
                await session.close()

    async def aclose(self) -> None:
        pools, self._idle = self._idle, {}
        for idle in pools.values():
            for session, expiry in idle:
                expiry.cancel()
                await session.close()
        if self._expiring:
            await asyncio.gather(*self._expiring)

    def idle_count(self, user: str) -> int:
        return len(self._idle.get(user, []))


class PythonHandler:
    """The admin role: full Python in the user's namespace."""

    def __init__(self) -> None:
        self.pool = ExecSessionPool()

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
        session = self.pool.acquire(ctx, io)
        outcome: Outcome | None = None
        try:
            outcome = await run_audited(ctx, session, source, timeout=ctx.command_timeout)
            return outcome.exit_code
        finally:
            # A late Ctrl-C or signal on this channel must not reach the session's next user.
            ctx.on_interrupt = None
            await self.pool.release(session, outcome)

    async def aclose(self) -> None:
        await self.pool.aclose()


def _no_more_input(prompt: str) -> str:
    raise EOFError("stdin held the script itself; there is no further input")
