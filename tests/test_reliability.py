"""Reliability suite: load, churn, floods, vanishing clients, shutdown and malformed input.

The service runs in this (the test) process, so the tests can count its asyncio tasks,
threads and file descriptors; the load comes from ``benchmarks/reliability.py`` in a
process of its own, through real SSH connections on 127.0.0.1.

CI runs the short version (``pytest -m reliability``). The long one, by hand:

    SHELLSVC_RELIABILITY=long .venv/bin/python -m pytest -m reliability -s tests/test_reliability.py

Figures are printed as ``RELIABILITY ...`` lines (``-s`` shows them). docs/reliability.md
says what each check proves.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import math
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shellsvc.protocol import MAX_FRAME, SUBSYSTEM, VERSION, FrameDecoder, encode
from shellsvc.server import ConfigError, Service, load_config, parse_config

from test_server_helpers import authorized_keys, communicate, config, events, make_key, public_line, wait_until

pytestmark = pytest.mark.reliability

LONG = os.environ.get("SHELLSVC_RELIABILITY", "short").lower() == "long"
ROOT = Path(__file__).resolve().parent.parent
DRIVER = ROOT / "benchmarks" / "reliability.py"
ADMINS = ("alice", "bob", "carol", "dave")
OPERATOR = "olga"


def report(name: str, figures: dict[str, Any]) -> None:
    """One line of figures, printed (``-s``) and kept in the test log."""
    line = f"RELIABILITY {name} ({'long' if LONG else 'short'}): " + json.dumps(figures, sort_keys=True)
    print(line)
    logging.getLogger("shellsvc.reliability").info(line)


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# -- what this process holds ----------------------------------------------------------------------

def rss_mb() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def fd_targets() -> list[str]:
    """What each open file descriptor of this process points at."""
    targets = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            targets.append(os.readlink(f"/proc/self/fd/{fd}"))
        except FileNotFoundError:  # the listing's own descriptor, closed already
            continue
    return sorted(targets)


#: The loop's default executor (console commands run there) grows on demand up to this many
#: threads and keeps them: a bounded pool, not a leak, so it is checked against its bound.
EXECUTOR_MAX = min(32, (os.cpu_count() or 1) + 4)


def is_executor_thread(name: str) -> bool:
    return name.startswith("asyncio_")


class Snapshot:
    def __init__(self) -> None:
        gc.collect()
        self.fds = fd_targets()
        names = [t.name for t in threading.enumerate()]
        self.executor_threads = sum(map(is_executor_thread, names))
        self.threads = sorted(n for n in names if not is_executor_thread(n))
        self.tasks = sorted(t.get_name() for t in asyncio.all_tasks())
        self.rss = rss_mb()

    def grown(self, later: Snapshot) -> dict[str, Any]:
        """What ``later`` holds that this snapshot did not (empty lists: nothing leaked)."""
        def extra(before: list[str], after: list[str]) -> list[str]:
            rest = list(before)
            out = []
            for item in after:
                if item in rest:
                    rest.remove(item)
                else:
                    out.append(item)
            return out

        return {"fds": extra(self.fds, later.fds), "threads": extra(self.threads, later.threads),
                "tasks": extra(self.tasks, later.tasks)}


# -- the service under test -------------------------------------------------------------------------

class LogRecords(logging.Handler):
    """What shellsvc logs at ``level`` and above while it is installed (any thread)."""

    def __init__(self, level: int = logging.ERROR) -> None:
        super().__init__(level)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(f"{record.levelname} {record.name}: {record.getMessage()}")

    def errors(self) -> list[str]:
        return [r for r in self.records if r.startswith(("ERROR", "CRITICAL"))]

    def __enter__(self) -> LogRecords:
        logging.getLogger("shellsvc").addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger("shellsvc").removeHandler(self)


class Harness:
    """A running Service plus what a client needs to reach it (keys, known_hosts)."""

    def __init__(self, tmp_path: Path, service: Service, key: Path, logs: LogRecords | None = None) -> None:
        self.tmp_path = tmp_path
        self.logs = logs or LogRecords()
        self.service = service
        self.key = key
        self.known_hosts = tmp_path / "known_hosts"
        self.known_hosts.write_text(service.known_hosts_line())
        self.client_key = asyncssh.read_private_key(key)
        #: Threads that were there before (other tests' abandoned workers are not ours to wait for).
        self.threads_before = set(threading.enumerate())

    def driver_command(self, mode: str, *args: str, users: tuple[str, ...] = ADMINS) -> list[str]:
        return [sys.executable, str(DRIVER), mode, "--port", str(self.service.port), "--key", str(self.key),
                "--known-hosts", str(self.known_hosts), "--users", ",".join(users), "--operator", OPERATOR, *args]

    async def driver(self, mode: str, *args: str, timeout: float) -> dict[str, Any]:
        """Run the driver in its own process; its figures (the last stdout line)."""
        process = await asyncio.create_subprocess_exec(
            *self.driver_command(mode, *args), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(process.communicate(), timeout)
        except asyncio.TimeoutError:
            process.kill()
            await process.wait()
            raise AssertionError(f"the {mode} driver did not finish within {timeout:g} s") from None
        lines = out.decode().strip().splitlines()
        assert lines, f"driver printed nothing (exit {process.returncode}); stderr:\n{err.decode()[-3000:]}"
        return dict(json.loads(lines[-1]))

    async def hold(self, via: str, code: str) -> asyncio.subprocess.Process:
        """A driver process that started ``code`` and waits (to be killed)."""
        process = await asyncio.create_subprocess_exec(
            *self.driver_command("hold", "--via", via, "--code", code),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 60)
        if line != b"READY\n":
            process.kill()
            _, err = await process.communicate()
            raise AssertionError(f"hold driver failed: {line!r} {err.decode()[-2000:]}")
        return process

    def connect(self, user: str = "alice", port: int | None = None, **kwargs: Any) -> Any:
        """An asyncssh connection as ``user`` (to ``port``: e.g. a proxy in front of the service)."""
        port = port or self.service.port
        assert self.service.host_key is not None
        known = f"[127.0.0.1]:{port} {self.service.host_key.export_public_key().decode().strip()}\n"
        return asyncssh.connect("127.0.0.1", port, username=user, client_keys=[self.client_key],
                                known_hosts=asyncssh.import_known_hosts(known), agent_path=None, password=None,
                                config=None, preferred_auth="publickey", **kwargs)

    def diagnose(self) -> str:
        """What the service is doing now (for a failure message)."""
        engine = self.service.engine
        sessions = [f"{s.label}: {'busy ' + repr((s.current_source or '')[:60]) if s.busy else 'idle'}"
                    for s in engine.sessions()]
        threads = [t.name for t in threading.enumerate()]
        return (f"engine sessions {sessions}; scheduler {engine.scheduler.stats()}; threads {threads}; "
                f"open sessions {self.open_sessions()}; connections {len(self.service.connections)}; "
                f"logged {self.logs.records[-10:]}; load average {load_average()}")

    def open_sessions(self) -> int:
        counter = self.service.session_counter
        return sum(counter.count(user) for user in (*ADMINS, OPERATOR))

    async def settle(self, timeout: float = 20.0) -> None:
        """Wait until no session, connection or command is left, and idle pooled workers are gone."""
        service = self.service
        await wait_until(lambda: not service.connections and not service._sessions and not self.open_sessions(),
                         timeout, "every connection and session to close")
        await wait_until(lambda: not any(s.busy for s in service.engine.sessions()), timeout, "commands to end")
        await service.handlers["admin"].pool.aclose()  # cached idle workers are not leaks; drop them
        await wait_until(lambda: not [t for t in threading.enumerate() if t.name.startswith("shellsvc-")
                                      and t.name != "shellsvc-scheduler" and t not in self.threads_before],
                         timeout, "worker threads to end")


def service_config(tmp_path: Path, key_line: str, **limits: Any) -> dict[str, Any]:
    keys = str(authorized_keys(tmp_path, "all", key_line))
    users = {name: {"role": "admin", "authorized_keys": keys} for name in ADMINS}
    users[OPERATOR] = {"role": "operator", "authorized_keys": keys}
    limits.setdefault("max_sessions_per_user", 1000)
    limits.setdefault("max_unauthenticated", 64)
    limits.setdefault("penalty_exempt", ["127.0.0.0/8"])
    return config(tmp_path, users, **limits)


@contextlib.asynccontextmanager
async def serve(tmp_path: Path, **limits: Any) -> AsyncIterator[Harness]:
    key_path, key = make_key(tmp_path, "client_key")
    with LogRecords(logging.WARNING) as logs:
        async with Service(config=service_config(tmp_path, public_line(key), **limits)) as service:
            yield Harness(tmp_path, service, key_path, logs)


class LoopLag:
    """How late a 10 ms ticker on this (the app's) loop wakes up."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(0.01)
            self.samples.append((loop.time() - start - 0.01) * 1000)

    def __enter__(self) -> LoopLag:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="reliability-lag")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()

    def figures(self) -> dict[str, float]:
        ordered = sorted(self.samples) or [0.0]
        return {"lag_p50_ms": round(ordered[len(ordered) // 2], 2),
                "lag_p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 2),
                "lag_max_ms": round(ordered[-1], 2)}


# -- 1. concurrent sessions from another process ------------------------------------------------------

async def test_concurrent_sessions_from_another_process_run_evals_without_errors(tmp_path: Path) -> None:
    sessions, seconds = (100, 60.0) if LONG else (20, 5.0)
    async with serve(tmp_path) as harness:
        rss_before = rss_mb()
        with LoopLag() as lag:
            figures = await harness.driver("load", "--sessions", str(sessions), "--seconds", str(seconds),
                                           timeout=seconds + 240)
        figures.update(lag.figures(), server_rss_growth_mb=round(rss_mb() - rss_before, 1),
                       load_average=load_average())
        report("load", figures)
        assert figures["errors"] == 0, "\n".join([*figures["error_samples"], harness.diagnose()])
        assert not harness.logs.errors()
        assert figures["sessions_open"] == sessions
        assert figures["evals"] >= sessions  # every session answered
        await harness.settle()
        opened = [e for e in events(harness.service, "session_open") if e["kind"] == "subsystem"]
        closed = events(harness.service, "session_close")
        assert len(opened) == len(closed) == sessions
        assert len(events(harness.service, "command")) == len(events(harness.service, "command_result"))


# -- 2. connect / disconnect cycles leak nothing -----------------------------------------------------

async def test_connect_disconnect_cycles_leak_no_tasks_threads_or_fds(tmp_path: Path) -> None:
    count = 1000 if LONG else 100
    async with serve(tmp_path) as harness:
        # Warm up: imports, the scheduler thread, the audit file, caches - then measure.
        warm = await harness.driver("cycles", "--count", "20", timeout=180)
        assert warm["errors"] == 0, "\n".join([*warm["error_samples"], harness.diagnose()])
        await harness.settle()
        before = Snapshot()
        figures = await harness.driver("cycles", "--count", str(count), "--seed", "2", timeout=60 + count * 1.5)
        assert figures["errors"] == 0, "\n".join([*figures["error_samples"], harness.diagnose()])
        assert not harness.logs.errors()
        await harness.settle()
        # Abandoned or cancelled work may take a moment to finish; poll until the counts are back.
        deadline = time.monotonic() + 20
        while True:
            after = Snapshot()
            grown = before.grown(after)
            if not any(grown.values()) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        figures.update(rss_growth_mb=round(after.rss - before.rss, 1), fds=len(after.fds),
                       threads=len(after.threads), executor_threads=after.executor_threads, tasks=len(after.tasks),
                       load_average=load_average())
        report("cycles", figures)
        assert grown == {"fds": [], "threads": [], "tasks": []}
        assert after.executor_threads <= EXECUTOR_MAX
        assert after.rss - before.rss < 50
        service = harness.service
        opened, closed = events(service, "session_open"), events(service, "session_close")
        assert len(opened) == len(closed)
        assert {e["session"] for e in opened} == {e["session"] for e in closed}
        reasons = {e["reason"] for e in closed}
        assert reasons <= {"finished", "disconnected"}, reasons
        assert service.startups.pending == 0


# -- 3. an output flood is bounded by backpressure and interruptible ---------------------------------

FLOOD = "while True: print('x' * 1000)"


class FloodReader(asyncssh.SSHClientSession):  # type: ignore[type-arg]
    """A client session that reads everything, slowly, or nothing at all.

    Opened with a small window (:data:`WINDOW`): while paused it holds at most that
    much, so the server has to keep the rest - or, as it should, stop producing it.
    """

    def __init__(self) -> None:
        self.chan: Any = None
        self.received = 0
        self.tail = ""
        self.closed = asyncio.Event()

    def connection_made(self, chan: Any) -> None:
        self.chan = chan

    def data_received(self, data: str, datatype: Any) -> None:
        self.received += len(data)
        self.tail = (self.tail + data)[-(1 << 20):]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()

    def pause(self) -> None:
        self.chan.pause_reading()

    def resume(self) -> None:
        self.chan.resume_reading()

    def nudge(self) -> None:
        """Take what arrived (at most one window), then stop reading again."""
        self.chan.resume_reading()
        self.chan.pause_reading()


WINDOW = 64 * 1024


def server_backlog(service: Service) -> int:
    """Bytes the server's SSH channels hold unsent (what a flood would pile up)."""
    return sum(s._chan.get_write_buffer_size() for s in list(service._sessions) if s._chan is not None)


async def start_flood(harness: Harness, conn: Any, via: str) -> FloodReader:
    if via == "exec":
        _, reader = await conn.create_session(FloodReader, FLOOD, window=WINDOW)
    elif via == "pty":
        _, reader = await conn.create_session(FloodReader, term_type="xterm", term_size=(80, 24), window=WINDOW)
        await wait_until(lambda: ">>> " in reader.tail, 30, "the REPL prompt")
        reader.chan.write(FLOOD + "\r\r")
    else:
        _, reader = await conn.create_session(FloodReader, subsystem=SUBSYSTEM, window=WINDOW)
        reader.chan.write(encode({"type": "hello", "version": VERSION}) + encode({"type": "eval", "id": 1, "code": FLOOD}))
    await wait_until(lambda: reader.received > 1 << 20, 30, "the flood to start")
    return reader


def interrupt(reader: FloodReader, via: str) -> None:
    if via == "exec":
        reader.chan.send_signal("INT")  # what `ssh` sends for a signal request
    elif via == "pty":
        reader.chan.write("\x03")  # Ctrl-C typed in the terminal
    else:
        reader.chan.write(encode({"type": "interrupt", "id": 2}))


@pytest.mark.parametrize("via", ["exec", "pty", "subsystem"])
async def test_output_flood_is_bounded_by_backpressure_and_interruptible(tmp_path: Path, via: str) -> None:
    phase = 10.0 if LONG else 2.0
    bound = 4 << 20  # what the server may hold unsent for one channel: a few high-water marks
    async with serve(tmp_path) as harness:
        service = harness.service
        async with harness.connect() as conn:
            reader = await start_flood(harness, conn, via)
            rss_before = rss_mb()
            peak = 0

            async def watch(seconds: float, *, slowly: bool) -> None:
                nonlocal peak
                loop = asyncio.get_running_loop()
                end = loop.time() + seconds
                while loop.time() < end:
                    if slowly:
                        reader.nudge()  # at most one window per 50 ms: about 1.3 MB/s
                    await asyncio.sleep(0.05)
                    peak = max(peak, server_backlog(service))

            reader.pause()
            slow_start = reader.received
            await watch(phase, slowly=True)
            slow_rate = (reader.received - slow_start) / phase
            await watch(phase, slowly=False)  # not reading at all
            rss_growth = rss_mb() - rss_before
            assert peak < bound, f"the server piled up {peak} unsent bytes"
            assert rss_growth < 50
            begin = time.monotonic()
            interrupt(reader, via)  # while the client still reads nothing
            await wait_until(lambda: not any(s.busy for s in service.engine.sessions()), 20, "the flood to stop")
            stopped_after = time.monotonic() - begin
            reader.resume()
            ended = {"exec": "KeyboardInterrupt", "pty": ">>> ", "subsystem": '"status":"interrupted"'}[via]
            await wait_until(lambda: ended in reader.tail[-4000:], 30, "the end of the flood to arrive")
            assert "blocked in C code" not in reader.tail  # stopped by the interrupt, not abandoned
            assert "KeyboardInterrupt" in reader.tail
            # The session (or for exec, the connection) still works.
            if via == "exec":
                await asyncio.wait_for(reader.closed.wait(), 20)
                assert (await conn.run("6 * 7", timeout=30)).stdout == "42\n"
            elif via == "pty":
                reader.chan.write("6 * 7\r")
                await wait_until(lambda: "42" in reader.tail[-200:], 30, "an answer after the flood")
            else:
                reader.chan.write(encode({"type": "eval", "id": 3, "code": "6 * 7"}))
                await wait_until(lambda: '"value":"42"' in reader.tail[-500:], 30, "an answer after the flood")
        report(f"flood-{via}", {"peak_unsent_kb": peak // 1024, "rss_growth_mb": round(rss_growth, 1),
                                "slow_reader_mb_per_s": round(slow_rate / 1e6, 2),
                                "interrupt_s": round(stopped_after, 3), "load_average": load_average()})
        results = events(service, "command_result")
        assert results[0]["status"] == "interrupted"


# -- 4. a client that vanishes mid-command frees its session ------------------------------------------

VANISHING = [
    ("exec", "while True: pass"),
    ("exec", "input()"),
    ("pty", "while True: pass"),
    ("subsystem", "import time\ntime.sleep(100)"),
    ("subsystem", "input()"),
]


@pytest.mark.parametrize("via,code", VANISHING, ids=[f"{v}-{c.split()[-1]}" for v, c in VANISHING])
async def test_client_killed_mid_command_frees_its_session(tmp_path: Path, via: str, code: str) -> None:
    async with serve(tmp_path) as harness:
        service = harness.service
        process = await harness.hold(via, code)  # another process; the command is running
        assert harness.open_sessions() == 1 and any(s.busy for s in service.engine.sessions())
        begin = time.monotonic()
        process.kill()  # SIGKILL: the kernel closes its TCP connection, no SSH goodbye
        await process.wait()
        await wait_until(lambda: events(service, "session_close"), 20, "the session to be closed")
        freed_after = time.monotonic() - begin
        await harness.settle()  # counters at 0, no command busy, its worker thread ended
        (closed,) = events(service, "session_close")
        assert closed["reason"] == "disconnected"
        assert events(service, "command_result")[-1]["status"] == "cancelled"
        assert not service.engine.sessions()
        report(f"vanish-{via}", {"code": code, "freed_after_s": round(freed_after, 3)})


class Blackhole:
    """A TCP proxy that can go silent: the network between client and server vanishes
    (no FIN, no RST), so only the server's keepalive can notice."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.frozen = False
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.base_events.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.writers += [writer, up_writer]
        await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer), return_exceptions=True)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while not self.frozen:
            data = await reader.read(65536)
            if not data or self.frozen:
                break
            writer.write(data)
        await asyncio.Event().wait() if self.frozen else None

    async def close(self) -> None:
        for writer in self.writers:
            writer.transport.abort()
        assert self.server is not None
        self.server.close()


async def test_client_behind_a_dead_network_is_dropped_by_keepalive(tmp_path: Path) -> None:
    async with serve(tmp_path, keepalive_interval=0.5, keepalive_count_max=2) as harness:
        service = harness.service
        proxy = Blackhole(service.port)  # type: ignore[arg-type]
        port = await proxy.start()
        conn = await harness.connect(port=port)
        try:
            process = await conn.create_process("print('go', flush=True)\nwhile True: pass")
            assert await asyncio.wait_for(process.stdout.readline(), 30) == "go\n"
            begin = time.monotonic()
            proxy.frozen = True  # packets are now lost in both directions
            await wait_until(lambda: events(service, "session_close"), 30, "keepalive to drop the client")
            freed_after = time.monotonic() - begin
            await harness.settle()
            assert events(service, "session_close")[0]["reason"] == "disconnected"
            assert events(service, "command_result")[0]["status"] == "cancelled"
            report("vanish-network", {"freed_after_s": round(freed_after, 3), "keepalive": "0.5 s x 2"})
        finally:
            conn.abort()
            await proxy.close()


# -- 5. graceful shutdown closes every session within 2 s ----------------------------------------------

#: What the sessions are doing when the service stops: busy loops, sleeps, and calls blocked
#: in C that no interrupt reaches (a socket nobody writes to, a pipe nobody writes to).
RUNNING = {
    "exec-busy": "while True: pass",
    "exec-sleep": "import time\ntime.sleep(100)",
    "exec-blocked-in-c": "sock.recv(1)",
    "subsystem-busy": "while True: pass",
    "subsystem-blocked-in-c": "import os\nos.read(pipe_r, 1)",
    "pty-busy": "while True: pass",
}


#: The same for a server in another process: nothing to release there, it exits.
RUNNING_STANDALONE = {**RUNNING, "exec-blocked-in-c": "import socket\na, b = socket.socketpair()\na.recv(1)",
                      "subsystem-blocked-in-c": "import os\nr, w = os.pipe()\nos.read(r, 1)"}


@contextlib.contextmanager
def c_blockers() -> Iterator[dict[str, Any]]:
    """Names for RUNNING's calls blocked in C; leaving the block releases them (EOF), so
    the abandoned worker threads end instead of outliving the test."""
    sock, peer = socket.socketpair()
    pipe_r, pipe_w = os.pipe()
    try:
        yield {"sock": sock, "pipe_r": pipe_r}
    finally:
        peer.close()
        os.close(pipe_w)
        time.sleep(0.2)  # let the blocked calls return before their descriptors go
        sock.close()
        os.close(pipe_r)


async def start_running(harness: Harness, conns: list[Any], running: dict[str, str] = RUNNING) -> None:
    """One connection per entry of RUNNING, each with its command running; plus an idle
    operator console, an authenticated connection without a session, and a TCP connection
    that never finished its SSH handshake."""
    for name, code in running.items():
        conn = await harness.connect()
        conns.append(conn)
        via = name.split("-")[0]
        marked = f"print('go', flush=True)\n{code}"
        if via == "exec":
            process = await conn.create_process(marked)
        elif via == "subsystem":
            process = await conn.create_process(subsystem=SUBSYSTEM)
            process.stdin.write(encode({"type": "hello", "version": VERSION}) + encode({"type": "eval", "id": 1, "code": marked}))
        else:
            process = await conn.create_process(term_type="xterm", term_size=(80, 24))
            await asyncio.wait_for(process.stdout.readuntil(">>> "), 30)
            process.stdin.write(f"print('go' * 2); exec({code!r})\r")
        await asyncio.wait_for(process.stdout.readuntil("go"), 30)
    console = await harness.connect(OPERATOR)
    conns.append(console)
    process = await console.create_process(term_type="xterm", term_size=(80, 24))
    await asyncio.wait_for(process.stdout.readuntil("> "), 30)
    conns.append(await harness.connect("bob"))


async def test_service_stop_closes_all_sessions_within_2_seconds(tmp_path: Path) -> None:
    with c_blockers() as names:
        await stop_with_everything_running(tmp_path, names)


async def stop_with_everything_running(tmp_path: Path, names: dict[str, Any]) -> None:
    key_path, key = make_key(tmp_path, "client_key")
    service = Service(namespace=names, config=service_config(tmp_path, public_line(key)))
    await service.start()
    harness = Harness(tmp_path, service, key_path)
    conns: list[Any] = []
    half_open = socket.create_connection(("127.0.0.1", service.port))  # never speaks SSH
    try:
        await start_running(harness, conns)
        busy = sum(1 for s in service.engine.sessions() if s.busy)
        sessions = harness.open_sessions()
        assert busy == len(RUNNING) and sessions == len(RUNNING) + 1
        begin = time.monotonic()
        await service.stop()
        took = time.monotonic() - begin
        for conn in conns:
            await asyncio.wait_for(conn.wait_closed(), 5)
        report("shutdown-service-stop", {"sessions": sessions, "busy_commands": busy, "stop_s": round(took, 3),
                                         "load_average": load_average()})
        assert took < 2.0
        assert harness.open_sessions() == 0 and not service._sessions and not service.connections
        closed = events(service, "session_close")
        assert len(closed) == len(RUNNING) + 1 and {e["reason"] for e in closed} == {"disconnected"}
        assert events(service, "service_stop")
    finally:
        half_open.close()
        for conn in conns:
            conn.abort()
        await service.stop()


def serve_config_file(tmp_path: Path, key_line: str) -> Path:
    keys = authorized_keys(tmp_path, "serve", key_line)
    path = tmp_path / "shellsvc.toml"
    path.write_text(
        "[server]\nhost = \"127.0.0.1\"\nport = 0\nstate_dir = \"state\"\n\n"
        "[limits]\nmax_sessions_per_user = 100\npenalty_exempt = [\"127.0.0.0/8\"]\n\n"
        + "".join(f"[users.{name}]\nrole = \"admin\"\nauthorized_keys = \"{keys}\"\n\n" for name in ADMINS)
        + f"[users.{OPERATOR}]\nrole = \"operator\"\nauthorized_keys = \"{keys}\"\n")
    return path


async def test_serve_stops_on_sigterm_and_closes_all_sessions_within_2_seconds(tmp_path: Path) -> None:
    key_path, key = make_key(tmp_path, "client_key")
    cfg = serve_config_file(tmp_path, public_line(key))
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log_file:  # a file, not a pipe nobody reads while it runs
        server = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "shellsvc", "serve", "--config", str(cfg), stdout=asyncio.subprocess.PIPE,
            stderr=log_file)
    assert server.stdout is not None
    conns: list[Any] = []
    try:
        line = (await asyncio.wait_for(server.stdout.readline(), 60)).decode()
        assert "listening on" in line, line
        port = int(line.split("listening on ")[1].split()[0].rsplit(":", 1)[1])

        class Remote:  # what Harness needs of a Service, for a server in another process
            def __init__(self) -> None:
                self.port = port
                self.host_key = asyncssh.read_private_key(str(tmp_path / "state" / "ssh_host_ed25519_key"))

            def known_hosts_line(self) -> str:
                assert self.host_key is not None
                return f"[127.0.0.1]:{port} {self.host_key.export_public_key().decode().strip()}\n"

        harness = Harness(tmp_path, Remote(), key_path)  # type: ignore[arg-type]
        await start_running(harness, conns, RUNNING_STANDALONE)
        begin = time.monotonic()
        server.send_signal(signal.SIGTERM)
        for conn in conns:
            await asyncio.wait_for(conn.wait_closed(), 10)
        disconnected = time.monotonic() - begin
        await asyncio.wait_for(server.wait(), 30)
        exited = time.monotonic() - begin
        report("shutdown-sigterm", {"all_disconnected_s": round(disconnected, 3), "exited_s": round(exited, 3),
                                    "exit_code": server.returncode, "load_average": load_average()})
        assert server.returncode == 0, log_path.read_text()[-5000:]
        assert disconnected < 2.0, log_path.read_text()[-5000:]
        audit = [json.loads(x) for x in (tmp_path / "state" / "audit.log").read_text().splitlines()]
        kinds = [r["event"] for r in audit]
        assert kinds.count("session_close") == kinds.count("session_open") == len(RUNNING) + 1
        assert kinds[-1] == "service_stop"
    except BaseException:
        print(f"shellsvc serve log ({log_path}):\n{log_path.read_text()[-8000:]}")
        raise
    finally:
        for conn in conns:
            conn.abort()
        if server.returncode is None:
            server.kill()
            await server.wait()


HOST_APP = """
import asyncio, threading
from shellsvc.engine import Engine, SessionIO

async def main():
    started = threading.Event()
    engine = Engine({"started": started})
    session = engine.open_session("admin", SessionIO(write_out=lambda t: None, write_err=lambda t: None))
    task = asyncio.ensure_future(session.run(%r))
    while not started.is_set():
        await asyncio.sleep(0.01)
    session.interrupt()
    print((await task).status, flush=True)
    await engine.aclose()

asyncio.run(main())
"""


@pytest.mark.parametrize("code", ["exec('started.set()\\nwhile True: pass')", "eval('started.set() or [0 for _ in iter(int, 1)]')"])
async def test_an_interrupted_exec_of_a_string_leaves_the_hosts_exit_status_alone(tmp_path: Path, code: str) -> None:
    """Regression: CPython flags a KeyboardInterrupt escaping ``exec(str)`` and kills the
    process with SIGINT at exit; interrupting an admin's command made `shellsvc serve`
    (or any host app) exit 130 / -SIGINT instead of 0."""
    script = tmp_path / "host_app.py"
    script.write_text(HOST_APP % code)
    process = await asyncio.create_subprocess_exec(sys.executable, str(script), stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.PIPE)
    out, err = await communicate(process, timeout=60)
    assert out.decode().strip() == "interrupted", err.decode()
    assert process.returncode == 0, err.decode()


# -- 6. malformed input: the config loader ---------------------------------------------------------

def toml_string(text: str) -> str:
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_value(value: Any) -> str:
    """A TOML literal for ``value`` (tomllib can read but not write)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_string(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    return value.isoformat()  # dates and times


def toml_document(data: dict[str, Any]) -> str:
    """Top-level tables as ``[name]`` sections (users as ``[users."name"]``), the rest inline."""
    lines = [f"{toml_string(k)} = {toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for key, table in data.items():
        if not isinstance(table, dict):
            continue
        lines.append(f"[{toml_string(key)}]")
        nested = {k: v for k, v in table.items() if isinstance(v, dict) and key == "users"}
        lines += [f"{toml_string(k)} = {toml_value(v)}" for k, v in table.items() if k not in nested]
        for name, user in nested.items():
            lines.append(f"[{toml_string(key)}.{toml_string(name)}]")
            lines += [f"{toml_string(k)} = {toml_value(v)}" for k, v in user.items()]
    return "\n".join(lines) + "\n"


scalars = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1), st.integers(), st.floats(), st.booleans(),
    st.text(max_size=30), st.sampled_from(["", ".", "..", "/", "~", "~nosuchuser/x", "/dev/null", "state",
                                          "a\x00b", "::1", "0.0.0.0", "10.0.0.0/8", "scrypt$14$8$1$AAAA$BBBB"]),
    st.dates(), st.datetimes(), st.times())
def toml_containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=3))


values = st.recursive(scalars, toml_containers, max_leaves=8)
SERVER_KEYS = ["host", "port", "state_dir", "plugins", "host_key", "audit_log"]
LIMIT_KEYS = ["max_auth_tries", "login_grace_time", "max_unauthenticated", "max_sessions_per_user",
              "auth_failure_delay", "keepalive_interval", "keepalive_count_max", "penalty_authfail",
              "penalty_noauth", "penalty_min", "penalty_max", "penalty_exempt", "command_timeout",
              "max_running_commands"]
known_or_random = lambda keys: st.one_of(st.sampled_from(keys), st.text(max_size=12))  # noqa: E731
users = st.dictionaries(
    st.one_of(st.sampled_from(["alice", "bob-1", "x.y"]), st.text(max_size=8)),
    st.one_of(st.dictionaries(known_or_random(["role", "authorized_keys", "password_hash"]),
                              st.one_of(st.sampled_from(["admin", "operator", "keys"]), values), max_size=4), values),
    max_size=3)
documents = st.fixed_dictionaries({}, optional={
    "server": st.one_of(st.dictionaries(known_or_random(SERVER_KEYS), values, max_size=5), values),
    "limits": st.one_of(st.dictionaries(known_or_random(LIMIT_KEYS), values, max_size=5), values),
    "users": st.one_of(users, values),
}).flatmap(lambda doc: st.dictionaries(st.text(max_size=8), values, max_size=1).map(lambda extra: {**doc, **extra})
           if doc == {} else st.just(doc))

VALID_TOML = """[server]
host = "127.0.0.1"
port = 8022
state_dir = "state"

[limits]
login_grace_time = 30.0
penalty_exempt = ["127.0.0.0/8"]

[users.alice]
role = "admin"
authorized_keys = "keys"
"""


def check_config_file(path: Path) -> str:
    """Load ``path``: it must load, or fail with a ConfigError naming the file."""
    try:
        config = load_config(path)
    except ConfigError as exc:
        assert str(exc).startswith(f"{path}: "), str(exc)
        assert exc.message, str(exc)
        return "error"
    Service(config=config)  # whatever loads can be handed to the service
    return "ok"


@settings(max_examples=3000 if LONG else 300, deadline=None, suppress_health_check=list(HealthCheck))
@given(documents)
def test_random_config_documents_load_or_fail_with_a_clear_error(tmp_path_factory: Any, document: dict[str, Any]) -> None:
    directory = tmp_path_factory.mktemp("cfg", numbered=True)
    (directory / "keys").write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHf0ImB7m0F2pZ4YwWlIt4fCoW0bm5zq4lk7VbV6D9Qy\n")
    path = directory / "shellsvc.toml"
    path.write_text(toml_document(document))
    check_config_file(path)


@settings(max_examples=3000 if LONG else 300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(st.integers(0, len(VALID_TOML)), st.integers(0, 8), st.binary(max_size=6)), max_size=6))
def test_mangled_config_files_load_or_fail_with_a_clear_error(tmp_path_factory: Any,
                                                              edits: list[tuple[int, int, bytes]]) -> None:
    data = bytearray(VALID_TOML.encode())
    for at, cut, insert in edits:  # cut some bytes, insert others (invalid UTF-8 included)
        data[at:at + cut] = insert
    directory = tmp_path_factory.mktemp("cfg", numbered=True)
    (directory / "keys").write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHf0ImB7m0F2pZ4YwWlIt4fCoW0bm5zq4lk7VbV6D9Qy\n")
    path = directory / "shellsvc.toml"
    path.write_bytes(bytes(data))
    check_config_file(path)


@pytest.mark.parametrize("content,problem", [
    (b"[server]\nhost = \"\xff\xfe\"\n", "UTF-8"),
    (b"a = " + b"[" * 5000 + b"]" * 5000 + b"\n", "nested"),
    (b"[limits]\nlogin_grace_time = nan\n", "finite"),
    (b"[limits]\nkeepalive_interval = inf\n", "finite"),
    (b"[limits]\ncommand_timeout = nan\n", "finite"),
    (b"[limits]\nlogin_grace_time = 1" + b"0" * 400 + b"\n", "finite"),
    (b"[limits]\nmax_auth_tries = " + b"1" * 5000 + b"\n", "digits"),
    (b"[limits]\npenalty_exempt = [1]\n", "not an IP network"),
    (b"[server]\nstate_dir = \"~nosuchuser0/state\"\n", "nosuchuser0"),
    (b"[server]\nstate_dir = \"a\\u0000b\"\n", "NUL"),
    (b"[users.alice]\nrole = \"admin\"\nauthorized_keys = \"a\\u0000b\"\n", "NUL"),
    (b"[users.alice]\nrole = \"admin\"\nauthorized_keys = \"latin1\"\n", "UTF-8"),
])
def test_config_defects_found_by_the_fuzz_are_clear_errors(tmp_path: Path, content: bytes, problem: str) -> None:
    """Regressions: each of these escaped as a bare UnicodeDecodeError, RecursionError,
    RuntimeError or ValueError traceback, or (non-finite numbers) was accepted."""
    (tmp_path / "latin1").write_bytes(b"ssh-ed25519 caf\xe9\n")
    path = tmp_path / "shellsvc.toml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: ") and problem in str(caught.value), str(caught.value)


def python_containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.lists(inner, max_size=3), st.tuples(inner),
                     st.dictionaries(st.one_of(st.text(max_size=8), st.integers()), inner, max_size=3))


anything = st.recursive(st.one_of(st.none(), st.integers(), st.floats(), st.text(max_size=10), st.binary(max_size=4),
                                  st.booleans()), python_containers, max_leaves=10)


@settings(max_examples=2000 if LONG else 300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.one_of(documents, st.dictionaries(st.one_of(st.sampled_from(["server", "limits", "users"]), st.integers()),
                                            anything, max_size=3)))
def test_random_config_mappings_parse_or_fail_with_a_clear_error(mapping: dict[Any, Any]) -> None:
    """``Service(config={...})`` takes a mapping too: any Python values, not only TOML's."""
    try:
        config = parse_config(mapping, source="<fuzz>", base_dir=ROOT)
    except ConfigError as exc:
        assert str(exc).startswith("<fuzz>: ") and exc.message
        return
    Service(config=config)


# -- 6. malformed input: the subsystem protocol over a real channel -------------------------------------

class BackgroundService:
    """The service on its own loop in a thread (as in a host app), so a synchronous
    Hypothesis test can drive clients on that loop."""

    def __init__(self, tmp_path: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="reliability-loop", daemon=True)
        self.thread.start()
        self._cm = serve(tmp_path)
        self.harness: Harness = self.call(self._cm.__aenter__())

    def call(self, awaitable: Any, timeout: float = 60) -> Any:
        async def wait() -> Any:
            return await awaitable
        return asyncio.run_coroutine_threadsafe(wait(), self.loop).result(timeout)

    def close(self) -> None:
        try:
            self.call(self._cm.__aexit__(None, None, None))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


class RawChannel(asyncssh.SSHClientSession):  # type: ignore[type-arg]
    """A subsystem channel in bytes: we send anything, and decode what the server sends."""

    def __init__(self) -> None:
        self.decoder = FrameDecoder()
        self.frames: list[dict[str, Any]] = []
        self.changed = asyncio.Event()
        self.closed = False
        self.invalid: list[str] = []

    def data_received(self, data: bytes, datatype: Any) -> None:
        try:
            self.frames += self.decoder.feed(data.decode("ascii"))  # frames are always ASCII
        except (UnicodeDecodeError, ValueError) as exc:
            self.invalid.append(f"{type(exc).__name__}: {exc}")
        self.changed.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.changed.set()

    async def until(self, predicate: Callable[[], bool], timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"server neither answered nor closed within {timeout:g} s: {self.frames[-5:]}")
            self.changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.changed.wait(), remaining)


PROBE_ID = 987654321
ERROR_CODES = set(__import__("shellsvc.protocol", fromlist=["ERROR_CODES"]).ERROR_CODES)


async def send_malformed(harness: Harness, conns: dict[str, Any], user: str, chunks: list[bytes]) -> str:
    """Send ``chunks`` on a fresh subsystem channel, then a ping: the server must answer the
    ping or close the channel after a fatal protocol error; never hang, never send junk."""
    conn = conns[user]
    chan, raw = await conn.create_session(RawChannel, subsystem=SUBSYSTEM, encoding=None)
    await raw.until(lambda: any(f["type"] == "hello" for f in raw.frames), 30)
    chan.write(encode({"type": "hello", "version": VERSION}).encode())
    for chunk in chunks:
        chan.write(chunk)
    chan.write(b"\n" + encode({"type": "ping", "id": PROBE_ID}).encode())

    def answered() -> bool:
        return raw.closed or any(f["type"] == "reply" and f.get("id") == PROBE_ID for f in raw.frames)

    await raw.until(answered, 30)
    assert not raw.invalid, raw.invalid
    for frame in raw.frames:
        if frame["type"] == "reply" and not frame.get("ok", True):
            assert frame["error"]["code"] in ERROR_CODES and frame["error"]["message"], frame
    outcome = "closed" if raw.closed else "answered"
    if raw.closed:  # only after telling the client why
        assert any(f["type"] == "reply" and f.get("id") is None and not f["ok"] for f in raw.frames), raw.frames
    chan.close()
    await chan.wait_closed()
    assert not conn.is_closed() if hasattr(conn, "is_closed") else True
    return outcome


REQUEST_TYPES = sorted(__import__("shellsvc.protocol", fromlist=["REQUEST_FIELDS"]).REQUEST_FIELDS)
FIELDS = ["id", "code", "text", "cursor", "target", "prompt_id", "data", "eof", "topics", "line", "name", "ids",
          "version", "timeout", "client"]
def json_containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=3))


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-3, 3), st.floats(), st.text(max_size=20),
              st.sampled_from(["1 + 1", "print('x')", "input()", "runtime", "patches", "status", "help", "x" * 300])),
    json_containers, max_leaves=8)
frames = st.fixed_dictionaries(
    {"type": st.one_of(st.sampled_from(REQUEST_TYPES), st.text(max_size=12), json_values)},
    optional={name: json_values for name in FIELDS}).map(
    lambda d: (json.dumps(d, allow_nan=True) + "\n").encode())


def mangle(data: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    buffer = bytearray(data)
    for at, cut, insert in edits:
        at %= len(buffer) + 1
        buffer[at:at + cut] = insert
    return bytes(buffer)


pieces = st.one_of(
    frames,
    st.binary(max_size=200),  # garbage, invalid UTF-8 included
    st.builds(mangle, frames, st.lists(st.tuples(st.integers(0, 500), st.integers(0, 4), st.binary(max_size=4)), max_size=3)),
    st.sampled_from([b"\n", b"\n\n\n", b"{}\n", b"[]\n", b"null\n", b'"x"\n', b"\xff\xfe\n", b"\xe2\x82\n",
                     b'{"type":"ping","id":1}', b'{"type": "eval", "id": 5, "code": "1", "timeout": NaN}\n']),
)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` as the writes of a client that sends it in odd pieces (mid-character too)."""
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)]) if data[a:b]]


@pytest.fixture
def background(tmp_path: Path) -> Iterator[BackgroundService]:
    running = BackgroundService(tmp_path)
    try:
        yield running
    finally:
        running.close()


def test_malformed_subsystem_input_is_refused_and_others_are_still_served(background: BackgroundService) -> None:
    harness = background.harness
    conns = {user: background.call(harness.connect(user)) for user in ("alice", "olga")}
    witness = background.call(harness.connect("bob"))
    outcomes: list[str] = []

    async def witness_loop(stop: asyncio.Event) -> int:
        """Another user keeps evaluating while the fuzz runs; every answer must be right."""
        from clients import RemoteShell

        shell = await RemoteShell.open(witness)
        n = 0
        while not stop.is_set():
            n += 1
            result = await asyncio.wait_for(shell.eval(f"w = {n}\nw * 2"), 30)
            assert result.value == str(2 * n), result
            await asyncio.sleep(0.02)
        shell.close()
        return n

    stop = asyncio.Event()
    witnessed = asyncio.run_coroutine_threadsafe(witness_loop(stop), background.loop)

    @settings(max_examples=2500 if LONG else 150, deadline=None, suppress_health_check=list(HealthCheck),
              database=None)
    @given(st.sampled_from(["alice", "olga"]), st.lists(pieces, min_size=1, max_size=5), st.lists(st.integers(0, 10**6), max_size=4))
    def fuzz(user: str, parts: list[bytes], cuts: list[int]) -> None:
        outcomes.append(background.call(send_malformed(harness, conns, user, split(b"".join(parts), cuts))))

    try:
        fuzz()
        background.loop.call_soon_threadsafe(stop.set)
        evals = witnessed.result(60)
    finally:
        for conn in (*conns.values(), witness):
            conn.close()
    report("fuzz-subsystem", {"examples": len(outcomes), "answered": outcomes.count("answered"),
                              "closed_with_protocol_error": outcomes.count("closed"), "witness_evals": evals})
    assert not harness.logs.errors(), harness.logs.errors()[:5]
    assert evals > 0
    background.call(harness.settle())


BIG_CASES = {
    "frame-over-the-limit": b"x" * (MAX_FRAME + 1),
    "deeply-nested": b'{"type":"ping","id":1,"x":' + b"[" * 200000 + b"]" * 200000 + b"}\n",
    "unknown-type-1MiB": json.dumps({"type": "t" * (1 << 20), "id": 1}).encode() + b"\n",
    "eval-8MiB": json.dumps({"type": "eval", "id": 1, "code": "#" * (8 << 20) + "\n6 * 7"}).encode() + b"\n",
    "million-newlines": b"\n" * 1_000_000,
    "invalid-utf8-only": bytes(range(0x80, 0x100)) * 1000 + b"\n",
    "huge-integer-id": b'{"type":"ping","id":' + b"9" * 5000 + b"}\n",
    "nan-timeout": b'{"type":"eval","id":1,"code":"1","timeout":NaN}\n',
}


@pytest.mark.parametrize("name", list(BIG_CASES))
def test_huge_and_pathological_frames_are_refused_cleanly(background: BackgroundService, name: str) -> None:
    harness = background.harness
    conns = {"alice": background.call(harness.connect("alice"))}
    try:
        begin = time.monotonic()
        outcome = background.call(send_malformed(harness, conns, "alice", split(BIG_CASES[name], [65536 * i for i in range(1, 300)])), 120)
        report(f"pathological-{name}", {"outcome": outcome, "seconds": round(time.monotonic() - begin, 2)})
        # The same connection still works.
        assert background.call(conns["alice"].run("6 * 7", timeout=30)).stdout == "42\n"
    finally:
        conns["alice"].close()


async def test_eval_timeouts_must_be_positive_finite_numbers(tmp_path: Path) -> None:
    """Regression: JSON's NaN, Infinity and negative timeouts were taken as they came (NaN
    went into the loop's timer heap; -1 timed out at once); now they are refused by name."""
    async with serve(tmp_path) as harness:
        async with harness.connect() as conn:
            chan, raw = await conn.create_session(RawChannel, subsystem=SUBSYSTEM, encoding=None)
            chan.write(encode({"type": "hello", "version": VERSION}).encode())
            for request_id, literal in enumerate(["NaN", "Infinity", "-Infinity", "-1", "0", "1e400"], 1):
                chan.write(f'{{"type":"eval","id":{request_id},"code":"6 * 7","timeout":{literal}}}\n'.encode())
            chan.write(encode({"type": "eval", "id": 7, "code": "6 * 7", "timeout": 30}).encode())
            await raw.until(lambda: sum(f["type"] == "reply" for f in raw.frames) == 7, 30)
            replies = {f["id"]: f for f in raw.frames if f["type"] == "reply"}
            for request_id in range(1, 7):
                error = replies[request_id]["error"]
                assert error["code"] == "bad_request" and "'timeout' must be a positive finite number" in error["message"]
            assert replies[7]["ok"] and replies[7]["value"] == "42"
        assert len(events(harness.service, "command")) == 1  # nothing else ran


async def test_an_unknown_request_type_is_not_echoed_back_whole(tmp_path: Path) -> None:
    """Regression: a 16 MiB ``type`` came back in the error message and went into the audit log."""
    async with serve(tmp_path) as harness:
        async with harness.connect() as conn:
            chan, raw = await conn.create_session(RawChannel, subsystem=SUBSYSTEM, encoding=None)
            chan.write(encode({"type": "hello", "version": VERSION}).encode())
            chan.write(encode({"type": "t" * (4 << 20), "id": 1}).encode())
            await raw.until(lambda: any(f["type"] == "reply" for f in raw.frames), 30)
            (reply,) = [f for f in raw.frames if f["type"] == "reply"]
            assert reply["error"]["code"] == "unknown_request" and len(reply["error"]["message"]) < 500
        assert harness.service.config.server.audit_log_path.stat().st_size < 64 * 1024


async def test_evaluated_sources_do_not_pile_up_in_memory() -> None:
    """Regression: every command's text was registered in ``linecache`` for good (for
    tracebacks), so a long-running service grew by each eval (an 8 MiB eval: 8 MiB).
    Sources now leave with the last code object compiled from them."""
    import inspect
    import linecache

    from shellsvc.engine import Engine, SessionIO

    engine = Engine({})
    session = engine.open_session("admin", SessionIO(write_out=lambda t: None, write_err=lambda t: None))
    try:
        assert (await session.run("def keep():\n    return 1 / 0")).ok
        gc.collect()

        def cells() -> int:
            return sum(1 for name in list(linecache.cache) if name.startswith(f"<{session.label}-"))

        before = cells()
        for i in range(300):
            assert (await session.run(f"x = {i}\n[x for _ in range(2)]\nprint('#' * 10000)")).ok
            assert (await session.run("def (")).status == "error"
            assert (await session.run("1 / 0")).status == "error"
        gc.collect()
        assert cells() - before <= 64  # the latest syntax errors only
        failed = await session.run("keep()")  # a function defined long ago still shows its line
        assert "return 1 / 0" in str(failed.error)
        assert "return 1 / 0" in inspect.getsource(session.namespace["keep"])
    finally:
        await engine.aclose()
