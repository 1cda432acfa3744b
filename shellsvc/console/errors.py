"""Errors of the operator console.

Two families: :class:`CommandDefinitionError` is a programming error found when a
command is declared (raised at import time, so it never reaches an operator), while
:class:`ConsoleRejection` and its subclasses are what an operator sees for a line that
is refused. A rejection renders as one line with a hint; it never carries a traceback.
"""

from __future__ import annotations

__all__ = [
    "CommandDefinitionError",
    "CommandError",
    "ConsoleRejection",
    "ForbiddenCommand",
    "InputRejected",
    "UnknownCommand",
    "UsageError",
]


class CommandDefinitionError(TypeError):
    """A function cannot be made into a console command (unsupported annotation, bad name...)."""


class CommandError(Exception):
    """Raise from a command to fail it with a message for the operator (exit status 1).

    The message is shown as is; use it for expected failures ("no plugin runtime").
    Any other exception is reported by type and message only, and logged with its traceback.
    """


class ConsoleRejection(Exception):
    """A line that was refused before anything ran; audited with ``denied: true``."""

    #: Exit status for exec requests, following shell conventions.
    exit_status = 2
    #: Short machine-readable reason for the audit log.
    reason = "rejected"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        #: The command the line named, when it got that far (for the audit record).
        self.command: str | None = None

    def one_line(self) -> str:
        """``error: <message> (<hint>)`` on a single line."""
        text = f"error: {self.message}"
        if self.hint:
            text += f" ({self.hint})"
        return text.replace("\n", " ")


class InputRejected(ConsoleRejection):
    """The line itself is unacceptable: too long, control characters, shell operators, quotes."""

    reason = "bad input"


class UnknownCommand(ConsoleRejection):
    """No command of that name is registered (or visible to the role)."""

    exit_status = 127
    reason = "unknown command"


class ForbiddenCommand(ConsoleRejection):
    """The command exists but the session's role may not run it."""

    exit_status = 126
    reason = "forbidden"


class UsageError(ConsoleRejection):
    """Wrong number of arguments, wrong types, unknown options, missing subcommand."""

    reason = "usage"
