"""The ``shellsvc`` command line: ``repl``, ``demo``, ``serve``, ``passwd``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from . import __version__

__all__ = ["main", "build_parser"]


class SampleApp:
    """A tiny live application for ``shellsvc repl``: a ticker the REPL can inspect."""

    def __init__(self) -> None:
        self.ticks = 0
        self.items: dict[str, int] = {"apples": 3, "pears": 5}
        self.reads_of_summary = 0

    @property
    def summary(self) -> str:
        """A property with a side effect: completing ``app.summary.`` must not run it."""
        self.reads_of_summary += 1
        return f"{self.ticks} ticks, {sum(self.items.values())} items"

    async def tick_forever(self, interval: float = 0.5) -> None:
        while True:
            await asyncio.sleep(interval)
            self.ticks += 1

    async def refresh(self) -> int:
        """Runs on the app's event loop when awaited from the REPL."""
        await asyncio.sleep(0)
        self.ticks += 1
        return self.ticks

    def __repr__(self) -> str:
        return f"<SampleApp ticks={self.ticks} items={self.items}>"


async def _run_local_repl(args: argparse.Namespace) -> int:
    from .repl import embed

    app = SampleApp()
    ticker = asyncio.create_task(app.tick_forever())
    try:
        await embed(namespace={"app": app}, history_file=args.history, command_timeout=args.timeout)
    finally:
        ticker.cancel()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shellsvc", description="A shell inside a live Python application.")
    parser.add_argument("--version", action="version", version=f"shellsvc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    repl = sub.add_parser("repl", help="a local REPL inside a small sample app (its ticker keeps running)")
    repl.add_argument("--history", type=_path, default=None, help="history file (default: per-user state file)")
    repl.add_argument("--timeout", type=float, default=None, help="per-command timeout in seconds")
    repl.set_defaults(func=lambda args: asyncio.run(_run_local_repl(args)))

    from .server.cli import add_subcommands

    add_subcommands(sub)
    return parser


def _path(text: str) -> object:
    from pathlib import Path

    return Path(text).expanduser()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        level = getattr(args, "log_level", "WARNING")
        logging.basicConfig(level=level.upper() if isinstance(level, str) else level,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
