"""The restricted operator console: allow-listed, typed commands - never Python.

See docs/console.md. The pieces, one job each:

* :mod:`.registry` - ``@command``, typed parameters, the command registry;
* :mod:`.parsing` - line checks, shell-style splitting, conversion, did-you-mean;
* :mod:`.console` - :class:`Console` (parse, audit, run) and :class:`CommandResult`;
* :mod:`.builtins` - help, status, plugins, sessions, tasks/where, threads, audit, patches;
* :mod:`.prompt` - :func:`run_console`, the prompt_toolkit front end;
* :mod:`.ssh` - :class:`OperatorConsole`, the SSH service's operator role;
* :mod:`.admin` - :class:`CommandCaller`, the same commands from an admin's namespace.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .admin import CommandCaller, CommandOutput
from .builtins import builtin_registry
from .console import CommandContext, CommandResult, Console, Invocation
from .errors import (
    CommandDefinitionError,
    CommandError,
    ConsoleRejection,
    ForbiddenCommand,
    InputRejected,
    UnknownCommand,
    UsageError,
)
from .registry import Arg, Command, CommandRegistry, Param, command
from .sessions import SessionBoard
from .ssh import OperatorConsole

__all__ = [
    "Arg",
    "Command",
    "CommandCaller",
    "CommandContext",
    "CommandDefinitionError",
    "CommandError",
    "CommandOutput",
    "CommandRegistry",
    "CommandResult",
    "Console",
    "ConsoleCompleter",
    "ConsoleRejection",
    "ForbiddenCommand",
    "InputRejected",
    "Invocation",
    "OperatorConsole",
    "Param",
    "SessionBoard",
    "UnknownCommand",
    "UsageError",
    "builtin_registry",
    "command",
    "run_console",
]

#: Names from :mod:`.prompt`, imported on first use: it loads prompt_toolkit, which an
#: app embedding the service needs only once an operator opens a terminal session.
_PROMPT_NAMES = frozenset({"ConsoleCompleter", "run_console"})


def __getattr__(name: str) -> Any:
    if name not in _PROMPT_NAMES:
        raise AttributeError(f"module 'shellsvc.console' has no attribute {name!r}")
    from . import prompt

    value = getattr(prompt, name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from .prompt import ConsoleCompleter, run_console
