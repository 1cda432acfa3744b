"""Line input on a raw PTY channel, for consoles that do not need prompt_toolkit.

With a PTY the client's terminal is in raw mode: nothing is echoed or edited unless
the server does it. The Python REPL uses prompt_toolkit; simple line consoles (the
operator placeholder) use this small editor.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["TerminalLineEditor"]


class TerminalLineEditor:
    """Echo, backspace, Enter, Ctrl-C (interrupt), Ctrl-D (end of input) and Ctrl-U."""

    def __init__(self, write: Callable[[str], object], *, on_interrupt: Callable[[], object] | None = None) -> None:
        self._write = write
        self._on_interrupt = on_interrupt
        self._chars: list[str] = []
        self._pending: asyncio.Future[str | None] | None = None
        self._typeahead: list[str] = []
        self._in_escape = False

    @property
    def active(self) -> bool:
        return self._pending is not None and not self._pending.done()

    async def readline(self, prompt: str = "") -> str | None:
        """One line without its newline; None when the user pressed Ctrl-D on an empty line."""
        if self.active:
            raise RuntimeError("a line is already being read on this terminal")
        if prompt:
            self._write(prompt)
        self._chars = []
        self._pending = asyncio.get_running_loop().create_future()
        typeahead, self._typeahead = "".join(self._typeahead), []
        if typeahead:
            self.feed(typeahead)
        try:
            return await self._pending
        finally:
            self._pending = None

    def feed(self, data: str) -> None:
        if not self.active:
            self._typeahead.append(data)
            return
        for index, char in enumerate(data):
            pending = self._pending
            if pending is None or pending.done():
                self._typeahead.append(data[index:])
                return
            if self._in_escape:
                self._in_escape = not (char.isalpha() or char == "~")
            elif char == "\x1b":
                self._in_escape = True  # arrow keys and the like: not part of a line
            elif char in "\r\n":
                self._write("\r\n")
                pending.set_result("".join(self._chars))
            elif char == "\x03":
                self._write("^C\r\n")
                self._chars = []
                if self._on_interrupt is not None:
                    self._on_interrupt()
            elif char == "\x04":
                if not self._chars:
                    self._write("\r\n")
                    pending.set_result(None)
            elif char in "\x7f\x08":
                if self._chars:
                    self._chars.pop()
                    self._write("\b \b")
            elif char == "\x15":
                self._write("\b \b" * len(self._chars))
                self._chars = []
            elif ord(char) < 32 and char != "\t":
                continue  # other controls are not part of a line
            else:
                self._chars.append(char)
                self._write(char)
