"""Benchmark the client protocol: eval over the ``shellsvc`` subsystem vs an exec channel vs raw echo.

    python benchmarks/bench_client.py [-n 500] [--cli 5]

The servers run in a child process (the "app"), the clients in this one. Measured in
the same run, on one open connection each:

  * raw asyncssh echo - a line written on an open session channel and read back: the
    floor any request/response over SSH pays (baseline, 1.0x);
  * ``eval`` over the subsystem (:class:`clients.RemoteShell`), code ``1``;
  * an exec request per eval (``conn.run("1")``: open channel, exec, exit status, close);
  * completion latency (``complete`` request) in a namespace of 2,000 names, and of an
    attribute of a module;
  * with ``--cli N``: wall time of ``shellsvc-client -c 1`` vs OpenSSH ``ssh host 1``
    (process start, connect, auth, run), N runs each.

Printed as median and p99 with ratios against the echo baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncssh

ROOT = Path(__file__).resolve().parent.parent


# -- the app (child process) -------------------------------------------------------------------------

async def serve(workdir: Path) -> None:
    from shellsvc.server import Service

    keys = workdir / "authorized_keys"
    namespace: dict[str, object] = {f"name_{i}": i for i in range(2000)}
    namespace["os"] = os
    config = {"server": {"port": 0, "state_dir": str(workdir / "state")},
              "limits": {"max_sessions_per_user": 1000},
              "users": {"bench": {"role": "admin", "authorized_keys": str(keys)}}}

    async def echo(process: asyncssh.SSHServerProcess) -> None:  # type: ignore[type-arg]
        async for line in process.stdin:
            process.stdout.write(line)
        process.exit(0)

    host_key = asyncssh.generate_private_key("ssh-ed25519")
    raw = await asyncssh.listen("127.0.0.1", 0, server_host_keys=[host_key], authorized_client_keys=str(keys),
                                process_factory=echo, encoding="utf-8")
    async with Service(namespace=namespace, config=config) as service:
        raw_port = raw.get_port()
        raw_line = f"[127.0.0.1]:{raw_port} {host_key.export_public_key().decode().strip()}\n"
        print(json.dumps({"port": service.port, "raw_port": raw_port,
                          "known_hosts": service.known_hosts_line() + raw_line}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    raw.close()


# -- measuring (this process) -----------------------------------------------------------------------

async def timed(label: str, count: int, call: Callable[[], Awaitable[object]]) -> list[float]:
    for _ in range(min(20, count)):  # warm up: worker thread started, caches filled
        await call()
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - started)
    return samples


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def show(label: str, samples: list[float], baseline: float | None) -> float:
    median = statistics.median(samples)
    ratio = f"{median / baseline:6.2f}x" if baseline else "  1.00x (baseline)"
    print(f"  {label:<46} median {median * 1e3:7.3f} ms  p99 {p99(samples) * 1e3:7.3f} ms  {ratio}")
    return median


async def measure(count: int, cli_runs: int) -> None:
    from clients import RemoteShell

    with tempfile.TemporaryDirectory(prefix="shellsvc-bench-client-") as tmp:
        workdir = Path(tmp)
        key = asyncssh.generate_private_key("ssh-ed25519")
        (workdir / "bench_key").write_bytes(key.export_private_key())
        (workdir / "bench_key").chmod(0o600)
        (workdir / "authorized_keys").write_bytes(key.export_public_key())
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        server = await asyncio.create_subprocess_exec(sys.executable, __file__, "--serve", str(workdir), env=env,
                                                      stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        try:
            info = json.loads(await asyncio.wait_for(server.stdout.readline(), 60))  # type: ignore[union-attr]
            known = workdir / "known_hosts"
            known.write_text(info["known_hosts"])
            options = dict(username="bench", client_keys=[key], known_hosts=str(known), agent_path=None, config=None)
            async with asyncssh.connect("127.0.0.1", info["raw_port"], **options) as raw_conn, \
                    asyncssh.connect("127.0.0.1", info["port"], **options) as conn:
                echo = await raw_conn.create_process()

                async def echo_round_trip() -> None:
                    echo.stdin.write("1\n")
                    await echo.stdout.readline()

                shell = await RemoteShell.open(conn)

                print(f"eval round trip, {count} sequential requests on one open connection:")
                base = show("raw asyncssh echo (line on an open channel)", await timed("echo", count, echo_round_trip),
                            None)
                sub = show("eval '1' over the shellsvc subsystem",
                           await timed("subsystem", count, lambda: shell.eval("1")), base)
                exe = show("exec request per eval (new channel each)",
                           await timed("exec", max(50, count // 4), lambda: conn.run("1")), base)
                print(f"  -> the subsystem answers {exe / sub:.1f}x faster than an exec channel per eval")
                print("completion latency (complete request, answered while idle):")
                show("complete 'name_19' among 2,000 names", await timed("c1", count, lambda: shell.complete("name_19")),
                     base)
                show("complete 'os.pa' (module attributes)", await timed("c2", count, lambda: shell.complete("os.pa")),
                     base)
                busy = asyncio.ensure_future(shell.eval("import time\nwhile True: time.sleep(0.001)"))
                await asyncio.sleep(0.2)
                show("complete 'name_19' while an eval runs", await timed("c3", count // 2,
                                                                          lambda: shell.complete("name_19")), base)
                await shell.interrupt()
                await busy
                shell.close()
            if cli_runs:
                await cli(info, workdir, cli_runs)
        finally:
            if server.stdin is not None:
                server.stdin.close()
            await asyncio.wait_for(server.wait(), 30)


async def cli(info: dict[str, object], workdir: Path, runs: int) -> None:
    client = Path(sys.executable).with_name("shellsvc-client")
    command = [str(client)] if client.exists() else [sys.executable, "-m", "clients"]
    key, known = str(workdir / "bench_key"), str(workdir / "known_hosts")
    ours = [*command, "-p", str(info["port"]), "-i", key, "--known-hosts", known, "--batch", "bench@127.0.0.1",
            "-c", "1"]
    ssh = shutil.which("ssh")
    theirs = [ssh, "-F", "/dev/null", "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={known}", "-o",
              "IdentitiesOnly=yes", "-o", "IdentityAgent=none", "-i", key, "-p", str(info["port"]),
              "bench@127.0.0.1", "1"] if ssh else None

    def wall(argv: list[str]) -> list[float]:
        samples = []
        for _ in range(runs):
            started = time.perf_counter()
            subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
            samples.append(time.perf_counter() - started)
        return samples

    print(f"whole command, {runs} runs each (process start + connect + auth + run '1'):")
    baseline = None
    if theirs:
        baseline = show("OpenSSH ssh host '1' (exec)", await asyncio.to_thread(wall, theirs), None)
    show("shellsvc-client -c '1' (subsystem)", await asyncio.to_thread(wall, ours), baseline)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=500, help="requests per measurement")
    parser.add_argument("--cli", type=int, default=5, metavar="N", help="runs of the whole command (0: skip)")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve))
    else:
        asyncio.run(measure(args.n, args.cli))


if __name__ == "__main__":
    main()
