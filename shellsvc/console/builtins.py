"""The built-in console commands: help, status, plugins, sessions, tasks/where, threads,
audit tail, patches.

Each is an ordinary ``@command`` function; none of them evaluates what the operator typed.
Plugin names and task names are dynamic choices, so ``plugins reload /some/path`` is
refused even though :meth:`Runtime.reload` would accept a path.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import sys
import threading
import time
import traceback
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any

from .console import CommandContext, Console
from .errors import CommandError, UnknownCommand
from .parsing import quote_for_display, suggestion_hint
from .registry import Arg, CommandRegistry, command

__all__ = ["BUILTIN_COMMANDS", "builtin_registry"]

ADMIN_ONLY = ("admin",)


# -- formatting helpers ------------------------------------------------------------------------------

def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    rows = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) if rows else len(header[i]) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{hours}h {minutes:02d}m {secs:02d}s" if hours or days else f"{minutes}m {secs:02d}s"
    return f"{days}d {text}" if days else text


def _clock(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def _console(ctx: CommandContext) -> Console:
    if ctx.console is None:
        raise CommandError("this command needs a console")
    return ctx.console


# -- help --------------------------------------------------------------------------------------------

@command("help")
def help_command(ctx: CommandContext, *topic: Annotated[str, Arg(metavar="COMMAND", max_length=64)]) -> str:
    """List the commands you may run, or show one command's usage and description."""
    console = _console(ctx)
    table = console.table()
    path = tuple(topic)
    if not path:
        lines = ["Commands (type help COMMAND for details, exit or Ctrl-D to leave):"]
        lines += _listing(console, ())
        return "\n".join(lines)
    cmd = table.get(path)
    if cmd is not None and cmd.allowed(console.role):
        lines = [f"usage: {cmd.usage()}"]
        if cmd.summary:
            lines += ["", cmd.summary]
        if cmd.description:
            lines += ["", cmd.description]
        if cmd.params:
            lines.append("")
            for param in cmd.params:
                label = param.usage().strip("[]")
                extra = []
                words = param.completion_words(ctx)
                if words:
                    extra.append("one of: " + ", ".join(words[:12]) + (", ..." if len(words) > 12 else ""))
                if param.kind != "variadic" and not param.required and param.default not in (None, False, ()):
                    extra.append(f"default: {getattr(param.default, 'name', param.default)}")
                detail = "; ".join(x for x in [param.help, *extra] if x)
                lines.append(f"  {label:<22} {detail}".rstrip())
        if cmd.origin != "builtin":
            lines += ["", f"(from {cmd.origin})"]
        return "\n".join(lines)
    if table.is_group(path) and console.visible(path):
        summary = table.group_summary(path)
        lines = [f"{' '.join(path)}: {summary}" if summary else f"{' '.join(path)} commands:"]
        lines += _listing(console, path)
        return "\n".join(lines)
    raise UnknownCommand(f"help: no command {quote_for_display(' '.join(path))}",
                         hint=suggestion_hint(" ".join(path), [c.name for c in console.runnable()],
                                              "type help for the list"))


def _listing(console: Console, path: tuple[str, ...]) -> list[str]:
    names = console.runnable(path)
    width = max((len(c.usage()) for c in names), default=0)
    width = min(width, 36)
    return [f"  {c.usage():<{width}}  {c.summary}".rstrip() for c in names]


# -- status ------------------------------------------------------------------------------------------

@command("status")
def status_command(ctx: CommandContext) -> str:
    """Uptime, plugins and sessions of this service."""
    now = time.time()
    rows = [
        ("uptime", f"{_duration(now - ctx.started_at)} (since {_clock(ctx.started_at)})"),
        ("process", f"pid {os.getpid()}, Python {sys.version.split()[0]}, {threading.active_count()} threads"),
    ]
    runtime = ctx.runtime
    if runtime is None:
        rows.append(("plugins", "no plugin runtime"))
    else:
        handles = runtime.handles()
        states: dict[str, int] = {}
        for handle in handles:
            states[str(handle.state)] = states.get(str(handle.state), 0) + 1
        detail = ", ".join(f"{count} {state}" for state, count in sorted(states.items()))
        failures = len(runtime.failures)
        rows.append(("plugins", f"{len(handles)}" + (f" ({detail})" if detail else "")
                     + (f", {failures} failed to load" if failures else "")))
    python = len(ctx.engine.sessions()) if ctx.engine is not None else 0
    consoles = len(ctx.board) if ctx.board is not None else 0
    rows.append(("sessions", f"{python + consoles} ({python} python, {consoles} console)"))
    try:
        rows.append(("tasks", f"{len(asyncio.all_tasks())} asyncio tasks"))
    except RuntimeError:
        pass
    return "\n".join(f"{key:<10} {value}" for key, value in rows)


# -- plugins -----------------------------------------------------------------------------------------

def _plugin_names(ctx: CommandContext) -> list[str]:
    return ctx.runtime.names() if ctx.runtime is not None else []


PluginName = Annotated[str, Arg(help="a loaded plugin", choices=_plugin_names, metavar="NAME")]


def _runtime(ctx: CommandContext) -> Any:
    if ctx.runtime is None:
        raise CommandError("this service has no plugin runtime")
    return ctx.runtime


@command("plugins list")
def plugins_list(ctx: CommandContext) -> str:
    """Loaded plugins with state, version, generation and source."""
    runtime = _runtime(ctx)
    handles = runtime.handles()
    lines = []
    if handles:
        lines.append(_table(("NAME", "STATE", "VERSION", "GEN", "LOADED", "SOURCE"),
                            [(h.name, h.state, h.version or "-", h.generation, _clock(h.loaded_at), h.path)
                             for h in handles]))
        lines += [f"  {h.name}: last error: {h.error}" for h in handles if h.error is not None]
    else:
        lines.append("no plugins loaded")
    lines += [f"failed to load {path}: {error}" for path, error in runtime.failures.items()]
    return "\n".join(lines)


@contextlib.contextmanager
def _plugin_errors() -> Iterator[None]:
    """A :class:`~shellsvc.runtime.PluginError` fails the command with its message."""
    from shellsvc.runtime import PluginError

    try:
        yield
    except PluginError as exc:
        raise CommandError(str(exc)) from None


@command("plugins reload")
async def plugins_reload(ctx: CommandContext, name: PluginName, *, force: bool = False) -> str:
    """Reload a plugin from its source; on any failure the running version stays.

    Unchanged files are not reloaded unless --force is given.
    """
    runtime = _runtime(ctx)
    before = {h.name: h.generation for h in runtime.handles()}
    with _plugin_errors():
        handles = await runtime.reload(name, force=force)
    reloaded = [h for h in handles if before.get(h.name) != h.generation]
    if not reloaded:
        return f"{name}: unchanged, not reloaded (use --force to reload anyway)"
    return "\n".join(f"reloaded {h.name} (generation {h.generation}, {h.state})" for h in reloaded)


@command("plugins unload")
async def plugins_unload(ctx: CommandContext, name: PluginName) -> str:
    """Stop a plugin and remove it (with every plugin defined in the same source)."""
    with _plugin_errors():
        names = await _runtime(ctx).unload(name)
    return "unloaded " + ", ".join(names)


@command("plugins start")
async def plugins_start(ctx: CommandContext, name: PluginName) -> str:
    """Start a loaded or stopped plugin."""
    with _plugin_errors():
        handle = await _runtime(ctx).start_plugin(name)
    return f"{handle.name}: {handle.state}"


@command("plugins stop")
async def plugins_stop(ctx: CommandContext, name: PluginName) -> str:
    """Stop a plugin but keep it loaded."""
    with _plugin_errors():
        handle = await _runtime(ctx).stop_plugin(name)
    return f"{handle.name}: {handle.state}" + (f" ({handle.error})" if handle.error else "")


# -- sessions, tasks, threads -------------------------------------------------------------------------

@command("sessions")
def sessions_command(ctx: CommandContext) -> str:
    """Who is connected, since when, and what their Python session is doing."""
    now = time.time()
    rows = []
    if ctx.engine is not None:
        for session in ctx.engine.sessions():
            rows.append((session.user, "python", session.label, _clock(session.started_at),
                         _duration(now - session.started_at), "busy" if session.busy else "idle"))
    if ctx.board is not None:
        for entry in ctx.board.entries():
            rows.append((entry.user, f"console/{entry.kind}", entry.label, _clock(entry.started_at),
                         _duration(now - entry.started_at), entry.peer or "-"))
    if not rows:
        return "no sessions"
    return _table(("USER", "KIND", "SESSION", "SINCE", "FOR", "STATE/PEER"), rows)


def _task_names(ctx: CommandContext) -> list[str]:
    try:
        return sorted({task.get_name() for task in asyncio.all_tasks()})
    except RuntimeError:  # no running loop (help from a thread)
        return []


def _coro_name(task: asyncio.Task[Any]) -> str:
    coro = task.get_coro()
    return getattr(coro, "__qualname__", type(coro).__name__)


def _innermost(task: asyncio.Task[Any]) -> str:
    stack = task.get_stack()
    if not stack:
        return "-"
    frame = stack[-1]
    return f"{frame.f_code.co_name} {Path(frame.f_code.co_filename).name}:{frame.f_lineno}"


@command("tasks")
def tasks_command() -> str:
    """The event loop's asyncio tasks: name, state, coroutine and where it waits."""
    current = asyncio.current_task()
    tasks = sorted(asyncio.all_tasks(), key=lambda t: t.get_name())
    rows = [(t.get_name(), "running" if t is current else ("done" if t.done() else "pending"),
             _coro_name(t), _innermost(t)) for t in tasks]
    return _table(("NAME", "STATE", "COROUTINE", "AT"), rows) + f"\n{len(rows)} tasks"


@command("where")
def where_command(task: Annotated[str, Arg(help="a task name (see tasks)", choices=_task_names, metavar="TASK")]) -> str:
    """The stack of an asyncio task (by name)."""
    found = [t for t in asyncio.all_tasks() if t.get_name() == task]
    if not found:
        raise CommandError(f"task {task!r} has finished")
    chunks = []
    for item in found:
        buffer = io.StringIO()
        item.print_stack(limit=50, file=buffer)
        chunks.append(buffer.getvalue().rstrip())
    return "\n\n".join(chunks)


@command("threads")
def threads_command() -> str:
    """Every thread of the process with its current stack."""
    frames = sys._current_frames()  # a snapshot: quick, safe on the loop
    chunks = []
    for thread in sorted(threading.enumerate(), key=lambda t: t.ident or 0):
        frame = frames.get(thread.ident) if thread.ident is not None else None
        flags = ", daemon" if thread.daemon else ""
        header = f"Thread {thread.name!r} (ident {thread.ident}{flags})"
        stack = "".join(traceback.format_stack(frame, limit=30)).rstrip() if frame is not None else "  (no frame)"
        chunks.append(f"{header}:\n{stack}")
    return "\n\n".join(chunks)


# -- audit -------------------------------------------------------------------------------------------

def _tail(path: Path, count: int, chunk: int = 64 * 1024) -> list[str]:
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        position = handle.tell()
        data = b""
        while position > 0 and data.count(b"\n") <= count:
            step = min(chunk, position)
            position -= step
            handle.seek(position)
            data = handle.read(step) + data
    lines = data.decode("utf-8", errors="replace").splitlines()
    return lines[-count:]


@command("audit tail", roles=ADMIN_ONLY)
async def audit_tail(ctx: CommandContext, n: Annotated[int, Arg(help="how many records", min=1, max=1000)] = 20) -> str:
    """The last N records of the audit log (admins only)."""
    path = ctx.log_path
    if path is None:
        raise CommandError("this console has no audit log file")
    try:
        lines = await asyncio.to_thread(_tail, path, n)
    except OSError as exc:
        raise CommandError(f"cannot read the audit log {path}: {exc.strerror}") from None
    return "\n".join(lines) if lines else "(the audit log is empty)"


# -- patches -----------------------------------------------------------------------------------------

def _patch_manager(ctx: CommandContext) -> Any:
    if ctx.patches is not None:
        return ctx.patches
    from shellsvc.patching import default_manager

    return default_manager()


@command("patches list")
def patches_list(ctx: CommandContext) -> str:
    """Live patches with their status, author and time."""
    return str(_patch_manager(ctx).format_list())


@command("patches rollback")
def patches_rollback(ctx: CommandContext, patch_id: Annotated[int, Arg(help="a patch id (see patches list)", min=1,
                                                                          metavar="ID")]) -> str:
    """Undo a live patch: restore exactly what it replaced."""
    from shellsvc.patching import PatchError

    try:
        record = _patch_manager(ctx).rollback(patch_id, user=ctx.user)
    except PatchError as exc:
        raise CommandError(str(exc)) from None
    return f"rolled back {record.summary()}"


BUILTIN_COMMANDS = (
    help_command, status_command, plugins_list, plugins_reload, plugins_unload, plugins_start, plugins_stop,
    sessions_command, tasks_command, where_command, threads_command, audit_tail, patches_list, patches_rollback,
)


def builtin_registry() -> CommandRegistry:
    """A new registry holding the built-in commands; add the application's own to it."""
    registry = CommandRegistry()
    for func in BUILTIN_COMMANDS:
        registry.add(func, origin="builtin")
    registry.describe_group("plugins", "list, reload, unload, start and stop plugins")
    registry.describe_group("audit", "read the audit log (admins)")
    registry.describe_group("patches", "list and roll back live patches")
    return registry
