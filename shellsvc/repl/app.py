"""The Python REPL: a prompt_toolkit front end for one :class:`ExecSession`.

It runs inside whatever prompt_toolkit app session is current - the local terminal for
:func:`shellsvc.embed`, an SSH channel for the server - and only awaits, so it never
blocks the event loop and never runs user code on it. While a command runs, keys are
read raw: Ctrl-C interrupts the command, other keys are kept as type-ahead for the next
prompt, and ``input()`` opens a one-line prompt.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import logging
from pathlib import Path

from prompt_toolkit import PromptSession
from prompt_toolkit.application.current import get_app_session
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.input.typeahead import get_typeahead, store_typeahead
from prompt_toolkit.key_binding.key_processor import KeyPress
from prompt_toolkit.keys import Keys
from prompt_toolkit.lexers import PygmentsLexer
from prompt_toolkit.styles import Style
from pygments.lexers.python import PythonLexer

from ..engine.control import current_control
from ..engine.session import ExecSession, Outcome
from .completion import NamespaceCompleter
from .keys import python_prompt_bindings
from .output import TerminalSink

__all__ = ["run_repl", "open_history"]

log = logging.getLogger(__name__)

_STYLE = Style.from_dict({"prompt": "ansigreen bold", "continuation": "ansigreen"})
_PROMPT = FormattedText([("class:prompt", ">>> ")])


def _continuation(width: int, line_number: int, wrap_count: int) -> FormattedText:
    return FormattedText([("class:continuation", "... " if wrap_count == 0 else "    ")])


def open_history(path: Path | None) -> History:
    """A history file readable only by its owner (it holds whatever was typed)."""
    if path is None:
        return InMemoryHistory()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    return FileHistory(str(path))


class _CommandRunner:
    """Runs one cell while reading keys for Ctrl-C and answering ``input()``."""

    def __init__(self, session: ExecSession, sink: TerminalSink, timeout: float | None) -> None:
        self.session = session
        self.sink = sink
        self.timeout = timeout
        self.app_session = get_app_session()
        self.loop = asyncio.get_running_loop()
        self._context = contextvars.copy_context()

    async def run(self, source: str) -> Outcome:
        task = asyncio.ensure_future(self.session.run(source, timeout=self.timeout))
        typeahead: list[KeyPress] = []
        inp = self.app_session.input

        def handle(presses: list[KeyPress]) -> None:
            for press in presses:
                if press.key == Keys.ControlC:
                    self.session.interrupt()
                else:
                    typeahead.append(press)

        try:
            # Keys typed right after Enter were read by the prompt that just ended.
            self.loop.call_soon(handle, get_typeahead(inp))
            with inp.attach(lambda: handle(inp.read_keys())):
                return await task
        finally:
            self.sink.flush_now()
            if typeahead:
                store_typeahead(inp, typeahead)

    # -- input() ------------------------------------------------------------------------
    def readline(self, prompt: str) -> str:
        """Called in the worker thread by ``input()``/``sys.stdin.readline``."""
        answer: concurrent.futures.Future[str] = concurrent.futures.Future()
        holder: list[asyncio.Task[str]] = []

        def start() -> None:
            # The prompt must run in the REPL's context (its prompt_toolkit app session),
            # not the worker thread's.
            task = self.loop.create_task(self._ask(prompt), context=self._context.copy())
            holder.append(task)
            task.add_done_callback(lambda t: _copy_result(t, answer))

        self.loop.call_soon_threadsafe(start)
        control = current_control()
        while True:
            try:
                return answer.result(0.1)
            except concurrent.futures.TimeoutError:
                if control is not None and control.interrupted.is_set():
                    self.loop.call_soon_threadsafe(lambda: [t.cancel() for t in holder])
                    control.land()
            except (EOFError, concurrent.futures.CancelledError):
                raise EOFError("no input (end of file)") from None

    async def _ask(self, prompt: str) -> str:
        message = self.sink.take_partial_line() + prompt
        self.sink.flush_now()
        asker: PromptSession[str] = PromptSession()
        try:
            return await asker.prompt_async(message, set_exception_handler=False, handle_sigint=False) + "\n"
        except KeyboardInterrupt:
            self.session.interrupt()
            raise EOFError("input interrupted") from None


def _copy_result(task: asyncio.Task[str], answer: concurrent.futures.Future[str]) -> None:
    if task.cancelled():
        answer.cancel()
    elif task.exception() is not None:
        answer.set_exception(task.exception())  # type: ignore[arg-type]
    else:
        answer.set_result(task.result())


async def run_repl(
    session: ExecSession,
    *,
    history_file: Path | None = None,
    banner: str = "",
    command_timeout: float | None = None,
) -> None:
    """Run the REPL for ``session`` in the current app session until the user exits.

    Exits on Ctrl-D at an empty prompt or when the code calls ``exit()``/raises
    ``SystemExit``. Ctrl-C clears the line at the prompt and interrupts a running command.
    """
    loop = asyncio.get_running_loop()
    app_session = get_app_session()
    sink = TerminalSink(loop, app_session)
    runner = _CommandRunner(session, sink, command_timeout)
    session.io.redirect(sink.write, sink.write, runner.readline)
    prompt: PromptSession[str] = PromptSession(
        message=_PROMPT,
        multiline=True,
        prompt_continuation=_continuation,
        lexer=PygmentsLexer(PythonLexer),
        completer=NamespaceCompleter(lambda: session.namespace),
        complete_while_typing=True,
        history=open_history(history_file),
        key_bindings=python_prompt_bindings(),
        style=_STYLE,
        include_default_pygments_style=True,
        enable_open_in_editor=False,
        tempfile_suffix=".py",
    )
    if banner:
        sink.write(banner if banner.endswith("\n") else banner + "\n")
        sink.flush_now()
    try:
        # Raw mode across the whole REPL: Ctrl-C is a key we read, never a SIGINT for the app.
        with app_session.input.raw_mode():
            while not session.closed:
                try:
                    # Never take over the host loop's exception handler or SIGINT handler.
                    text = await prompt.prompt_async(set_exception_handler=False, handle_sigint=False)
                except KeyboardInterrupt:
                    continue
                except EOFError:
                    break
                if not text.strip():
                    continue
                await runner.run(text)
    finally:
        sink.flush_now()
        sink.close()
