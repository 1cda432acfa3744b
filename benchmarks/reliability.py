"""Reliability load driver: real SSH clients in a process of their own, against a running shellsvc.

    python benchmarks/reliability.py load   --port P --key KEY --known-hosts FILE --users alice,bob \\
                                            [--sessions 100] [--seconds 60]
    python benchmarks/reliability.py cycles --port P --key KEY --known-hosts FILE --users alice \\
                                            [--operator olga] [--count 1000] [--concurrency 4]
    python benchmarks/reliability.py hold   --port P --key KEY --known-hosts FILE --users alice \\
                                            --via exec|pty|subsystem --code 'while True: pass'

``load``: ``--sessions`` SSH connections, each with one ``shellsvc`` subsystem session (the
project's own :class:`clients.RemoteShell`), run evals back to back for ``--seconds``. Each
eval's answer is checked (a value, a printed line, per-session state), so a wrong or lost
answer counts as an error like a refused or failed one. Prints evals/s and p50/p99 latency.

``cycles``: ``--count`` connect / work / disconnect cycles, rotating through exec, subsystem,
PTY and operator sessions, and disconnects in the middle of ``while True: pass`` and
``time.sleep(10)`` - politely (channel close), by closing the connection, and by aborting
the TCP connection without any SSH goodbye.

``hold``: starts ``--code`` and waits until it printed ``go``, prints ``READY`` and then
does nothing until it is killed: the test kills this process to make a client vanish.

The last line ``load`` and ``cycles`` print on stdout is a JSON object with the figures
(exit status 1 when there were errors); progress goes to stderr. ``tests/test_reliability.py``
runs the service inside the test process (so it can count the service's tasks, threads and
file descriptors) and this driver as a separate process; docs/reliability.md explains it.
Every user named by ``--users``/``--operator`` must accept ``--key``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncssh

#: Printed by commands once they run; a disconnect "mid-command" waits for it.
MARKER = "go"
#: The kinds of ``cycles``, in rotation order (``--kinds`` picks some).
CYCLE_KINDS = (
    "exec", "subsystem", "pty", "operator",
    "exec-busy-close", "exec-sleep-disconnect", "subsystem-busy-disconnect",
    "subsystem-sleep-abort", "pty-busy-disconnect", "exec-busy-abort",
)


class Target:
    """Where to connect and as whom."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.host = args.host
        self.port = args.port
        self.key = asyncssh.read_private_key(str(args.key))
        self.known_hosts = asyncssh.read_known_hosts(str(args.known_hosts))
        self.users = [u for u in args.users.split(",") if u]
        self.operator = args.operator

    async def connect(self, user: str) -> asyncssh.SSHClientConnection:
        return await asyncssh.connect(self.host, self.port, username=user, client_keys=[self.key],
                                      known_hosts=self.known_hosts, agent_path=None, password=None,
                                      config=None, preferred_auth="publickey")


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- load ------------------------------------------------------------------------------------------

class Tally:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors = 0
        self.samples: list[str] = []

    def error(self, text: str) -> None:
        self.errors += 1
        if len(self.samples) < 10:
            self.samples.append(text[:300])


async def load(target: Target, sessions: int, seconds: float, connect_concurrency: int,
               eval_timeout: float) -> dict[str, Any]:
    from clients import RemoteShell

    tally = Tally()
    gate = asyncio.Semaphore(connect_concurrency)

    async def open_one(index: int) -> tuple[asyncssh.SSHClientConnection, Any] | None:
        async with gate:
            try:
                conn = await target.connect(target.users[index % len(target.users)])
                shell = await RemoteShell.open(conn)
            except Exception as exc:  # noqa: BLE001 - every failure is counted as an error
                tally.error(f"session {index}: could not open: {type(exc).__name__}: {exc}")
                return None
        return conn, shell

    async def run_one(index: int, shell: Any, deadline: float) -> None:
        k = 0
        var = f"_rel_{index}"
        while time.monotonic() < deadline:
            k += 1
            printed: list[str] = []
            kind = (k - 1) % 3
            if kind == 0:
                code, want_value, want_out = f"{var} = {k}\n{var} * 3", repr(3 * k), None
            elif kind == 1:
                code, want_value, want_out = f"print('s{index}', {var} + 1)", None, f"s{index} {k}\n"
            else:
                code, want_value, want_out = "sum(range(1000))", "499500", None
            begin = time.monotonic()
            try:
                result = await asyncio.wait_for(
                    shell.eval(code, output=lambda stream, text: printed.append(text)), eval_timeout)
            except Exception as exc:  # noqa: BLE001 - every failure is counted as an error
                tally.error(f"session {index} eval {k}: {type(exc).__name__}: {exc}")
                if shell.closed.done():
                    return
                continue
            tally.latencies.append(time.monotonic() - begin)
            output = "".join(printed)
            if result.status != "ok":
                tally.error(f"session {index} eval {k}: status {result.status}: {result.error}")
            elif want_value is not None and result.value != want_value:
                tally.error(f"session {index} eval {k}: value {result.value!r}, expected {want_value!r}")
            elif want_out is not None and output != want_out:
                tally.error(f"session {index} eval {k}: output {output!r}, expected {want_out!r}")

    t0 = time.monotonic()
    opened = [o for o in await asyncio.gather(*(open_one(i) for i in range(sessions))) if o is not None]
    connect_seconds = time.monotonic() - t0
    progress(f"load: {len(opened)}/{sessions} sessions open in {connect_seconds:.1f} s; running {seconds:g} s")
    begin = time.monotonic()
    deadline = begin + seconds
    await asyncio.gather(*(run_one(i, shell, deadline) for i, (_, shell) in enumerate(opened)))
    elapsed = time.monotonic() - begin
    for conn, shell in opened:
        shell.close()
        conn.close()
    await asyncio.gather(*(conn.wait_closed() for conn, _ in opened), return_exceptions=True)
    lat_ms = [x * 1000 for x in tally.latencies]
    return {
        "mode": "load", "sessions": sessions, "sessions_open": len(opened), "seconds": round(elapsed, 2),
        "connect_seconds": round(connect_seconds, 2), "evals": len(lat_ms),
        "evals_per_s": round(len(lat_ms) / elapsed, 1) if elapsed else 0.0,
        "p50_ms": round(pct(lat_ms, 0.50), 2), "p99_ms": round(pct(lat_ms, 0.99), 2),
        "max_ms": round(max(lat_ms), 2) if lat_ms else 0.0,
        "mean_ms": round(statistics.fmean(lat_ms), 2) if lat_ms else 0.0,
        "errors": tally.errors, "error_samples": tally.samples,
    }


# -- cycles ----------------------------------------------------------------------------------------

async def read_until(stream: Any, needle: str, timeout: float = 20.0) -> str:
    """Read ``stream`` until ``needle`` appeared; returns what was read."""
    try:
        return str(await asyncio.wait_for(stream.readuntil(needle), timeout))
    except asyncio.IncompleteReadError as exc:
        raise AssertionError(f"the stream ended before {needle!r}; got {exc.partial[-300:]!r}") from None
    except asyncio.TimeoutError:
        raise AssertionError(f"{needle!r} not seen within {timeout:g} s") from None


async def wait_started(process: Any, needle: str = MARKER) -> str:
    """``read_until`` on a process's stdout; a failure says what came on stderr instead."""
    try:
        return await read_until(process.stdout, needle)
    except AssertionError as exc:
        seen = []
        for stream in (process.stdout, process.stderr):
            try:
                seen.append(await asyncio.wait_for(stream.read(65536), 2))
            except (asyncio.TimeoutError, asyncssh.Error, OSError) as read_error:
                seen.append(f"<{type(read_error).__name__}>")
        raise AssertionError(f"{exc}; exit status {process.exit_status}; then stdout {seen[0][-500:]!r}, "
                             f"stderr {seen[1][-500:]!r}") from None


def busy(code: str) -> str:
    """``code`` preceded by printing the marker, so the client knows it runs."""
    return f"print({MARKER!r}, flush=True)\n{code}"


async def cycle(target: Target, kind: str, user: str) -> None:
    """One connect / work / disconnect cycle; raises when anything is not as it should be."""
    from clients import RemoteShell
    from shellsvc.protocol import SUBSYSTEM, VERSION, FrameDecoder, encode

    conn = await target.connect(target.operator if kind == "operator" else user)
    aborted = False
    try:
        if kind == "exec":
            result = await conn.run("6 * 7", check=False, timeout=20)
            assert result.exit_status == 0 and result.stdout == "42\n", (result.exit_status, result.stdout, result.stderr)
        elif kind == "operator":
            result = await conn.run("status", check=False, timeout=20)
            assert result.exit_status == 0 and "sessions" in str(result.stdout), (result.stdout, result.stderr)
        elif kind == "subsystem":
            shell = await RemoteShell.open(conn)
            value = (await shell.eval("6 * 7")).value
            assert value == "42", value
            shell.close()
        elif kind == "pty":
            process = await conn.create_process(term_type="xterm", term_size=(80, 24))
            await read_until(process.stdout, ">>> ")
            process.stdin.write("6 * 7\r")
            await read_until(process.stdout, "42")
            process.stdin.write("\x04")  # Ctrl-D leaves the REPL
            await asyncio.wait_for(process.wait_closed(), 20)
        elif kind in ("exec-busy-close", "exec-busy-abort"):
            process = await conn.create_process(busy("while True: pass"))
            await wait_started(process)
            if kind == "exec-busy-close":
                process.close()  # the channel only; the connection closes below
                await asyncio.wait_for(process.wait_closed(), 20)
            else:
                conn.abort()
                aborted = True
        elif kind == "exec-sleep-disconnect":
            process = await conn.create_process(busy("import time\ntime.sleep(10)"))
            await wait_started(process)
        elif kind in ("subsystem-busy-disconnect", "subsystem-sleep-abort"):
            process = await conn.create_process(subsystem=SUBSYSTEM)
            code = busy("while True: pass" if kind == "subsystem-busy-disconnect" else "import time\ntime.sleep(10)")
            process.stdin.write(encode({"type": "hello", "version": VERSION}) + encode({"type": "eval", "id": 1, "code": code}))
            text = await wait_started(process)
            assert FrameDecoder().feed(text[: text.rfind("\n") + 1]), text
            if kind == "subsystem-sleep-abort":
                conn.abort()
                aborted = True
        elif kind == "pty-busy-disconnect":
            process = await conn.create_process(term_type="xterm", term_size=(80, 24))
            await read_until(process.stdout, ">>> ")
            process.stdin.write(f"print({MARKER!r} * 2); any(x for x in iter(int, 1))\r")
            await read_until(process.stdout, MARKER * 2)
        else:
            raise ValueError(f"unknown cycle kind {kind!r}; kinds: {', '.join(CYCLE_KINDS)}")
    finally:
        if not aborted:
            conn.close()
        await asyncio.wait_for(conn.wait_closed(), 20)


async def cycles(target: Target, count: int, concurrency: int, kinds: list[str], seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    errors: list[str] = []
    done: Counter[str] = Counter()
    durations: list[float] = []
    queue: asyncio.Queue[tuple[int, str]] = asyncio.Queue()
    for index in range(count):
        queue.put_nowait((index, kinds[index % len(kinds)]))

    async def worker() -> None:
        while not queue.empty():
            index, kind = queue.get_nowait()
            begin = time.monotonic()
            try:
                await asyncio.wait_for(cycle(target, kind, rng.choice(target.users)), 60)
                done[kind] += 1
            except Exception as exc:  # noqa: BLE001 - every failure is counted as an error
                errors.append(f"cycle {index} ({kind}): {type(exc).__name__}: {exc}"[:3000])
            durations.append(time.monotonic() - begin)
            if (index + 1) % 100 == 0:
                progress(f"cycles: {index + 1}/{count}")

    begin = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.monotonic() - begin
    return {"mode": "cycles", "count": count, "seconds": round(elapsed, 2),
            "cycles_per_s": round(count / elapsed, 1) if elapsed else 0.0, "by_kind": dict(done),
            "p50_ms": round(pct(durations, 0.5) * 1000, 1), "p99_ms": round(pct(durations, 0.99) * 1000, 1),
            "errors": len(errors), "error_samples": errors[:10]}


# -- hold ------------------------------------------------------------------------------------------

async def hold(target: Target, via: str, code: str) -> None:
    from shellsvc.protocol import SUBSYSTEM, VERSION, encode

    conn = await target.connect(target.users[0])
    if via == "exec":
        process = await conn.create_process(busy(code))
        await read_until(process.stdout, MARKER)
    elif via == "pty":
        process = await conn.create_process(term_type="xterm", term_size=(80, 24))
        await read_until(process.stdout, ">>> ")
        process.stdin.write(f"print({MARKER!r} * 2); exec({code!r})\r")
        await read_until(process.stdout, MARKER * 2)
    elif via == "subsystem":
        process = await conn.create_process(subsystem=SUBSYSTEM)
        process.stdin.write(encode({"type": "hello", "version": VERSION})
                            + encode({"type": "eval", "id": 1, "code": busy(code)}))
        await read_until(process.stdout, MARKER)
    else:
        raise ValueError(f"--via must be exec, pty or subsystem, not {via!r}")
    print("READY", flush=True)
    await asyncio.Event().wait()  # until killed


# -- command line ----------------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--host", default="127.0.0.1")
    common.add_argument("--port", type=int, required=True)
    common.add_argument("--key", type=Path, required=True, help="private key accepted for every user")
    common.add_argument("--known-hosts", type=Path, required=True, help="known_hosts file pinning the server key")
    common.add_argument("--users", required=True, help="comma-separated admin user names (used round-robin)")
    common.add_argument("--operator", default=None, help="an operator user (for the 'operator' cycle)")
    p = sub.add_parser("load", parents=[common], help="concurrent sessions running evals")
    p.add_argument("--sessions", type=int, default=100)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--connect-concurrency", type=int, default=8,
                   help="connections being set up at once (keep below the server's max_unauthenticated)")
    p.add_argument("--eval-timeout", type=float, default=30.0, help="an eval slower than this is an error")
    p = sub.add_parser("cycles", parents=[common], help="connect / work / disconnect cycles")
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--kinds", default=",".join(CYCLE_KINDS), help="comma-separated cycle kinds to rotate through")
    p.add_argument("--seed", type=int, default=1)
    p = sub.add_parser("hold", parents=[common], help="start a command, print READY, wait to be killed")
    p.add_argument("--via", choices=("exec", "pty", "subsystem"), required=True)
    p.add_argument("--code", required=True)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    target = Target(args)
    runner: Callable[[], Awaitable[Any]]
    if args.mode == "load":
        runner = lambda: load(target, args.sessions, args.seconds, args.connect_concurrency, args.eval_timeout)  # noqa: E731
    elif args.mode == "cycles":
        kinds = [k for k in args.kinds.split(",") if k]
        unknown = sorted(set(kinds) - set(CYCLE_KINDS))
        if unknown or (("operator" in kinds) and not args.operator):
            print(f"reliability: unknown kinds {unknown} (kinds: {', '.join(CYCLE_KINDS)}); "
                  "the 'operator' kind needs --operator", file=sys.stderr)
            return 2
        runner = lambda: cycles(target, args.count, args.concurrency, kinds, args.seed)  # noqa: E731
    else:
        asyncio.run(hold(target, args.via, args.code))
        return 0
    figures = asyncio.run(runner())
    print(json.dumps(figures), flush=True)
    return 1 if figures["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
