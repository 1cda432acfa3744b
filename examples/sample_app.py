"""A tiny host application for the example plugins (``shellsvc demo`` hosts it).

Run it on its own with ``python examples/sample_app.py``: it loads ``examples/plugins``,
watches the directory for edits and logs every plugin event until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from pathlib import Path

from shellsvc import Runtime

PLUGIN_DIR = Path(__file__).resolve().parent / "plugins"

log = logging.getLogger("sample_app")


async def build_runtime(plugin_dirs: Iterable[str | Path] = (PLUGIN_DIR,), *, watch: bool = True) -> Runtime:
    """Create a runtime on the running loop, load ``plugin_dirs`` and (optionally) watch them."""
    runtime = Runtime()  # every plugin event is logged by "shellsvc.runtime.events"
    dirs = [Path(d) for d in plugin_dirs]
    for directory in dirs:
        await runtime.load(directory)
    if watch:
        runtime.watch(*dirs)
    return runtime


async def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    runtime = await build_runtime()
    log.info("%r", runtime)
    try:
        while True:
            await asyncio.sleep(5)
            log.info("ticks=%s counter=%s", runtime.plugins.ticker.ticks, runtime.plugins.counter.value)
    finally:
        await runtime.aclose()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
