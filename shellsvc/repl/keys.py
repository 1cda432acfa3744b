"""Key bindings of the Python prompt: Enter continues a block or submits the cell."""

from __future__ import annotations

import re

from prompt_toolkit.filters import completion_is_selected, has_completions, has_selection
from prompt_toolkit.key_binding import KeyBindings
from prompt_toolkit.key_binding.key_processor import KeyPressEvent

from ..engine.compiler import is_complete

__all__ = ["python_prompt_bindings", "needs_continuation"]

_BLOCK_OPENER = re.compile(r":\s*(#.*)?$")


def needs_continuation(text: str) -> bool:
    """Whether Enter at the end of ``text`` should open a new line rather than submit.

    Mirrors the interactive interpreter: an incomplete statement continues, and an
    indented block ends only with a blank line.
    """
    if not text.strip():
        return False
    if not is_complete(text):
        return True
    lines = text.rstrip(" ").split("\n")
    if len(lines) == 1:
        return False
    return lines[-1].strip() != ""


def _indent_for(line: str) -> str:
    indent = line[: len(line) - len(line.lstrip())]
    if _BLOCK_OPENER.search(line):
        indent += "    "
    return indent


def python_prompt_bindings() -> KeyBindings:
    kb = KeyBindings()

    @kb.add("enter", filter=completion_is_selected)
    def _accept_completion(event: KeyPressEvent) -> None:
        """Enter on a highlighted completion takes it (the text is already in); run needs another Enter."""
        event.current_buffer.complete_state = None

    @kb.add("enter", filter=~has_selection & ~completion_is_selected)
    def _enter(event: KeyPressEvent) -> None:
        buffer = event.current_buffer
        document = buffer.document
        if document.is_cursor_at_the_end and not needs_continuation(buffer.text):
            buffer.validate_and_handle()
            return
        if not document.is_cursor_at_the_end:
            buffer.insert_text("\n")
            return
        buffer.insert_text("\n" + _indent_for(document.current_line))

    @kb.add("escape", "enter")
    def _submit(event: KeyPressEvent) -> None:
        """Alt-Enter submits whatever is in the buffer."""
        event.current_buffer.validate_and_handle()

    @kb.add("tab", filter=~has_completions)
    def _tab(event: KeyPressEvent) -> None:
        buffer = event.current_buffer
        before = buffer.document.current_line_before_cursor
        if not before.strip():
            buffer.insert_text("    ")
        else:
            buffer.start_completion(select_first=False)

    return kb
