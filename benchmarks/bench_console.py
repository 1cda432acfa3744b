"""Console overhead per line, as ratios against shlex.split of the same lines (measured in this run).

    python benchmarks/bench_console.py
"""

from __future__ import annotations

import asyncio
import shlex
import time

from shellsvc.console import CommandContext, Console, ConsoleRejection, builtin_registry

LINES = ["status", "plugins list", "help plugins reload", "stauts", "__import__('os').system('id')",
         "status; id", "plugins reload nosuch", "help"]
ROUNDS = 2000


def best_of(function, repeat: int = 5) -> float:
    timings = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        timings.append(time.perf_counter() - start)
    return min(timings)


def main() -> None:
    records: list[dict] = []
    console = Console(builtin_registry(), CommandContext(user="bench", role="operator", audit=records.append))

    def baseline() -> None:
        for _ in range(ROUNDS):
            for line in LINES:
                try:
                    shlex.split(line)
                except ValueError:
                    pass

    def parse() -> None:
        for _ in range(ROUNDS):
            for line in LINES:
                try:
                    console.parse(line)
                except ConsoleRejection:
                    pass

    async def execute_all() -> None:
        for _ in range(ROUNDS // 10):
            for line in LINES:
                await console.execute(line)

    def execute() -> None:
        asyncio.run(execute_all())

    n = ROUNDS * len(LINES)
    base = best_of(baseline)
    parsed = best_of(parse)
    executed = best_of(execute, repeat=3) * 10  # scaled to the same number of lines
    print(f"lines per run: {n}")
    print(f"shlex.split (baseline): {base / n * 1e6:8.2f} us/line  1.00x")
    print(f"Console.parse:          {parsed / n * 1e6:8.2f} us/line  {parsed / base:5.2f}x")
    print(f"Console.execute:        {executed / n * 1e6:8.2f} us/line  {executed / base:5.2f}x  "
          "(check, split, resolve, convert, audit, run the built-in)")


if __name__ == "__main__":
    main()
