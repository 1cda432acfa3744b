"""Interactive mode: a local prompt_toolkit prompt in front of a remote session.

Editing is local - fast on a slow link - and the server is asked only to complete (Tab)
and to run what was entered. The prompt never blocks on the network: pushed events and
output of background work are printed above it by :class:`~shellsvc.repl.output.TerminalSink`
(the same sink the server-side REPL uses) while the user keeps typing. The terminal stays
in raw mode for the whole session, so Ctrl-C is a key: at the prompt it clears the line,
while a command runs it interrupts the remote command.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from prompt_toolkit import PromptSession
from prompt_toolkit.application.current import get_app_session
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.filters import has_completions
from prompt_toolkit.input.typeahead import get_typeahead, store_typeahead
from prompt_toolkit.key_binding import KeyBindings, KeyBindingsBase, merge_key_bindings
from prompt_toolkit.key_binding.key_processor import KeyPress, KeyPressEvent
from prompt_toolkit.keys import Keys
from prompt_toolkit.lexers import PygmentsLexer
from prompt_toolkit.styles import Style
from pygments.lexers.python import PythonLexer

from shellsvc.protocol import TOPICS
from shellsvc.repl import open_history
from shellsvc.repl.keys import python_prompt_bindings
from shellsvc.repl.output import TerminalSink

from .remote import RemoteError, RemoteShell

__all__ = ["RemoteCompleter", "default_history_file", "format_event", "run_interactive"]

_STYLE = Style.from_dict({"prompt": "ansigreen bold", "continuation": "ansigreen"})


class RemoteCompleter(Completer):
    """Completions answered by the server (asynchronously: typing never waits for them)."""

    def __init__(self, shell: RemoteShell) -> None:
        self.shell = shell

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Any:
        return iter(())  # only the async path asks the server

    async def get_completions_async(self, document: Document, complete_event: CompleteEvent) -> Any:
        try:
            items = await self.shell.complete(document.text, document.cursor_position)
        except RemoteError:
            return
        for item in items:
            yield Completion(str(item["text"]), int(item["start"]), display=item.get("display") or None,
                             display_meta=item.get("meta") or None)


def _bindings(admin: bool) -> KeyBindingsBase:
    """The REPL's Python bindings, plus Tab inserting what all completions share (a single
    one completely): a completion costs a round trip, so one key press should finish it."""
    kb = KeyBindings()

    @kb.add("tab", filter=~has_completions)
    def _tab(event: KeyPressEvent) -> None:
        buffer = event.current_buffer
        if admin and not buffer.document.current_line_before_cursor.strip():
            buffer.insert_text("    ")
        else:
            buffer.start_completion(insert_common_part=True)

    return merge_key_bindings([python_prompt_bindings(), kb]) if admin else kb


def format_event(topic: str, event: dict[str, Any]) -> str:
    """One line for a pushed event, printed above the prompt."""
    if topic in TOPICS:
        return f"[{topic}] {event.get('text') or event.get('kind')}\n"
    return f"[{topic}] {event}\n"


def default_history_file(role: str) -> Path:
    """``$XDG_STATE_HOME/shellsvc/client-<role>.history`` (Python and console lines apart)."""
    base = Path(os.environ.get("XDG_STATE_HOME") or Path("~/.local/state").expanduser())
    return base / "shellsvc" / f"client-{role}.history"


class _Runner:
    """Runs one entry remotely while reading keys: Ctrl-C interrupts, other keys are type-ahead."""

    def __init__(self, shell: RemoteShell, sink: TerminalSink) -> None:
        self.shell = shell
        self.sink = sink
        self.input = get_app_session().input
        self._typeahead: list[KeyPress] = []

    async def run(self, text: str) -> dict[str, Any] | None:
        """Returns the eval's reply fields (``status``/``exit_code``), or None for a console command."""
        if self.shell.role == "admin":
            work: asyncio.Future[Any] = asyncio.ensure_future(
                self.shell.eval(text, output=self._output, on_input=self._ask))
        else:
            work = asyncio.ensure_future(self.shell.command(text, output=self._output))
        typeahead = self._typeahead = []

        def handle(presses: list[KeyPress]) -> None:
            for press in presses:
                if press.key == Keys.ControlC:
                    asyncio.ensure_future(self._interrupt())
                else:
                    typeahead.append(press)

        loop = asyncio.get_running_loop()
        try:
            loop.call_soon(handle, get_typeahead(self.input))  # keys read by the prompt that just ended
            with self.input.attach(lambda: handle(self.input.read_keys())):
                result = await work
        except RemoteError as exc:
            self.sink.write(f"shellsvc-client: {exc.message}\n")
            return None
        finally:
            self.sink.flush_now()
            if typeahead:
                store_typeahead(self.input, typeahead)
        if self.shell.role == "admin":
            return {"status": result.status, "exit_code": result.exit_code}
        return {"status": "exit" if result.get("exit_requested") else "ok", "exit_code": result.get("exit_status", 0)}

    def _output(self, stream: str, text: str) -> None:
        self.sink.write(text)

    async def _interrupt(self) -> None:
        try:
            await self.shell.interrupt()
        except RemoteError as exc:
            self.sink.write(f"shellsvc-client: interrupt failed: {exc.message}\n")

    async def _ask(self, prompt: str) -> str | None:
        """Remote ``input()``: a one-line local prompt (its own keys; Ctrl-C interrupts)."""
        message = self.sink.take_partial_line() + prompt
        self.sink.flush_now()
        if self._typeahead:  # keys typed before the question came are its answer
            store_typeahead(self.input, self._typeahead[:])
            self._typeahead.clear()
        asker: PromptSession[str] = PromptSession()
        try:
            return await asker.prompt_async(message)
        except KeyboardInterrupt:
            await self._interrupt()
            return None
        except EOFError:
            return None


async def run_interactive(shell: RemoteShell, *, history_file: Path | None = None, where: str = "") -> int:
    """The prompt loop; returns the exit status (``exit(n)`` in the remote code gives n)."""
    loop = asyncio.get_running_loop()
    app_session = get_app_session()
    sink = TerminalSink(loop, app_session)
    admin = shell.role == "admin"
    shell.on_output = lambda stream, text: sink.write(text)
    shell.on_event = lambda topic, event: sink.write(format_event(topic, event))
    prompt: PromptSession[str] = PromptSession(
        message=FormattedText([("class:prompt", ">>> " if admin else f"{shell.hello.get('user')}> ")]),
        multiline=admin,
        prompt_continuation=lambda width, line, wrap: FormattedText([("class:continuation", "... ")]),
        lexer=PygmentsLexer(PythonLexer) if admin else None,
        completer=RemoteCompleter(shell),
        complete_while_typing=False,  # Tab asks the server; typing never waits for the network
        history=open_history(history_file),
        key_bindings=_bindings(admin),
        style=_STYLE,
        include_default_pygments_style=True,
    )

    def closed(exc: Exception | None) -> None:
        app = prompt.app
        if app.is_running:
            app.exit(exception=EOFError())

    shell.on_close = closed
    hello = shell.hello
    sink.write(f"shellsvc-client: {hello.get('user')}@{where} ({hello.get('role')}, {hello.get('server')}, "
               f"Python {hello.get('python')}, pid {hello.get('pid')}). "
               "Tab completes, Ctrl-C interrupts, Ctrl-D leaves.\n")
    sink.flush_now()
    await shell.subscribe(list(TOPICS))
    runner = _Runner(shell, sink)
    status = 0
    left = False  # the user ended the session (Ctrl-D, exit())
    try:
        with app_session.input.raw_mode():
            while not shell.closed.done():
                try:
                    text = await prompt.prompt_async()
                except KeyboardInterrupt:
                    continue
                except EOFError:
                    left = not shell.closed.done()
                    break
                if not text.strip():
                    continue
                result = await runner.run(text)
                if result is not None and result["status"] == "exit":
                    status, left = int(result["exit_code"]), True
                    break
    finally:
        sink.flush_now()
        sink.close()
    if not left:
        reason = shell.closed.result() if shell.closed.done() else None
        print(f"shellsvc-client: connection to {where} closed{f': {reason}' if reason else ''}")
        return 255
    return status
