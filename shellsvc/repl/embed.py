"""``await shellsvc.embed(...)``: the REPL on the local terminal, inside the running app."""

from __future__ import annotations

import asyncio
import getpass
import os
import sys
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from prompt_toolkit.application.current import create_app_session
from prompt_toolkit.input import create_input
from prompt_toolkit.output import create_output

from ..engine import Engine, NamespaceRegistry, SessionIO
from .app import run_repl

__all__ = ["embed", "default_history_file"]


def default_history_file(user: str) -> Path:
    """``$XDG_STATE_HOME/shellsvc/history-<user>`` (``~/.local/state`` by default)."""
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "shellsvc" / f"history-{user}"


async def embed(
    namespace: MutableMapping[str, Any] | None = None,
    *,
    user: str | None = None,
    engine: Engine | None = None,
    history_file: str | os.PathLike[str] | None = None,
    banner: str | None = None,
    command_timeout: float | None = None,
) -> None:
    """Run the Python REPL on this process's terminal without blocking the app.

    ``namespace`` is used as the REPL's globals directly, so what the user defines is
    visible to the app and vice versa. Returns when the user presses Ctrl-D or calls
    ``exit()``; the application keeps running throughout.
    """
    stdin, stdout = sys.__stdin__, sys.__stdout__
    if stdin is None or stdout is None:
        raise RuntimeError("shellsvc.embed() needs the process's terminal, but sys.__stdin__/sys.__stdout__ is "
                           "None (no console); serve the REPL over SSH with shellsvc.Service instead")
    user = user or getpass.getuser()
    if engine is None:
        registry = NamespaceRegistry()
        if namespace is not None:
            registry.adopt(user, namespace)
        engine = Engine(registry, loop=asyncio.get_running_loop())
    elif namespace is not None:
        engine.namespaces.adopt(user, namespace)
    session = engine.open_session(user, SessionIO(stdout.write, stdout.write), label="local")
    if banner is None:
        banner = (f"shellsvc {sys.version.split()[0]} local REPL as {user!r} - the app keeps running.\n"
                  "Ctrl-C interrupts, Ctrl-D exits, Alt-Enter submits a block.")
    with create_app_session(input=create_input(stdin), output=create_output(stdout)):
        try:
            await run_repl(
                session,
                history_file=Path(history_file) if history_file is not None else default_history_file(user),
                banner=banner,
                command_timeout=command_timeout,
            )
        finally:
            await session.close()
