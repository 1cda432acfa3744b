"""Fan-out: one action on many instances, canary first, stop and roll back on failure.

The first host is the canary and runs alone. If it fails nothing else is touched.
Otherwise the rest run concurrently (at most ``parallel`` at once); the first failure
stops hosts that have not started yet, and when the action applied a patch, every host
where it was applied - the canary included - is rolled back, so the fleet ends as it
began. Code (``-c``) cannot be undone: for it, stopping is all there is.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh

from .connection import ConnectError
from .hostkeys import HostKeyError
from .remote import RemoteError, RemoteShell
from .script import output_writer, run_script
from .target import Target
from .upload import UploadError, upload_patch

__all__ = ["Action", "HostResult", "fan_out", "format_table", "results_json"]

Connect = Callable[[Target], Awaitable[asyncssh.SSHClientConnection]]

#: Longest output kept per host (the table shows less; --json has this much).
MAX_OUTPUT = 64 * 1024


@dataclass(frozen=True)
class Action:
    """What to do on every host: run ``code``, or apply a patch file (uploaded first if ``upload``)."""

    code: str | None = None
    patch: str | None = None     #: the patch file's name in the patches directory
    upload: Path | None = None   #: a local file to upload as ``patch`` first

    def __post_init__(self) -> None:
        if (self.code is None) == (self.patch is None):
            raise ValueError("an action is either code or a patch")


@dataclass
class HostResult:
    target: Target
    status: str = "pending"  #: ok | failed | error | skipped | rolled back | rollback failed
    exit_code: int | None = None
    detail: str = ""
    output: str = ""
    applied: list[int] = field(default_factory=list)
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_json(self) -> dict[str, Any]:
        return {"host": self.target.host, "port": self.target.port, "user": self.target.user, "status": self.status,
                "exit_code": self.exit_code, "detail": self.detail, "output": self.output, "applied": self.applied,
                "duration": round(self.duration, 3)}


class _Host:
    """One host's connection and result while the fan-out runs."""

    def __init__(self, target: Target) -> None:
        self.result = HostResult(target)
        self.conn: asyncssh.SSHClientConnection | None = None
        self.shell: RemoteShell | None = None

    async def run(self, action: Action, connect: Connect, timeout: float | None) -> bool:
        result = self.result
        started = time.monotonic()
        out = io.StringIO()
        try:
            self.conn = await connect(result.target)
            self.shell = await RemoteShell.open(self.conn)
            if action.code is not None:
                result.exit_code = await run_script(self.shell, action.code, stdout=out, stderr=out, timeout=timeout)
                result.status = "ok" if result.exit_code == 0 else "failed"
                result.detail = "" if result.ok else f"exit status {result.exit_code}"
            else:
                assert action.patch is not None
                if action.upload is not None:
                    await upload_patch(self.conn, action.upload, action.patch)
                result.applied = await self.shell.apply_patch(action.patch, output=output_writer(out, out))
                result.status, result.exit_code = "ok", 0
                result.detail = f"applied {format_ids(result.applied)}"
        except RemoteError as exc:
            result.status, result.exit_code, result.detail = "failed", 1, exc.message
        except (ConnectError, HostKeyError, UploadError) as exc:
            result.status, result.detail = "error", str(exc)
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            result.status, result.detail = "error", f"{type(exc).__name__}: {exc}"
        finally:
            result.duration = time.monotonic() - started
            text = out.getvalue()
            result.output = text if len(text) <= MAX_OUTPUT else text[:MAX_OUTPUT] + "\n[output truncated]\n"
        return result.ok

    async def roll_back(self, why: str) -> None:
        result = self.result
        if not result.applied or self.shell is None:
            return
        try:
            await self.shell.rollback_patch(list(reversed(result.applied)))
        except (RemoteError, OSError, asyncssh.Error) as exc:
            result.status = "rollback failed"
            result.detail = f"applied {format_ids(result.applied)}; rollback failed: {exc}"
            return
        result.status = "rolled back"
        result.detail = f"applied {format_ids(result.applied)}, rolled back: {why}"

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


async def fan_out(targets: list[Target], action: Action, connect: Connect, *, parallel: int = 8,
                  timeout: float | None = None) -> list[HostResult]:
    """Run ``action`` on ``targets`` (the first is the canary); results in the order given."""
    hosts = [_Host(t) for t in targets]
    canary, rest = hosts[0], hosts[1:]
    try:
        if not await canary.run(action, connect, timeout):
            for host in rest:
                host.result.status = "skipped"
                host.result.detail = f"not run: the canary {canary.result.target} failed"
            return [h.result for h in hosts]
        stop = asyncio.Event()
        gate = asyncio.Semaphore(max(1, parallel))
        first_failure: list[Target] = []

        async def one(host: _Host) -> None:
            async with gate:
                if stop.is_set():
                    host.result.status = "skipped"
                    host.result.detail = f"not run: {first_failure[0]} failed first"
                    return
                if not await host.run(action, connect, timeout):
                    if not stop.is_set():
                        first_failure.append(host.result.target)
                    stop.set()

        await asyncio.gather(*(one(h) for h in rest))
        if stop.is_set() and action.patch is not None:
            why = f"{first_failure[0]} failed"
            await asyncio.gather(*(h.roll_back(why) for h in hosts if h.result.ok))
        return [h.result for h in hosts]
    finally:
        for host in hosts:
            host.close()


def format_ids(ids: list[int]) -> str:
    """Patch ids as the server's messages show them: ``#3, #4``."""
    return ", ".join(f"#{i}" for i in ids)


def format_table(results: list[HostResult]) -> str:
    """Per-host results as a plain-text table (the first output line of each host shown)."""
    rows = [("HOST", "STATUS", "EXIT", "TIME", "DETAIL")]
    for r in results:
        first_line = next((line for line in r.output.splitlines() if line.strip()), "")
        detail = r.detail or first_line
        rows.append((f"{r.target.user}@{r.target.host}:{r.target.port}", r.status,
                     "-" if r.exit_code is None else str(r.exit_code), f"{r.duration:.2f}s",
                     detail if len(detail) <= 100 else detail[:97] + "..."))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join("  ".join([*(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])), row[4]]).rstrip()
                     for row in rows) + "\n"


def results_json(results: list[HostResult]) -> str:
    return json.dumps({"ok": all(r.ok for r in results), "hosts": [r.to_json() for r in results]}, indent=2) + "\n"
