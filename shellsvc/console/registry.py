"""Declaring console commands: ``@command`` on a plain function, and the registry of them.

A command is an ordinary function. Its parameters become typed arguments:

* positional parameters are positional words; ``*args`` takes the remaining words;
* keyword-only parameters are options (``--name VALUE``); a keyword-only ``bool`` is a
  flag (``--force`` / ``--no-force``);
* annotations give the type: ``int``, ``float``, ``bool``, ``str``, ``Path``, an
  ``Enum`` class, ``Literal[...]`` (choices), ``X | None``; ``Annotated[X, Arg(...)]``
  adds help, bounds and (possibly dynamic) choices;
* a parameter annotated :class:`~shellsvc.console.CommandContext` receives the session's
  context and is not an argument.

The docstring's first line is the summary shown by ``help``; the rest is the long help.
Everything is checked when the command is declared, so a mistake fails at import time
rather than in front of an operator.
"""

from __future__ import annotations

import enum
import inspect
import logging
import re
import types
import typing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Union

from .errors import CommandDefinitionError
from .parsing import enum_words

if TYPE_CHECKING:
    from .console import CommandContext

__all__ = ["Arg", "Command", "CommandRegistry", "Param", "command", "command_spec"]

log = logging.getLogger(__name__)

#: Roles allowed to run a command unless its declaration says otherwise.
DEFAULT_ROLES: tuple[str, ...] = ("operator", "admin")

_WORD_RE = re.compile(r"[a-z][a-z0-9-]{0,31}")
_SCALARS = (int, float, bool, str, Path)

Choices = Iterable[Any] | Callable[["CommandContext"], Iterable[Any]]


@dataclass(frozen=True)
class Arg:
    """Extra facts about one argument, given as ``Annotated[int, Arg(min=1, help=...)]``.

    ``choices`` is a fixed collection or a callable ``(ctx) -> iterable`` evaluated for
    each use (plugin names, task names); values outside it are refused and it drives
    completion. ``min``/``max`` bound numbers; ``max_length`` bounds words.
    """

    help: str = ""
    choices: Choices | None = None
    min: float | None = None
    max: float | None = None
    max_length: int | None = None
    metavar: str | None = None


@dataclass(frozen=True)
class Param:
    """One typed argument of a command."""

    name: str
    kind: Literal["positional", "variadic", "option", "flag"]
    type: Any  #: int, float, bool, str, Path or an Enum class
    default: Any = inspect.Parameter.empty
    choices: Choices | None = None
    help: str = ""
    min: float | None = None
    max: float | None = None
    max_length: int | None = None
    metavar: str = ""

    @property
    def required(self) -> bool:
        return self.default is inspect.Parameter.empty and self.kind in ("positional", "option")

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")

    def usage(self) -> str:
        if self.kind == "flag":
            return f"[{self.option}]"
        if self.kind == "option":
            text = f"{self.option} {self.metavar}"
            return text if self.required else f"[{text}]"
        if self.kind == "variadic":
            return f"[{self.metavar}...]"
        return self.metavar if self.required else f"[{self.metavar}]"

    def choice_values(self, ctx: CommandContext | None) -> list[Any] | None:
        """The allowed values now (dynamic choices are evaluated against ``ctx``)."""
        if self.choices is None:
            return None
        if callable(self.choices):
            if ctx is None:
                return None
            return list(self.choices(ctx))
        return list(self.choices)

    def completion_words(self, ctx: CommandContext | None) -> list[str]:
        if self.kind == "flag":
            return []
        values = self.choice_values(ctx)
        if values is None and isinstance(self.type, type) and issubclass(self.type, enum.Enum):
            return enum_words(self.type)
        if values is None and self.type is bool:
            return ["yes", "no"]
        return [str(v) for v in values or ()]


@dataclass(frozen=True)
class CommandSpec:
    """What ``@command(...)`` recorded on a function (``fn.__shellsvc_command__``)."""

    name: str | None
    roles: tuple[str, ...]
    blocking: bool
    hidden: bool
    audit_arguments: bool


@dataclass(eq=False)
class Command:
    """A command ready to run: its path (``("plugins", "reload")``), function and typed params."""

    path: tuple[str, ...]
    func: Callable[..., Any]
    params: tuple[Param, ...]
    roles: frozenset[str]
    summary: str = ""
    description: str = ""
    context_param: str | None = None
    is_async: bool = False
    #: Run a synchronous function in a worker thread instead of on the event loop.
    blocking: bool = False
    hidden: bool = False
    #: Record the arguments in the audit log (False for commands taking secrets).
    audit_arguments: bool = True
    origin: str = "app"  #: "builtin", "app" or "plugin <name>"
    #: How to pass values: (parameter name, inspect kind name) in signature order.
    call_layout: tuple[tuple[str, str], ...] = ()

    @property
    def name(self) -> str:
        return " ".join(self.path)

    def allowed(self, role: str) -> bool:
        return role in self.roles

    def usage(self) -> str:
        return " ".join([self.name, *(p.usage() for p in self.params)])

    def positional(self) -> list[Param]:
        return [p for p in self.params if p.kind in ("positional", "variadic")]

    def options(self) -> dict[str, Param]:
        return {p.option: p for p in self.params if p.kind in ("option", "flag")}


def command(name: str | None = None, *, roles: Iterable[str] = DEFAULT_ROLES, blocking: bool = False,
            hidden: bool = False, audit_arguments: bool = True) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a plain function as a console command; returns the function unchanged.

    ``name`` may have several words for a subcommand (``"plugins reload"``); it defaults
    to the function name with ``_`` as ``-``. ``roles`` may run it. ``blocking=True`` runs
    a synchronous function in a worker thread (otherwise it runs on the event loop and must
    be quick). The function is checked now; add it to a :class:`CommandRegistry` (or list it
    in a plugin's ``commands``) to offer it.
    """

    def mark(func: Callable[..., Any]) -> Callable[..., Any]:
        spec = CommandSpec(name, tuple(roles), blocking, hidden, audit_arguments)
        func.__shellsvc_command__ = spec  # type: ignore[attr-defined]
        build_command(func)  # fail at declaration time, not in front of an operator
        return func

    if callable(name):  # bare @command
        func, name = name, None
        return mark(func)
    return mark


def command_spec(func: Callable[..., Any]) -> CommandSpec | None:
    target = getattr(func, "__func__", func)
    return getattr(target, "__shellsvc_command__", None)


def _context_type() -> type:
    from .console import CommandContext

    return CommandContext


def _split_name(name: str, func: Callable[..., Any]) -> tuple[str, ...]:
    words = tuple(name.split())
    if not words or not all(_WORD_RE.fullmatch(w) for w in words):
        raise CommandDefinitionError(
            f"command name {name!r} of {_qualname(func)} is invalid: use 1-32 lower-case letters, digits and '-' "
            "per word, starting with a letter (e.g. 'cache clear')")
    return words


def _qualname(func: Callable[..., Any]) -> str:
    return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', repr(func))}"


def _unwrap_annotation(annotation: Any, where: str) -> tuple[Any, Arg, bool, list[Any] | None]:
    """(base type, Arg, optional?, literal choices) for one annotation."""
    arg = Arg()
    optional = False
    literal: list[Any] | None = None
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        base, *extras = typing.get_args(annotation)
        found = [e for e in extras if isinstance(e, Arg)]
        if found:
            arg = found[0]
        annotation = base
        origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(members) != 1:
            raise CommandDefinitionError(f"{where}: unions other than `X | None` are not supported")
        optional = True
        annotation = members[0]
        origin = typing.get_origin(annotation)
    if origin is Literal:
        literal = list(typing.get_args(annotation))
        kinds = {type(v) for v in literal}
        if not kinds <= {str, int} or len(kinds) != 1:
            raise CommandDefinitionError(f"{where}: Literal choices must all be str or all be int")
        annotation = kinds.pop()
    if annotation is inspect.Parameter.empty or annotation is Any:
        annotation = str
    if not (annotation in _SCALARS or (isinstance(annotation, type) and issubclass(annotation, enum.Enum))):
        raise CommandDefinitionError(
            f"{where}: unsupported type {annotation!r}; use int, float, bool, str, Path, an Enum, "
            "Literal[...] or Annotated[<one of those>, Arg(...)]")
    return annotation, arg, optional, literal


def build_command(func: Callable[..., Any], *, path: tuple[str, ...] | None = None, origin: str = "app") -> Command:
    """Make a :class:`Command` from a (possibly ``@command``-marked) function or bound method."""
    if not callable(func):
        raise CommandDefinitionError(f"{func!r} is not callable and cannot be a command")
    spec = command_spec(func) or CommandSpec(None, DEFAULT_ROLES, False, False, True)
    name = spec.name or getattr(func, "__name__", "").replace("_", "-")
    words = path or _split_name(name, func)
    where = f"command {' '.join(words)!r} ({_qualname(func)})"
    try:
        signature = inspect.signature(func)
        hints = typing.get_type_hints(func, include_extras=True)
    except (NameError, TypeError, ValueError) as exc:
        raise CommandDefinitionError(f"{where}: cannot read its signature or annotations: {exc}") from None
    context_type = _context_type()
    params: list[Param] = []
    context_param: str | None = None
    parameters = [p for p in signature.parameters.values() if p.name not in _percall_keywords(func)]
    for parameter in parameters:
        annotation = hints.get(parameter.name, inspect.Parameter.empty)
        if annotation is context_type:
            context_param = parameter.name
            continue
        pwhere = f"{where}, parameter {parameter.name!r}"
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            raise CommandDefinitionError(f"{pwhere}: **kwargs cannot be an argument; declare keyword-only options")
        default = parameter.default
        if annotation is inspect.Parameter.empty and default is not inspect.Parameter.empty and default is not None:
            inferred = type(default)
            if inferred in _SCALARS or issubclass(inferred, enum.Enum):
                annotation = inferred  # `by=1` is an int argument
        base, arg, optional, literal = _unwrap_annotation(annotation, pwhere)
        if optional and default is inspect.Parameter.empty:
            default = None
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            kind = "variadic"
        elif parameter.kind is inspect.Parameter.KEYWORD_ONLY:
            kind = "flag" if base is bool else "option"
            if kind == "flag" and default is inspect.Parameter.empty:
                default = False
        else:
            kind = "positional"
        if arg.min is not None and base not in (int, float):
            raise CommandDefinitionError(f"{pwhere}: min/max apply to int and float only")
        choices = arg.choices if arg.choices is not None else literal
        metavar = arg.metavar or parameter.name.upper()
        params.append(Param(parameter.name, kind, base, default, choices, arg.help, arg.min, arg.max,
                            arg.max_length, metavar))
    doc = inspect.getdoc(func) or ""
    summary, _, description = doc.partition("\n")
    roles = frozenset(spec.roles)
    if not roles:
        raise CommandDefinitionError(f"{where}: no role may run it; pass roles=('operator', 'admin') or similar")
    target = getattr(func, "__func__", func)
    return Command(
        path=words, func=func, params=tuple(params), roles=roles, summary=summary.strip(),
        description=description.strip(), context_param=context_param,
        is_async=inspect.iscoroutinefunction(target), blocking=spec.blocking, hidden=spec.hidden,
        audit_arguments=spec.audit_arguments, origin=origin,
        call_layout=tuple((p.name, p.kind.name) for p in parameters),
    )


def _percall_keywords(func: Callable[..., Any]) -> frozenset[str]:
    """The per-call patch keywords a plugin method accepts (``decorator=``...): never command
    arguments - an operator must not choose code to wrap around a call."""
    from shellsvc.patching.instrument import PERCALL_KEYWORDS
    from shellsvc.patching.plugin_methods import percall_ready

    return frozenset(PERCALL_KEYWORDS) if percall_ready(func) else frozenset()


@dataclass
class _Group:
    summary: str = ""
    children: set[str] = field(default_factory=set)


class CommandRegistry:
    """Commands by name, with groups for subcommands (``plugins`` holds ``plugins reload``).

    A name is either a command or a group, never both. Registries combine: the console
    looks up the built-ins, the application's registry and plugin commands as one table.
    """

    def __init__(self, commands: Iterable[Callable[..., Any] | Command] = ()) -> None:
        self._commands: dict[tuple[str, ...], Command] = {}
        self._groups: dict[tuple[str, ...], _Group] = {(): _Group()}
        #: Incremented on every change, so views built from this registry know when to refresh.
        self.version = 0
        for item in commands:
            self.add(item)

    # -- building --------------------------------------------------------------------------------
    def add(self, item: Callable[..., Any] | Command, *, origin: str = "app", replace: bool = False) -> Command:
        """Register a function (marked with ``@command`` or plain) or a ready :class:`Command`."""
        cmd = item if isinstance(item, Command) else build_command(item, origin=origin)
        path = cmd.path
        if path in self._groups:
            raise CommandDefinitionError(f"{cmd.name!r} is a command group; choose another name for this command")
        for depth in range(1, len(path)):
            if path[:depth] in self._commands:
                raise CommandDefinitionError(
                    f"cannot add {cmd.name!r}: {' '.join(path[:depth])!r} is already a command, not a group")
        if path in self._commands and not replace:
            raise CommandDefinitionError(f"a command named {cmd.name!r} is already registered "
                                         f"({self._commands[path].origin})")
        self._commands[path] = cmd
        self.version += 1
        for depth in range(len(path)):
            self._groups.setdefault(path[:depth], _Group()).children.add(path[depth])
        return cmd

    def command(self, name: str | None = None, **options: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """``@registry.command("cache clear")``: declare and register in one step."""

        def register(func: Callable[..., Any]) -> Callable[..., Any]:
            command(name, **options)(func)
            self.add(func)
            return func

        return register

    def describe_group(self, name: str, summary: str) -> None:
        """Set the one-line summary ``help`` shows for a group such as ``plugins``."""
        self._groups.setdefault(tuple(name.split()), _Group()).summary = summary
        self.version += 1

    def merge(self, other: CommandRegistry, *, origin: str | None = None) -> list[str]:
        """Add ``other``'s commands that do not clash; returns the names that were skipped."""
        skipped = []
        for cmd in other:
            try:
                self.add(cmd)
            except CommandDefinitionError as exc:
                log.warning("console command %r%s not offered: %s", cmd.name,
                            f" from {origin}" if origin else "", exc)
                skipped.append(cmd.name)
        for path, group in other._groups.items():
            if group.summary and path in self._groups and not self._groups[path].summary:
                self._groups[path].summary = group.summary
        return skipped

    def copy(self) -> CommandRegistry:
        clone = CommandRegistry()
        clone.merge(self)
        return clone

    # -- lookup ----------------------------------------------------------------------------------
    def get(self, path: tuple[str, ...]) -> Command | None:
        return self._commands.get(path)

    def is_group(self, path: tuple[str, ...]) -> bool:
        return path in self._groups

    def children(self, path: tuple[str, ...]) -> list[str]:
        group = self._groups.get(path)
        return sorted(group.children) if group else []

    def group_summary(self, path: tuple[str, ...]) -> str:
        group = self._groups.get(path)
        return group.summary if group else ""

    def names(self) -> list[str]:
        return sorted(cmd.name for cmd in self._commands.values())

    def __iter__(self) -> Iterator[Command]:
        return iter(sorted(self._commands.values(), key=lambda c: c.path))

    def __len__(self) -> int:
        return len(self._commands)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and tuple(name.split()) in self._commands

    def __repr__(self) -> str:
        return f"<CommandRegistry {len(self)} commands>"
