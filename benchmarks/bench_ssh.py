"""Benchmark the SSH service against a raw asyncssh server measured in the same run.

    python benchmarks/bench_ssh.py [--load-seconds 30] [--sessions 100] [--rate 10]

Servers run in child processes (the "app"), clients in this one, so the figures include
real process boundaries. Printed:
  * ``ssh exec '1+1'`` round trip on an open connection: shellsvc vs a raw asyncssh exec
    echo server (ratio; target <= 1.3x)
  * connect + auth (ed25519 public key) time, shellsvc vs raw asyncssh
  * N concurrent sessions each doing R evals/s for T s: errors (target 0), command p50/p99,
    app loop lag p99 (measured by a ticker task inside the server's event loop). A session
    is one long-lived ``shellsvc`` subsystem channel sending eval requests; ``--exec-load``
    adds the same load with a new exec channel per eval
  * memory per idle PTY REPL session (target <= 2 MB)
  * failed-login time for an existing vs an unknown user (should match)
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import asyncssh

USERS = 10
#: The first word of every line the server process answers with (anything else is stray output).
ANSWERS = frozenset({"PORT", "RSS", "OK", "CPU", "LAG"})


def rss_kib() -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# -- server side (child process) ------------------------------------------------------------------

class LagMonitor:
    """How late a 10 ms ticker on the app loop wakes up: the lag any app task would see."""

    def __init__(self) -> None:
        self.samples: list[float] = []

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(0.01)
            self.samples.append(loop.time() - start - 0.01)


async def serve(kind: str, state: Path, keys_file: Path) -> None:
    lag = LagMonitor()
    ticker = asyncio.create_task(lag.run())
    if kind == "shellsvc":
        from shellsvc.server import Service, hash_password

        users = {f"user{i}": {"role": "admin", "authorized_keys": str(keys_file)} for i in range(USERS)}
        # user1 also has a password (default scrypt cost): failure_timing compares it with an unknown name
        users["user1"]["password_hash"] = hash_password("the real password")
        config = {
            "server": {"port": 0, "state_dir": str(state)},
            "limits": {"max_sessions_per_user": 1000, "max_unauthenticated": 1000, "penalty_exempt": ["127.0.0.0/8"]},
            "users": users,
        }
        service = Service(namespace={}, config=config)
        await service.start()
        port = service.port
    else:
        async def echo(process: asyncssh.SSHServerProcess) -> None:
            process.stdout.write(f"{process.command}\n")
            process.exit(0)

        host_key = asyncssh.generate_private_key("ssh-ed25519")
        acceptor = await asyncssh.listen("127.0.0.1", 0, server_host_keys=[host_key], process_factory=echo,
                                         authorized_client_keys=str(keys_file), config=None)
        port = acceptor.get_port()
    print(f"PORT {port}", flush=True)
    reader = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := (await reader.readline()).decode().strip():
        if line == "rss":
            gc.collect()
            print(f"RSS {rss_kib()}", flush=True)
        elif line == "lag-reset":
            lag.samples.clear()
            print("OK", flush=True)
        elif line == "cpu":
            times = os.times()
            print(f"CPU {times.user + times.system:.3f}", flush=True)
        elif line == "lag":
            samples = sorted(lag.samples) or [0.0]
            print(f"LAG {samples[len(samples) // 2]:.6f} {samples[int(len(samples) * 0.99)]:.6f} "
                  f"{samples[-1]:.6f}", flush=True)
        elif line == "quit":
            break
    ticker.cancel()


# -- client side ----------------------------------------------------------------------------------

class Server:
    def __init__(self, kind: str, workdir: Path, keys_file: Path) -> None:
        self.kind = kind
        self.workdir = workdir
        self.keys_file = keys_file
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0

    async def __aenter__(self) -> Server:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--serve", self.kind, "--state", str(self.workdir / f"state-{self.kind}"),
            "--keys", str(self.keys_file), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        self.port = int((await self.ask(None)).split()[1])
        return self

    async def ask(self, command: str | None) -> str:
        """Send a command to the server process; its answer is the next line that is one."""
        assert self.proc is not None and self.proc.stdin and self.proc.stdout
        if command is not None:
            self.proc.stdin.write(f"{command}\n".encode())
            await self.proc.stdin.drain()
        while True:
            line = (await asyncio.wait_for(self.proc.stdout.readline(), 60)).decode()
            if not line:
                raise RuntimeError(f"the {self.kind} server process exited")
            if line.split(" ", 1)[0].strip() in ANSWERS:
                return line.strip()
            print(f"  ({self.kind} server printed: {line.rstrip()!r})", file=sys.stderr)

    async def __aexit__(self, *exc: object) -> None:
        assert self.proc is not None and self.proc.stdin
        self.proc.stdin.write(b"quit\n")
        await self.proc.stdin.drain()
        try:
            await asyncio.wait_for(self.proc.wait(), 20)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


def connect(port: int, key: asyncssh.SSHKey, user: str = "user0", **kwargs: object) -> object:
    return asyncssh.connect("127.0.0.1", port, username=user, client_keys=[key], known_hosts=None,
                            agent_path=None, config=None, **kwargs)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


async def interleaved_round_trips(raw_port: int, svc_port: int, key: asyncssh.SSHKey,
                                  count: int) -> tuple[list[float], list[float]]:
    """Both servers' round trips, alternating in blocks of 10 so machine noise hits both alike."""
    async with connect(raw_port, key) as raw, connect(svc_port, key) as svc:
        raw_times: list[float] = []
        svc_times: list[float] = []
        for conn in (raw, svc):
            for _ in range(20):  # warm-up
                await conn.run("1+1")
        while len(svc_times) < count:
            for conn, times in ((raw, raw_times), (svc, svc_times)):
                for _ in range(min(10, count - len(times))):
                    start = time.perf_counter()
                    result = await conn.run("1+1")
                    times.append(time.perf_counter() - start)
                    assert result.exit_status == 0 and result.stdout.strip() in ("2", "1+1"), result
        return raw_times, svc_times


async def connect_times(port: int, key: asyncssh.SSHKey, count: int) -> list[float]:
    times = []
    for _ in range(count):
        start = time.perf_counter()
        async with connect(port, key):
            times.append(time.perf_counter() - start)
    return times


class ExecEvaluator:
    """One exec channel per eval (``ssh host 'code'`` in a loop): the costliest way to ask."""

    def __init__(self, conn: asyncssh.SSHClientConnection) -> None:
        self.conn = conn

    async def start(self) -> None:
        pass

    async def eval(self, code: str) -> str:
        result = await self.conn.run(code)
        if result.exit_status != 0:
            raise RuntimeError(f"exit status {result.exit_status}: {result.stderr!r}")
        return str(result.stdout).strip()

    def close(self) -> None:
        pass


class SubsystemEvaluator:
    """One long-lived session (the ``shellsvc`` subsystem) carrying eval requests."""

    def __init__(self, conn: asyncssh.SSHClientConnection) -> None:
        self.conn = conn
        self.ids = 0
        self.pending: dict[int, asyncio.Future[dict]] = {}

    async def start(self) -> None:
        import json

        from shellsvc.protocol import SUBSYSTEM, encode

        self.encode = encode
        self.process = await self.conn.create_process(subsystem=SUBSYSTEM)
        self.process.stdin.write(encode({"type": "hello", "version": 1}))

        async def read() -> None:
            buffer = ""
            while chunk := await self.process.stdout.read(65536):
                buffer += chunk
                *lines, buffer = buffer.split("\n")
                for line in lines:
                    frame = json.loads(line) if line.strip() else {}
                    if frame.get("type") == "reply" and frame.get("id") in self.pending:
                        self.pending.pop(frame["id"]).set_result(frame)
            for future in self.pending.values():
                future.set_exception(ConnectionError("subsystem channel closed"))

        self.reader = asyncio.create_task(read())

    async def eval(self, code: str) -> str:
        self.ids += 1
        future = self.pending[self.ids] = asyncio.get_running_loop().create_future()
        self.process.stdin.write(self.encode({"type": "eval", "id": self.ids, "code": code}))
        reply = await future
        if not reply.get("ok") or reply.get("status") != "ok":
            raise RuntimeError(f"eval failed: {reply}")
        return str(reply.get("value"))

    def close(self) -> None:
        self.reader.cancel()
        self.process.close()


async def load(server: Server, key: asyncssh.SSHKey, sessions: int, rate: float, seconds: float,
               evaluator: type[ExecEvaluator] | type[SubsystemEvaluator]) -> dict:
    conns = [await connect(server.port, key, user=f"user{i % USERS}") for i in range(sessions)]
    evaluators = [evaluator(conn) for conn in conns]
    for item in evaluators:
        await item.start()
    latencies: list[float] = []
    errors: list[str] = []
    await server.ask("lag-reset")
    server_cpu = float((await server.ask("cpu")).split()[1])
    client_cpu = sum(os.times()[:2])
    deadline = time.perf_counter() + seconds

    async def session(index: int, item: ExecEvaluator | SubsystemEvaluator) -> None:
        await asyncio.sleep(index / sessions / rate)  # spread the starts
        interval = 1.0 / rate
        next_at = time.perf_counter()
        counter = 0
        while time.perf_counter() < deadline:
            counter += 1
            start = time.perf_counter()
            try:
                value = await item.eval(f"{index} * 1000 + {counter}")
                if value != str(index * 1000 + counter):
                    errors.append(f"bad result {value!r}")
            except (OSError, RuntimeError, asyncssh.Error) as exc:
                errors.append(repr(exc))
            latencies.append(time.perf_counter() - start)
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))

    started = time.perf_counter()
    await asyncio.gather(*(session(i, e) for i, e in enumerate(evaluators)))
    elapsed = time.perf_counter() - started
    lag = [float(x) for x in (await server.ask("lag")).split()[1:]]
    server_cpu = float((await server.ask("cpu")).split()[1]) - server_cpu
    client_cpu = sum(os.times()[:2]) - client_cpu
    for item, conn in zip(evaluators, conns):
        item.close()
        conn.close()
    return {"errors": errors, "latencies": latencies, "lag": lag, "elapsed": elapsed,
            "server_cpu": server_cpu / elapsed, "client_cpu": client_cpu / elapsed}


async def idle_memory(server: Server, key: asyncssh.SSHKey, count: int) -> float:
    before = int((await server.ask("rss")).split()[1])
    conns, processes = [], []
    for i in range(count):
        conn = await connect(server.port, key, user=f"user{i % USERS}")
        process = await conn.create_process(term_type="xterm", term_size=(80, 24))
        conns.append(conn)
        processes.append(process)
    for process in processes:
        buffered = ""
        while ">>> " not in buffered:
            buffered += await asyncio.wait_for(process.stdout.read(4096), 30)
    after = int((await server.ask("rss")).split()[1])
    for conn in conns:
        conn.close()
    return (after - before) / count / 1024


async def failure_timing(port: int, count: int) -> tuple[float, float]:
    """Median failed-login time (password) for an existing and an unknown user."""
    async def attempt(user: str) -> float:
        start = time.perf_counter()
        try:
            async with asyncssh.connect("127.0.0.1", port, username=user, password="wrong", known_hosts=None,
                                        client_keys=None, agent_path=None, config=None,
                                        preferred_auth="password"):
                pass
        except asyncssh.PermissionDenied:
            pass
        return time.perf_counter() - start

    known = [await attempt("user1") for _ in range(count)]
    unknown = [await attempt("nobody") for _ in range(count)]
    return statistics.median(known), statistics.median(unknown)


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-ssh-") as tmp:
        workdir = Path(tmp)
        key = asyncssh.generate_private_key("ssh-ed25519")
        keys_file = workdir / "authorized_keys"
        keys_file.write_bytes(key.export_public_key())
        async with Server("raw", workdir, keys_file) as raw, Server("shellsvc", workdir, keys_file) as svc:
            print(f"bench_ssh: python {sys.version.split()[0]}, asyncssh {asyncssh.__version__}, "
                  f"{os.cpu_count()} CPUs")
            raw_rt, svc_rt = await interleaved_round_trips(raw.port, svc.port, key, args.round_trips)
            ratio = statistics.median(svc_rt) / statistics.median(raw_rt)
            print(f"exec '1+1' round trip (n={args.round_trips}): shellsvc median {statistics.median(svc_rt)*1e3:.2f} ms "
                  f"p99 {pct(svc_rt, .99)*1e3:.2f} ms | raw asyncssh echo median {statistics.median(raw_rt)*1e3:.2f} ms "
                  f"p99 {pct(raw_rt, .99)*1e3:.2f} ms | ratio {ratio:.2f}x (target <= 1.3x)")
            raw_ct = await connect_times(raw.port, key, args.connects)
            svc_ct = await connect_times(svc.port, key, args.connects)
            print(f"connect+auth ed25519 (n={args.connects}): shellsvc median {statistics.median(svc_ct)*1e3:.2f} ms | "
                  f"raw asyncssh {statistics.median(raw_ct)*1e3:.2f} ms | "
                  f"ratio {statistics.median(svc_ct)/statistics.median(raw_ct):.2f}x")
            modes = [("one shellsvc-subsystem session each", SubsystemEvaluator)]
            if args.exec_load:
                modes.append(("a new exec channel per eval", ExecEvaluator))
            for label, evaluator in modes:
                result = await load(svc, key, args.sessions, args.rate, args.load_seconds, evaluator)
                lat = result["latencies"]
                achieved = len(lat) / result["elapsed"]
                print(f"load: {args.sessions} sessions x {args.rate:g} evals/s for {args.load_seconds:g} s ({label}): "
                      f"{len(lat)} evals ({achieved:.0f}/s of {args.sessions*args.rate:.0f}/s offered), "
                      f"errors {len(result['errors'])} (target 0), command p50 {pct(lat, .5)*1e3:.1f} ms "
                      f"p99 {pct(lat, .99)*1e3:.1f} ms, app loop lag p50 {result['lag'][0]*1e3:.1f} ms "
                      f"p99 {result['lag'][1]*1e3:.1f} ms max {result['lag'][2]*1e3:.1f} ms; CPU: server "
                      f"{result['server_cpu']*100:.0f}% of a core, load-generating client "
                      f"{result['client_cpu']*100:.0f}%, machine load avg {os.getloadavg()[0]:.1f}")
                for error in result["errors"][:3]:
                    print(f"  error: {error}")
            per_session = await idle_memory(svc, key, args.idle_sessions)
            print(f"memory per idle PTY REPL session (n={args.idle_sessions}): {per_session:.2f} MB (target <= 2 MB)")
        async with Server("shellsvc", workdir, keys_file) as svc:
            known, unknown = await failure_timing(svc.port, args.failures)
            print(f"failed password login (n={args.failures} each): existing user {known*1e3:.0f} ms, "
                  f"unknown user {unknown*1e3:.0f} ms, ratio {known/unknown:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", choices=["shellsvc", "raw"], help=argparse.SUPPRESS)
    parser.add_argument("--state", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--keys", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--round-trips", type=int, default=300)
    parser.add_argument("--connects", type=int, default=30)
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--load-seconds", type=float, default=30.0)
    parser.add_argument("--exec-load", action="store_true",
                        help="also run the load with a new exec channel per eval (costlier per eval)")
    parser.add_argument("--idle-sessions", type=int, default=50)
    parser.add_argument("--failures", type=int, default=5)
    arguments = parser.parse_args()
    if arguments.serve:
        asyncio.run(serve(arguments.serve, arguments.state, arguments.keys))
    else:
        asyncio.run(main(arguments))
