"""``Console``: one operator's session with the command registry - parse, check, audit, run.

:meth:`Console.execute` is the whole contract with front ends (PTY prompt, exec request,
script, admin namespace): a line goes in, a :class:`CommandResult` comes out. The line is
matched against the registry only; nothing is compiled or evaluated. Every line that
names a command is audited - before it runs, and again with its outcome - and every
refusal is audited with ``denied: true``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from shellsvc.runtime.plugin import plugin_commands as plugin_commands_of

from .errors import (
    CommandDefinitionError,
    CommandError,
    ConsoleRejection,
    ForbiddenCommand,
    InputRejected,
    UnknownCommand,
    UsageError,
)
from .parsing import MAX_WORD_LENGTH, check_choice, convert, quote_for_display, split_line, suggestion_hint
from .registry import _WORD_RE, Command, CommandRegistry, Param, build_command

if TYPE_CHECKING:
    from shellsvc.engine import Engine
    from shellsvc.patching import PatchManager
    from shellsvc.runtime import Runtime

    from .sessions import SessionBoard

__all__ = ["AuditSink", "CommandContext", "CommandResult", "Console", "Invocation", "await_interruptible"]

log = logging.getLogger(__name__)

#: Longest line text kept in one audit record.
AUDIT_TEXT_LIMIT = 4096
#: Default limit for one command's run time (seconds).
DEFAULT_TIMEOUT = 60.0


class _AuditLogLike(Protocol):
    def write(self, event: str, **fields: Any) -> None: ...


#: ``AuditLog``-like object (``write(event, **fields)``) or a callable taking one dict.
AuditSink = _AuditLogLike | Callable[[dict[str, Any]], None]


def audit_writer(sink: AuditSink | None) -> Callable[[str, dict[str, Any]], None]:
    """Adapt either audit style to ``write(event, fields)``."""
    if sink is None:
        return lambda event, fields: log.info("console %s %s", event, fields)
    write = getattr(sink, "write", None)
    if callable(write):
        return lambda event, fields: write(event, **fields)
    if callable(sink):
        return lambda event, fields: sink({"event": event, **fields})  # type: ignore[call-arg]
    raise TypeError(f"audit sink {sink!r} is neither an AuditLog-like object with write() nor a callable")


@dataclass(eq=False)
class CommandContext:
    """What a command may use: who runs it and the service's parts. Commands receive it by
    declaring a parameter annotated ``CommandContext``."""

    user: str
    role: str
    session: str = ""
    runtime: Runtime | None = None
    engine: Engine | None = None
    audit: AuditSink | None = None
    #: When the service started (``time.time()``), for ``status``.
    started_at: float = field(default_factory=time.time)
    patches: PatchManager | None = None
    board: SessionBoard | None = None
    #: The audit log file for ``audit tail`` (defaults to ``audit.path`` when it has one).
    audit_path: Path | None = None
    #: Anything the application wants its own commands to see.
    extra: Mapping[str, Any] = field(default_factory=dict)
    console: Console | None = None
    _output: list[str] = field(default_factory=list, repr=False)

    def write(self, text: str) -> None:
        """Add ``text`` to the command's output (for commands that report progress)."""
        self._output.append(text)

    @property
    def log_path(self) -> Path | None:
        if self.audit_path is not None:
            return self.audit_path
        path = getattr(self.audit, "path", None)
        return Path(path) if path is not None else None


@dataclass
class CommandResult:
    """What running one line produced. ``output`` goes to stdout, ``error`` to stderr."""

    output: str = ""
    exit_status: int = 0
    denied: bool = False
    error: str = ""
    command: str | None = None
    #: True for ``exit``/``quit``: front ends end the session.
    exit_requested: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    @property
    def text(self) -> str:
        return self.output + self.error


@dataclass
class Invocation:
    """A parsed line: the command and its converted arguments (nothing has run)."""

    command: Command
    values: dict[str, Any]
    words: list[str]

    def call_arguments(self, ctx: CommandContext) -> tuple[list[Any], dict[str, Any]]:
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        for name, kind in self.command.call_layout:
            if name == self.command.context_param:
                value: Any = ctx
            else:
                value = self.values[name]
            if kind == "VAR_POSITIONAL":
                args.extend(value)
            elif kind == "KEYWORD_ONLY":
                kwargs[name] = value
            else:
                args.append(value)
        return args, kwargs


class Console:
    """A restricted console: the commands in ``registry`` (plus started plugins' commands),
    run as ``context.user`` with ``context.role``.

    ``timeout`` bounds one command's run time; ``None`` for no limit.
    """

    def __init__(self, registry: CommandRegistry, context: CommandContext, *,
                 timeout: float | None = DEFAULT_TIMEOUT) -> None:
        self.registry = registry
        self.context = context
        self.timeout = timeout
        context.console = self
        self._audit = audit_writer(context.audit)
        self._table: CommandRegistry = registry
        self._table_key: object = None

    @property
    def user(self) -> str:
        return self.context.user

    @property
    def role(self) -> str:
        return self.context.role

    # -- the command table ------------------------------------------------------------------------
    def table(self) -> CommandRegistry:
        """The registry plus commands offered by started plugins (rebuilt when plugins change)."""
        runtime = self.context.runtime
        handles = runtime.handles() if runtime is not None else []
        key = (id(self.registry), self.registry.version,
               tuple((h.name, h.generation, str(h.state), id(h.plugin)) for h in handles))
        if key != self._table_key:
            self._table = self._build_table(handles)
            self._table_key = key
        return self._table

    def _build_table(self, handles: list[Any]) -> CommandRegistry:
        contributed = [h for h in handles if str(h.state) == "started" and getattr(h.plugin, "commands", None)]
        if not contributed:
            return self.registry
        table = self.registry.copy()
        for handle in contributed:
            group = str(handle.name).replace("_", "-")
            if not _WORD_RE.fullmatch(group):
                log.warning("plugin %r: its name cannot be a console command group; its commands are not offered",
                            handle.name)
                continue
            plugin_commands = CommandRegistry()
            for func in plugin_commands_of(handle.plugin):
                try:
                    cmd = build_command(func, origin=f"plugin {handle.name}")
                    if cmd.path[0] != group:  # plugin commands live under the plugin's name
                        cmd = dataclasses.replace(cmd, path=(group, *cmd.path))
                    plugin_commands.add(cmd)
                except CommandDefinitionError as exc:
                    log.warning("plugin %r offers a command the console cannot use: %s", handle.name, exc)
            plugin_commands.describe_group(group, str(getattr(handle.plugin, "description", "") or "")
                                           or f"commands of plugin {handle.name}")
            table.merge(plugin_commands, origin=f"plugin {handle.name}")
        return table

    def runnable(self, path: tuple[str, ...] = ()) -> list[Command]:
        """The commands at or under ``path`` this role may run and that are not hidden, by name."""
        depth = len(path)
        return [c for c in self.table() if c.path[:depth] == path and c.allowed(self.role) and not c.hidden]

    def visible(self, path: tuple[str, ...] = ()) -> list[str]:
        """Names under ``path`` (top level by default) this role can run, for help and completion."""
        depth = len(path)
        return sorted({c.path[depth] for c in self.runnable(path) if len(c.path) > depth})

    # -- parsing (pure: nothing runs) ---------------------------------------------------------------
    def parse(self, line: str) -> Invocation:
        """Split, look up and convert ``line``; raises a :class:`ConsoleRejection` subclass."""
        words = split_line(line)
        if not words:
            raise InputRejected("empty command", hint="type help for the list of commands")
        cmd, rest = self.resolve(words)
        try:
            values = self.bind(cmd, rest)
        except ConsoleRejection as exc:
            exc.command = cmd.name
            raise
        return Invocation(cmd, values, words)

    def resolve(self, words: list[str]) -> tuple[Command, list[str]]:
        table = self.table()
        path: tuple[str, ...] = ()
        for index, word in enumerate(words):
            candidate = (*path, word)
            cmd = table.get(candidate)
            if cmd is not None:
                if not cmd.allowed(self.role):
                    forbidden = ForbiddenCommand(f"{cmd.name}: not permitted for role {self.role}",
                                                 hint="ask an admin")
                    forbidden.command = cmd.name
                    raise forbidden
                return cmd, words[index + 1:]
            if table.is_group(candidate):
                path = candidate  # descend even into a group this role cannot see: "audit tail" is forbidden
                continue
            visible = self.visible(path)
            shown = quote_for_display(word)
            if path and not visible:  # a group of commands this role may not run: do not reveal its contents
                word, path = path[0], ()
                shown, visible = quote_for_display(word), self.visible()
            if not path:
                fallback = "type help for the list of commands"
                if any(c in word for c in ".[]=\"'_:,") and not word.isalpha():
                    fallback = "this console runs allow-listed commands, not Python; type help"
                raise UnknownCommand(f"unknown command {shown}", hint=suggestion_hint(word, visible, fallback))
            group = " ".join(path)
            raise UnknownCommand(f"{group}: unknown subcommand {shown}",
                                 hint=suggestion_hint(word, visible, f"one of: {', '.join(visible)}"))
        group = " ".join(path)
        if not self.visible(path):
            raise UnknownCommand(f"unknown command {quote_for_display(path[0])}",
                                 hint=suggestion_hint(path[0], self.visible(), "type help for the list of commands"))
        raise UsageError(f"{group}: missing subcommand", hint=f"one of: {', '.join(self.visible(path))}")

    def bind(self, cmd: Command, words: list[str]) -> dict[str, Any]:
        """Convert and check ``words`` against ``cmd``'s parameters."""
        options = cmd.options()
        positional = cmd.positional()
        values: dict[str, Any] = {}
        loose: list[str] = []
        only_positional = False
        index = 0
        while index < len(words):
            word = words[index]
            index += 1
            if not only_positional and word == "--":
                only_positional = True
                continue
            if only_positional or not word.startswith("--") or len(word) == 2:
                loose.append(word)
                continue
            name, has_value, value = word.partition("=")
            param = options.get(name)
            negated = False
            if param is None and name.startswith("--no-"):
                flag = options.get("--" + name[5:])
                if flag is not None and flag.kind == "flag":
                    param, negated = flag, True
            if param is None:
                hint = suggestion_hint(name, options, f"usage: {cmd.usage()}")
                raise UsageError(f"{cmd.name}: unknown option {quote_for_display(name)}", hint=hint)
            if param.name in values:
                raise UsageError(f"{cmd.name}: option {param.option} given twice")
            if param.kind == "flag":
                if negated and has_value:
                    raise UsageError(f"{cmd.name}: {name} takes no value")
                values[param.name] = (convert(value, bool, what=f"{cmd.name} {param.option}")
                                      if has_value else not negated)
                continue
            if not has_value:
                if index >= len(words):
                    raise UsageError(f"{cmd.name}: option {param.option} needs a value",
                                     hint=f"usage: {cmd.usage()}")
                value = words[index]
                index += 1
            values[param.name] = self._value(cmd, param, value)
        slots = [p for p in positional if p.kind == "positional"]
        variadic = next((p for p in positional if p.kind == "variadic"), None)
        if len(loose) > len(slots) and variadic is None:
            most = len(slots)
            raise UsageError(f"{cmd.name}: too many arguments ({len(loose)} given, "
                             f"{'none' if most == 0 else f'at most {most}'} expected)",
                             hint=f"usage: {cmd.usage()}")
        for param, word in zip(slots, loose):
            values[param.name] = self._value(cmd, param, word)
        if variadic is not None:
            values[variadic.name] = tuple(self._value(cmd, variadic, w) for w in loose[len(slots):])
        for param in cmd.params:
            if param.name in values:
                continue
            if param.required:
                what = param.option if param.kind == "option" else param.metavar
                raise UsageError(f"{cmd.name}: missing {what}", hint=f"usage: {cmd.usage()}")
            values[param.name] = () if param.kind == "variadic" else param.default
        return values

    def _value(self, cmd: Command, param: Param, word: str) -> Any:
        what = f"{cmd.name} {param.option if param.kind in ('option', 'flag') else param.metavar}"
        limit = param.max_length or MAX_WORD_LENGTH
        if len(word) > limit:
            raise UsageError(f"{what}: value is too long ({len(word)} characters, the limit is {limit})")
        value = convert(word, param.type, what=what)
        if param.min is not None and value < param.min:
            raise UsageError(f"{what}: {value} is below the minimum {_number(param.min)}")
        if param.max is not None and value > param.max:
            raise UsageError(f"{what}: {value} is above the maximum {_number(param.max)}")
        choices = param.choice_values(self.context)
        if choices is not None:
            check_choice(value, word, choices, what=what)
        return value

    # -- running ----------------------------------------------------------------------------------
    async def execute(self, line: str) -> CommandResult:
        """Run one line. Never raises for bad input or a failing command (only on cancellation)."""
        text = line[:-1] if line.endswith("\n") else line
        if not text.strip():
            return CommandResult()
        if text.strip() in ("exit", "quit", "logout"):
            return CommandResult(exit_requested=True)
        try:
            invocation = self.parse(text)
        except ConsoleRejection as exc:
            return self._deny(text, exc)
        except Exception as exc:  # noqa: BLE001 - a parser bug must still end as a denial
            log.exception("console: internal error parsing a line from %s", self.context.session or self.user)
            return self._deny(text, InputRejected(f"the line could not be parsed ({type(exc).__name__})"))
        return await self.run(invocation, text)

    async def run(self, invocation: Invocation, text: str) -> CommandResult:
        cmd = invocation.command
        audited = text if cmd.audit_arguments else f"{cmd.name} <arguments withheld>"
        started = time.monotonic()
        try:
            self._audit("console_command", self._fields(audited, command=cmd.name, denied=False))
        except Exception:  # noqa: BLE001 - fail closed: no audit record, no command
            log.exception("console: cannot audit %r; not running it", cmd.name)
            return CommandResult(error=f"error: {cmd.name}: the audit log is unavailable, nothing was run\n",
                                 exit_status=1, command=cmd.name)
        ctx = dataclasses.replace(self.context, _output=[])
        status, result = "ok", CommandResult(command=cmd.name)
        try:
            value = await asyncio.wait_for(self._call(invocation, ctx), self.timeout)
            result.output = "".join(ctx._output) + _render(value)
        except ConsoleRejection as exc:  # a command refusing its arguments late (help TOPIC)
            status = "denied"
            result.output, result.denied = "".join(ctx._output), True
            result.error, result.exit_status = exc.one_line() + "\n", exc.exit_status
        except CommandError as exc:
            status = "error"
            result.output = "".join(ctx._output)
            result.error, result.exit_status = f"error: {cmd.name}: {exc}\n", 1
        except TimeoutError:
            status = "timeout"
            result.output = "".join(ctx._output)
            result.error, result.exit_status = f"error: {cmd.name}: timed out after {self.timeout:g} s\n", 124
        except asyncio.CancelledError:
            self._audit("console_result", self._fields(None, command=cmd.name, status="cancelled", exit_status=130,
                                                       duration=round(time.monotonic() - started, 6)))
            raise
        except Exception as exc:  # noqa: BLE001 - a failing command is reported, not propagated
            status = "error"
            log.exception("console command %r failed for %s", cmd.name, self.user)
            result.output = "".join(ctx._output)
            result.error, result.exit_status = f"error: {cmd.name} failed: {_describe(exc)}\n", 1
        if result.output and not result.output.endswith("\n"):
            result.output += "\n"
        self._audit("console_result", self._fields(None, command=cmd.name, status=status,
                                                   exit_status=result.exit_status, denied=result.denied,
                                                   duration=round(time.monotonic() - started, 6)))
        return result

    async def _call(self, invocation: Invocation, ctx: CommandContext) -> Any:
        cmd = invocation.command
        args, kwargs = invocation.call_arguments(ctx)
        if cmd.is_async:
            return await cmd.func(*args, **kwargs)
        if cmd.blocking:
            return await asyncio.to_thread(cmd.func, *args, **kwargs)
        value = cmd.func(*args, **kwargs)
        if asyncio.iscoroutine(value):  # a sync wrapper around a coroutine function
            return await value
        return value

    def _deny(self, text: str, exc: ConsoleRejection) -> CommandResult:
        command = exc.command
        try:
            self._audit("console_command", self._fields(text, command=command, denied=True, reason=exc.reason,
                                                        message=exc.message))
        except Exception:  # noqa: BLE001 - the denial stands either way; the failure is logged
            log.exception("console: cannot audit a denied line")
        return CommandResult(error=exc.one_line() + "\n", exit_status=exc.exit_status, denied=True)

    def _fields(self, text: str | None, **fields: Any) -> dict[str, Any]:
        record: dict[str, Any] = {"user": self.user, "role": self.role, "session": self.context.session}
        if text is not None:
            record["text"] = text[:AUDIT_TEXT_LIMIT]
            if len(text) > AUDIT_TEXT_LIMIT:
                record["truncated"] = True
                record["length"] = len(text)
        record.update(fields)
        return record

    def __repr__(self) -> str:
        return f"<Console {self.user} ({self.role}) {len(self.table())} commands>"


async def await_interruptible(task: asyncio.Future[CommandResult], interrupted: Callable[[], bool]) -> CommandResult:
    """Await a :meth:`Console.execute` task that a front end cancels to interrupt it.

    When ``interrupted()`` says the cancellation was the front end's, the result is
    ``interrupted`` with exit status 130; a cancellation of the caller itself propagates.
    """
    try:
        return await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if interrupted() and task.cancelled() and (current is None or not current.cancelling()):
            return CommandResult(error="interrupted\n", exit_status=130)
        raise


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _render(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return "\n".join(str(item) for item in value)
    return str(value)


def _describe(exc: BaseException) -> str:
    message = str(exc).strip()
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return text if len(text) <= 2000 else text[:2000] + "..."
