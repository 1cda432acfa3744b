"""The same commands from an admin's Python namespace: ``cmd("plugins reload ticker")``.

Admins have Python anyway; this gives them the operators' vocabulary, audited the same
way, without re-implementing it. Cells run in a worker thread, the commands on the
event loop: :class:`CommandCaller` hops over and waits.
"""

from __future__ import annotations

import asyncio

from shellsvc.engine.bridge import on_loop_thread

from .console import CommandResult, Console
from .errors import CommandError

__all__ = ["CommandCaller", "CommandOutput"]


class CommandOutput(str):
    """A command's output text; prints as plain text in the REPL and keeps the result."""

    result: CommandResult

    def __new__(cls, result: CommandResult) -> CommandOutput:
        self = super().__new__(cls, result.output.rstrip("\n"))
        self.result = result
        return self

    def __repr__(self) -> str:
        return str(self)


class CommandCaller:
    """Call console commands by line. From a worker thread (an admin's cell): ``cmd("status")``;
    on the event loop: ``await cmd.run("status")``. A failed or refused command raises
    :class:`CommandError` with the console's one-line message."""

    def __init__(self, console: Console, loop: asyncio.AbstractEventLoop) -> None:
        self.console = console
        self.loop = loop

    async def run(self, line: str) -> CommandOutput:
        result = await self.console.execute(line)
        if result.exit_status != 0:
            raise CommandError(result.error.strip() or f"exit status {result.exit_status}")
        return CommandOutput(result)

    def __call__(self, line: str) -> CommandOutput:
        if on_loop_thread(self.loop):
            raise RuntimeError("cmd() from the event loop's own thread would deadlock; use `await cmd.run(line)`")
        return asyncio.run_coroutine_threadsafe(self.run(line), self.loop).result()

    def __repr__(self) -> str:
        return f"<commands for {self.console.user}: cmd('help')>"
