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
from .prompt import ConsoleCompleter, run_console
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
