"""What a role handler gets for one SSH session channel."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import asyncssh

from .audit import AuditLog
from .channelio import ChannelInput, ChannelOutput

if TYPE_CHECKING:
    from shellsvc.engine import Engine

__all__ = ["RoleHandler", "SessionContext"]


@dataclass(eq=False)
class SessionContext:
    """One session channel of an authenticated user.

    ``feed`` receives what the client types or sends; handlers that need raw keystrokes
    (a prompt_toolkit app) replace ``input_sink``; by default it fills ``stdin``.
    """

    user: str
    role: str
    label: str
    peer: str
    chan: asyncssh.SSHServerChannel[str]
    stdout: ChannelOutput
    stderr: ChannelOutput
    stdin: ChannelInput
    audit: AuditLog
    engine: Engine
    state_dir: Path
    command_timeout: float | None
    term_type: str | None = None
    original_command: str | None = None
    input_sink: Callable[[str], None] | None = None
    on_resize: Callable[[], None] | None = None
    on_interrupt: Callable[[], bool] | None = None
    started: float = field(default_factory=time.monotonic)

    @property
    def has_pty(self) -> bool:
        return self.term_type is not None

    def terminal_size(self) -> tuple[int, int]:
        """(columns, rows) of the client's terminal; 80x24 when unknown."""
        width, height, _, _ = self.chan.get_terminal_size()
        return (width or 80, height or 24)

    def feed(self, data: str) -> None:
        if self.input_sink is not None:
            self.input_sink(data)
        else:
            self.stdin.feed(data)


class RoleHandler(Protocol):
    """What a role does with a session: an interactive terminal or one command.

    Both return the channel's exit status. ``from_stdin`` marks a script read from
    the channel's input (``ssh host < script.py``) rather than an exec command.
    """

    async def interactive(self, ctx: SessionContext) -> int: ...

    async def command(self, ctx: SessionContext, source: str, *, from_stdin: bool) -> int: ...
