"""Stand-in for the operator console (issue #5) until it exists.

Operators must never reach Python. Until the allow-list console is wired in, this
handler answers every line and every command with an error; it has no code path that
compiles or evaluates anything.
"""

from __future__ import annotations

from .context import SessionContext
from .terminal import TerminalLineEditor

__all__ = ["OperatorConsolePlaceholder"]

NOT_AVAILABLE = ("the operator console is not available yet; "
                 "operators cannot run Python (ask an admin)")


class OperatorConsolePlaceholder:
    """Refuses everything: exec gets exit status 1, a terminal gets an error per line."""

    async def command(self, ctx: SessionContext, source: str, *, from_stdin: bool) -> int:
        ctx.audit.write("command_refused", user=ctx.user, session=ctx.label, role=ctx.role, text=source[:4096],
                        reason="operator console not available")
        ctx.stderr.write(f"shellsvc: {NOT_AVAILABLE}\n")
        return 1

    async def interactive(self, ctx: SessionContext) -> int:
        editor = TerminalLineEditor(ctx.stdout.write)
        ctx.input_sink = editor.feed
        ctx.stdout.write(f"shellsvc operator console for {ctx.user}: {NOT_AVAILABLE}.\n"
                         "Type exit or press Ctrl-D to leave.\n")
        try:
            while True:
                line = await editor.readline("operator> ")
                if line is None or line.strip() in ("exit", "quit", "exit()"):
                    return 0
                if not line.strip():
                    continue
                ctx.audit.write("command_refused", user=ctx.user, session=ctx.label, role=ctx.role,
                                text=line, reason="operator console not available")
                ctx.stdout.write(f"error: {NOT_AVAILABLE}\n")
        finally:
            ctx.input_sink = None
