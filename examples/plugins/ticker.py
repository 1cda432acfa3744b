"""A background ticker: the simplest plugin that owns an asyncio task."""

from __future__ import annotations

import asyncio

from shellsvc import Plugin


class Ticker(Plugin):
    """Counts ticks in the background, once every ``interval`` seconds.

    Try: ``plugins.ticker.ticks``, then edit ``interval`` in this file and watch it reload.
    """

    version = "1.0"
    author = "shellsvc examples"
    tags = ("demo", "background")

    interval = 1.0

    def __init__(self) -> None:
        self.ticks = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._tick(), name="example ticker")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def migrate_from(self, previous: Ticker) -> None:
        self.ticks = previous.ticks  # keep counting across reloads

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.ticks += 1

    def shell_names(self) -> dict[str, object]:
        return {"ticker": self}
