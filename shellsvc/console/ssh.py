"""The operator role for the SSH service: a :class:`~shellsvc.server.RoleHandler` that
gives every session channel a :class:`Console` and nothing else.

The service builds one by default (``Service.console``) with its runtime, patch manager,
session board and start time; ``Service(..., operator_console=handler)`` replaces it.

PTY sessions get the prompt (:func:`run_console`) in their own prompt_toolkit app session;
an exec request runs one command line (exit status = the command's); a script on stdin
runs line by line and stops at the first failure. No code path compiles or evaluates the
text - it can only select commands from the registry.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .builtins import builtin_registry
from .console import DEFAULT_TIMEOUT, AuditSink, CommandContext, CommandResult, Console, await_interruptible
from .registry import CommandRegistry
from .sessions import SessionBoard

if TYPE_CHECKING:
    from shellsvc.engine import Engine
    from shellsvc.patching import PatchManager
    from shellsvc.runtime import Runtime
    from shellsvc.server import SessionContext

__all__ = ["OperatorConsole"]

log = logging.getLogger(__name__)

#: Most lines run from one script on stdin.
MAX_SCRIPT_LINES = 1000


class OperatorConsole:
    """Role handler running the restricted console for each SSH session channel.

    ``registry`` defaults to the built-ins; ``runtime``/``patches`` back the plugin and
    patch commands; ``started_at`` is the service start time shown by ``status``
    (default: when this handler was made).
    """

    def __init__(self, registry: CommandRegistry | None = None, *, runtime: Runtime | None = None,
                 patches: PatchManager | None = None, started_at: float | None = None,
                 timeout: float | None = DEFAULT_TIMEOUT, extra: Mapping[str, Any] | None = None,
                 board: SessionBoard | None = None) -> None:
        self.registry = registry if registry is not None else builtin_registry()
        self.runtime = runtime
        self.patches = patches
        self.started_at = started_at if started_at is not None else time.time()
        self.timeout = timeout
        self.extra = dict(extra or {})
        self.board = board if board is not None else SessionBoard()

    def console(self, user: str, role: str, *, session: str = "", engine: Engine | None = None,
                audit: AuditSink | None = None, audit_path: Path | None = None) -> Console:
        """A console for one session (also usable without SSH: tests, the local terminal)."""
        context = CommandContext(user=user, role=role, session=session, runtime=self.runtime, engine=engine,
                                 audit=audit, started_at=self.started_at, patches=self.patches, board=self.board,
                                 audit_path=audit_path, extra=self.extra)
        return Console(self.registry, context, timeout=self.timeout)

    def _console_for(self, ctx: SessionContext) -> Console:
        return self.console(ctx.user, ctx.role, session=ctx.label, engine=ctx.engine, audit=ctx.audit)

    # -- RoleHandler -----------------------------------------------------------------------------
    async def interactive(self, ctx: SessionContext) -> int:
        from shellsvc.server.terminal import history_file_for, terminal_app_session

        from .prompt import run_console

        console = self._console_for(ctx)
        with self.board.opened(ctx.user, ctx.role, ctx.label, "pty", ctx.peer), terminal_app_session(ctx):
            return await run_console(console, history_file=history_file_for(ctx.state_dir, ctx.user,
                                                                             "console-history"))

    async def command(self, ctx: SessionContext, source: str, *, from_stdin: bool) -> int:
        console = self._console_for(ctx)
        kind = "script" if from_stdin else "exec"
        with self.board.opened(ctx.user, ctx.role, ctx.label, kind, ctx.peer):
            if not from_stdin:
                return (await self._run_one(ctx, console, source)).exit_status
            lines = source.splitlines()
            if len(lines) > MAX_SCRIPT_LINES:
                ctx.stderr.write(f"error: script has {len(lines)} lines, the limit is {MAX_SCRIPT_LINES}; "
                                 "nothing was run\n")
                return 2
            status = 0
            for line in lines:
                result = await self._run_one(ctx, console, line)
                status = result.exit_status
                if status != 0 or result.exit_requested:
                    break
            return status

    async def _run_one(self, ctx: SessionContext, console: Console, line: str) -> CommandResult:
        task = asyncio.ensure_future(console.execute(line))
        interrupted = False

        def interrupt() -> bool:
            nonlocal interrupted
            if task.done():
                return False
            interrupted = True
            task.cancel()
            return True

        ctx.on_interrupt = interrupt
        try:
            result = await await_interruptible(task, lambda: interrupted)
        finally:
            ctx.on_interrupt = None
        if result.output:
            ctx.stdout.write(result.output)
        if result.error:
            ctx.stderr.write(result.error)
        return result

    def __repr__(self) -> str:
        return f"<OperatorConsole {len(self.registry)} commands, {len(self.board)} sessions open>"
