"""A prompt_toolkit app session on one PTY channel, and its history file: the REPL and the
operator console use both.

Each channel gets its own pipe input, Vt100 output and AppSession, and the application is
awaited inside that AppSession on the event loop (never ``in_thread``), so concurrent users
cannot cross-wire (the ptpython #561 failure). Window-size changes re-render the running
application.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from prompt_toolkit.application.current import create_app_session
from prompt_toolkit.data_structures import Size
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output.vt100 import Vt100_Output

from .context import SessionContext

__all__ = ["history_file_for", "terminal_app_session"]


class _ChannelStream:
    """The file-like object Vt100_Output renders into (used on the loop thread only)."""

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


@contextlib.contextmanager
def terminal_app_session(ctx: SessionContext, *, on_input: Callable[[str], None] | None = None) -> Iterator[None]:
    """Within the ``with`` block the current prompt_toolkit app session is ``ctx``'s terminal.

    What the client types goes to the app's input; ``on_input`` sees it first (the REPL
    uses it to interrupt a running command on Ctrl-C).
    """

    def get_size() -> Size:
        columns, rows = ctx.terminal_size()
        return Size(rows=rows, columns=columns)

    output = Vt100_Output(_ChannelStream(ctx), get_size, term=ctx.term_type, enable_cpr=False)  # type: ignore[arg-type]
    with create_pipe_input() as pipe:

        def feed(data: str) -> None:
            if on_input is not None:
                on_input(data)
            pipe.send_text(data)

        ctx.input_sink = feed
        try:
            with create_app_session(input=pipe, output=output) as app_session:

                def resize() -> None:
                    app = app_session.app
                    if app is not None and app.is_running:
                        app._on_resize()

                ctx.on_resize = resize
                yield
        finally:
            ctx.input_sink = None
            ctx.on_resize = None


def history_file_for(state_dir: Path, user: str, suffix: str = "history") -> Path:
    """``<state_dir>/histories/<user>.<suffix>``, created private (0600 in a 0700 directory)."""
    directory = state_dir / "histories"
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / f"{user}.{suffix}"
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    return path
