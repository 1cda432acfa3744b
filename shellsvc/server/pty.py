"""The admin's interactive session: the prompt_toolkit REPL rendered over a PTY channel.

Each channel gets its own pipe input, Vt100 output and prompt_toolkit AppSession, and
the REPL is awaited inside that AppSession on the event loop (never ``in_thread``), so
concurrent users cannot cross-wire (the ptpython #561 failure). Ctrl-C while a command
runs interrupts it; keys typed while it runs are kept for the next prompt.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from prompt_toolkit.application.current import create_app_session
from prompt_toolkit.data_structures import Size
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output.vt100 import Vt100_Output

from shellsvc.engine import SessionIO

from .context import SessionContext
from .execution import AuditedSession, open_exec_session

__all__ = ["run_python_repl", "history_file_for"]

log = logging.getLogger(__name__)


class _TerminalStream:
    """The file-like object Vt100_Output renders into (always used on the loop thread)."""

    def __init__(self, ctx: SessionContext) -> None:
        self._ctx = ctx

    def write(self, data: str) -> int:
        self._ctx.stdout.write(data)
        return len(data)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return True

    @property
    def encoding(self) -> str:
        return "utf-8"


def history_file_for(state_dir: Path, user: str) -> Path:
    """``<state_dir>/histories/<user>.history``, created private (0600 in a 0700 directory)."""
    directory = state_dir / "histories"
    directory.mkdir(mode=0o700, exist_ok=True)
    path = directory / f"{user}.history"
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    return path


def banner_for(ctx: SessionContext) -> str:
    return (f"shellsvc: Python {sys.version.split()[0]} inside pid {os.getpid()}, as {ctx.user}. "
            "Ctrl-C interrupts, Ctrl-D or exit() leaves.")


async def run_python_repl(ctx: SessionContext) -> int:
    """Run the REPL until the user leaves; returns the session's exit status."""
    from shellsvc.repl import run_repl

    # run_repl redirects the session's streams to the terminal (above the prompt) and
    # answers input() with a prompt of its own; these are only the initial targets.
    session = open_exec_session(ctx, SessionIO(write_out=ctx.stdout.write, write_err=ctx.stdout.write))

    def get_size() -> Size:
        columns, rows = ctx.terminal_size()
        return Size(rows=rows, columns=columns)

    output = Vt100_Output(_TerminalStream(ctx), get_size, term=ctx.term_type, enable_cpr=False)  # type: ignore[arg-type]
    with create_pipe_input() as pipe:

        def route(data: str) -> None:
            # The REPL reads Ctrl-C itself while a command runs; interrupting here too
            # also covers a command that is queued but not started yet.
            if "\x03" in data and session.busy and ctx.on_interrupt is not None:
                ctx.on_interrupt()
            pipe.send_text(data)

        ctx.input_sink = route
        try:
            with create_app_session(input=pipe, output=output) as app_session:

                def resize() -> None:
                    app = app_session.app
                    if app is not None and app.is_running:
                        app._on_resize()

                ctx.on_resize = resize
                await run_repl(AuditedSession(ctx, session),  # type: ignore[arg-type]
                               history_file=history_file_for(ctx.state_dir, ctx.user),
                               banner=banner_for(ctx), command_timeout=None)
        finally:
            ctx.input_sink = None
            ctx.on_resize = None
            await session.close()
    return session.exit_code or 0
