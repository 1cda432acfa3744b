"""Scripting mode: ``-c CODE``, ``-f FILE`` or a script on stdin, output streamed as it comes.

The exit status is the remote code's, as for ``ssh host 'code'``: 0 when it ran, 1 for
an uncaught exception (the traceback is on stderr), n for ``SystemExit(n)``. For an
operator the text is console command lines, run in order until one fails.
"""

from __future__ import annotations

import asyncio
import sys
from typing import TextIO

from .remote import InputCallback, OutputCallback, RemoteShell

__all__ = ["output_writer", "run_script", "stdin_reader"]


def output_writer(stdout: TextIO, stderr: TextIO) -> OutputCallback:
    """An output callback writing each stream to its file, flushed as it comes."""

    def write(stream: str, text: str) -> None:
        target = stderr if stream == "stderr" else stdout
        target.write(text)
        target.flush()

    return write


async def run_script(shell: RemoteShell, code: str, *, stdout: TextIO | None = None, stderr: TextIO | None = None,
                     on_input: InputCallback | None = None, timeout: float | None = None) -> int:
    """Run ``code`` remotely and return its exit status."""
    write = output_writer(stdout or sys.stdout, stderr or sys.stderr)
    shell.on_output = write  # background output that arrives meanwhile is shown too
    if shell.role != "admin":
        status = 0
        for line in code.splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            reply = await shell.command(line, output=write)
            status = int(reply.get("exit_status", 1))
            if status != 0 or reply.get("exit_requested"):
                break
        return status
    result = await shell.eval(code, output=write, on_input=on_input, timeout=timeout)
    return result.exit_code


def stdin_reader() -> InputCallback:
    """Answers remote ``input()`` with lines from this process's stdin (in a thread)."""

    async def read(prompt: str) -> str | None:
        if prompt:
            sys.stdout.write(prompt)
            sys.stdout.flush()
        line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        return line or None

    return read
