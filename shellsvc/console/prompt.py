"""The interactive console: a prompt_toolkit prompt with completion, history and Ctrl-C.

:func:`run_console` runs inside whatever prompt_toolkit app session is current - the
server creates one per SSH channel (``create_app_session(input=..., output=...)``), the
local terminal has the default one - and only awaits, so concurrent consoles never share
input or output. The prompt's escape hatches to the host (``enable_system_prompt``,
``enable_open_in_editor``, ``enable_suspend``) are switched off explicitly: each would run
something on the server outside the allow-list.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
from collections.abc import Iterable, Iterator
from pathlib import Path

from prompt_toolkit import PromptSession, print_formatted_text
from prompt_toolkit.application.current import get_app_session
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.input.typeahead import get_typeahead, store_typeahead
from prompt_toolkit.key_binding.key_processor import KeyPress
from prompt_toolkit.keys import Keys
from prompt_toolkit.styles import Style

from .console import CommandResult, Console, await_interruptible
from .registry import Command

__all__ = ["ConsoleCompleter", "run_console"]

log = logging.getLogger(__name__)

_STYLE = Style.from_dict({"prompt": "ansicyan bold", "error": "ansired"})


class ConsoleCompleter(Completer):
    """Completes command and subcommand names, option names and argument values
    (enum members, plugin names, task names...), for the commands the role may run."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterator[Completion]:
        text = document.text_before_cursor
        try:
            words = shlex.split(text)
        except ValueError:
            return  # inside an unfinished quote
        partial = "" if not text or text[-1].isspace() else (words.pop() if words else "")
        yield from self._complete(words, partial)

    def _complete(self, words: list[str], partial: str) -> Iterator[Completion]:
        console = self.console
        table = console.table()
        path: tuple[str, ...] = ()
        for index, word in enumerate(words):
            candidate = (*path, word)
            cmd = table.get(candidate)
            if cmd is not None:
                if not cmd.allowed(console.role):
                    return
                if cmd.name == "help":
                    yield from self._help_topics(words[index + 1:], partial)
                    return
                yield from self._arguments(cmd, words[index + 1:], partial)
                return
            if not table.is_group(candidate):
                return
            path = candidate
        for name in console.visible(path):
            if name.startswith(partial):
                cmd = table.get((*path, name))
                meta = cmd.summary if cmd is not None else (table.group_summary((*path, name)) or "group")
                yield Completion(name, start_position=-len(partial), display_meta=meta)

    def _help_topics(self, words: list[str], partial: str) -> Iterator[Completion]:
        path = tuple(words)
        table = self.console.table()
        if path and not table.is_group(path):
            return
        for name in self.console.visible(path):
            if name.startswith(partial):
                yield Completion(name, start_position=-len(partial))

    def _arguments(self, cmd: Command, words: list[str], partial: str) -> Iterator[Completion]:
        options = cmd.options()
        ctx = self.console.context
        if partial.startswith("-"):
            for name, param in options.items():
                if name.startswith(partial):
                    yield Completion(name, start_position=-len(partial), display_meta=param.help or None)
            return
        # Which parameter does the word being typed belong to?
        pending_option = None
        loose = 0
        for word in words:
            if pending_option is not None:
                pending_option = None
                continue
            if word.startswith("--") and "=" not in word:
                param = options.get(word)
                if param is not None and param.kind == "option":
                    pending_option = param
                continue
            loose += 1
        if pending_option is not None:
            target = pending_option
        else:
            positional = cmd.positional()
            slots = [p for p in positional if p.kind == "positional"]
            variadic = [p for p in positional if p.kind == "variadic"]
            if loose < len(slots):
                target = slots[loose]
            elif variadic:
                target = variadic[0]
            else:
                return
        try:
            values = target.completion_words(ctx)
        except Exception:  # noqa: BLE001 - a failing choices() must not break typing
            log.exception("console: completing %s of %r failed", target.name, cmd.name)
            return
        for value in _matching(values, partial):
            yield Completion(_quoted(value), start_position=-len(partial))


def _matching(values: Iterable[str], partial: str) -> list[str]:
    return sorted(v for v in set(values) if v.startswith(partial))


def _quoted(value: str) -> str:
    return shlex.quote(value) if value else "''"


async def _run_interruptibly(console: Console, line: str) -> CommandResult:
    """Run one line; Ctrl-C cancels it, other keys typed meanwhile wait for the next prompt."""
    inp = get_app_session().input
    task = asyncio.ensure_future(console.execute(line))
    typeahead: list[KeyPress] = []
    interrupted = False

    def handle(presses: list[KeyPress]) -> None:
        nonlocal interrupted
        for press in presses:
            if press.key == Keys.ControlC:
                interrupted = True
                task.cancel()
            else:
                typeahead.append(press)

    loop = asyncio.get_running_loop()
    loop.call_soon(handle, get_typeahead(inp))
    try:
        with inp.attach(lambda: handle(inp.read_keys())):
            return await await_interruptible(task, lambda: interrupted)
    finally:
        if typeahead:
            store_typeahead(inp, typeahead)


def _show(result: CommandResult) -> None:
    if result.output:
        print_formatted_text(result.output, end="")
    if result.error:
        print_formatted_text(FormattedText([("class:error", result.error)]), end="", style=_STYLE)


async def run_console(console: Console, *, history_file: Path | None = None, banner: str | None = None) -> int:
    """Prompt for commands in the current app session until Ctrl-D, ``exit`` or ``quit``.

    Returns the exit status of the last command (0 if none failed last).
    """
    from shellsvc.repl.app import open_history

    app_session = get_app_session()
    session: PromptSession[str] = PromptSession(
        message=FormattedText([("class:prompt", f"{console.user}> ")]),
        completer=ConsoleCompleter(console),
        complete_while_typing=True,
        history=open_history(history_file),
        style=_STYLE,
        multiline=False,
        # Each of these would reach the host outside the allow-list: keep them off.
        enable_system_prompt=False,
        enable_open_in_editor=False,
        enable_suspend=False,
    )
    if banner is None:
        banner = (f"shellsvc console for {console.user} ({console.role}): allow-listed commands only. "
                  "Type help; Tab completes; exit or Ctrl-D leaves.\n")
    if banner:
        print_formatted_text(banner, end="" if banner.endswith("\n") else "\n")
    status = 0
    # Raw mode for the whole console: Ctrl-C is a key we read, never a SIGINT for the host.
    with app_session.input.raw_mode():
        while True:
            try:
                # The loop's exception and SIGINT handlers belong to the host application.
                line = await session.prompt_async(set_exception_handler=False, handle_sigint=False)
            except KeyboardInterrupt:
                continue
            except EOFError:
                break
            result = await _run_interruptibly(console, line)
            _show(result)
            if result.exit_requested:
                break
            if result.command is not None or result.denied or result.exit_status:
                status = result.exit_status
    return status
