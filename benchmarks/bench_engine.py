"""Engine benchmarks: eval throughput vs bare ``exec``, and app-loop lag under CPU-bound sessions.

Run: ``python benchmarks/bench_engine.py`` (about a minute). Figures are ratios against
baselines measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time

from shellsvc.engine import Engine, NamespaceRegistry, SessionIO

STATEMENTS = ["x = 41", "y = x + 1", "z = [i * i for i in range(10)]", "w = sum(z) + y"]


def bare_exec_rate(n: int) -> float:
    """Statements per second with plain ``exec`` of pre-compiled… no: of source text, like a REPL."""
    ns: dict = {}
    start = time.perf_counter()
    for i in range(n):
        exec(STATEMENTS[i % len(STATEMENTS)], ns)
    return n / (time.perf_counter() - start)


async def engine_rate(n: int) -> float:
    engine = Engine(NamespaceRegistry())
    session = engine.open_session("bench", SessionIO(lambda s: None, lambda s: None))
    await session.run("pass")  # start the worker
    start = time.perf_counter()
    for i in range(n):
        await session.run(STATEMENTS[i % len(STATEMENTS)])
    rate = n / (time.perf_counter() - start)
    await engine.aclose()
    return rate


async def measure_lag(duration: float, interval: float = 0.001) -> list[float]:
    """Lateness (ms) of a 1 ms periodic timer on the app loop."""
    lags: list[float] = []
    loop = asyncio.get_running_loop()
    end = loop.time() + duration
    while loop.time() < end:
        before = time.perf_counter()
        await asyncio.sleep(interval)
        lags.append((time.perf_counter() - before - interval) * 1000)
    return lags


async def lag_under_sessions(n_sessions: int, duration: float, max_running: int | None) -> tuple[float, float, int]:
    engine = Engine(NamespaceRegistry(), max_running=max_running)
    sessions = [engine.open_session(f"u{i}", SessionIO(lambda s: None, lambda s: None)) for i in range(n_sessions)]
    runs = [asyncio.create_task(s.run("while True: pass")) for s in sessions]
    await asyncio.sleep(0.2)  # let every worker that may run get going
    lags = await measure_lag(duration)
    for run in runs:
        for s in sessions:
            s.interrupt()
        await run
    await engine.aclose()
    lags.sort()
    p50 = lags[len(lags) // 2]
    p99 = lags[int(len(lags) * 0.99)]
    return p50, p99, len(lags)


def pct(lags: list[float], q: float) -> float:
    lags = sorted(lags)
    return lags[min(len(lags) - 1, int(len(lags) * q))]


async def main(args: argparse.Namespace) -> None:
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval / 1000)
    print(f"Python {sys.version.split()[0]}; sys.getswitchinterval() = {sys.getswitchinterval() * 1000:.2f} ms; "
          f"Engine(max_running={args.max_running})")
    n = args.evals
    bare = bare_exec_rate(n * 10)
    eng = await engine_rate(n)
    print("\nEval throughput (same statements, source text each time)")
    print(f"  bare exec() in-process          {bare:12,.0f} stmt/s   1.00x")
    print(f"  engine session.run()            {eng:12,.0f} stmt/s   {eng / bare:.4f}x  "
          f"({1e6 / eng:.0f} us per command, incl. loop<->worker hand-off)")

    idle = await measure_lag(args.seconds)
    print(f"\nApp loop lag, 1 ms timer, {args.seconds:.0f} s per row (ms)")
    print(f"  {'sessions busy':<16}{'p50':>8}{'p99':>8}{'samples':>9}   p99 vs idle")
    idle_p99 = pct(idle, 0.99)
    print(f"  {'0 (baseline)':<16}{pct(idle, 0.5):8.2f}{idle_p99:8.2f}{len(idle):9d}   1.00x")
    for count in (1, 4, 16):
        p50, p99, samples = await lag_under_sessions(count, args.seconds, args.max_running)
        print(f"  {count:<16}{p50:8.2f}{p99:8.2f}{samples:9d}   {p99 / max(idle_p99, 1e-3):.1f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--evals", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--max-running", type=int, default=None, help="Engine(max_running=...)")
    parser.add_argument("--switch-interval", type=float, default=0.0, help="ms; 0 keeps the interpreter default")
    asyncio.run(main(parser.parse_args()))
