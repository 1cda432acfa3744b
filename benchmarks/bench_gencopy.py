"""Benchmark shellsvc.gencopy: per-yield cost of @resumable vs native, copy/pickle cost and size.

Run: ``python benchmarks/bench_gencopy.py``.  Every figure is a ratio against a baseline
measured in the same run (native generator per yield; pickling the same 10 locals as a
plain dict).  Bounded to a few seconds.
"""

from __future__ import annotations

import copy
import pickle
import timeit

from shellsvc.gencopy import resumable

N = 20_000


def ten_locals(n):
    a, b, c, d, e = 1, 2.5, "three", [4, 4], {"five": 5}
    f, g, h = (6,), None, True
    total = 0
    for i in range(n):
        total += i
        x = yield total
        if x is not None:
            a += x


resumable_ten_locals = resumable(ten_locals)


def loop_with_try(n):
    i = 0
    while i < n:
        try:
            received = yield i
        finally:
            i += 1
        if received:
            break


resumable_loop_with_try = resumable(loop_with_try)


def best(stmt, number, repeat=7):
    return min(timeit.repeat(stmt, number=number, repeat=repeat)) / number


def per_yield(factory, how):
    if how == "for":
        return best(lambda: [None for _ in factory(N)], 1) / N

    def drive():
        gen = factory(N)
        nxt = gen.__next__
        for _ in range(N):
            nxt()

    return best(drive, 1) / N


def main() -> None:
    print(f"shellsvc.gencopy benchmark (N={N} yields per run, best of 7)")
    print()
    print(f"{'per-yield cost':40} {'native ns':>10} {'resumable ns':>13} {'ratio':>7}")
    for label, native, twin in (
        ("10 locals, for-loop", ten_locals, resumable_ten_locals),
        ("while + try/finally", loop_with_try, resumable_loop_with_try),
    ):
        for how in ("for", "next"):
            base = per_yield(native, how)
            cost = per_yield(twin, how)
            print(f"{label + ', via ' + how:40} {base * 1e9:10.1f} {cost * 1e9:13.1f} {cost / base:6.2f}x")
    print()
    gen = resumable_ten_locals(100)
    for _ in range(50):
        next(gen)
    state = dict(gen.gi_frame.f_locals)
    plain = {k: v for k, v in state.items() if not k.startswith("_gc_")}
    native_yield = per_yield(ten_locals, "next")
    data = pickle.dumps(gen)
    baseline_pickle = best(lambda: pickle.loads(pickle.dumps(plain)), 2000)
    print(f"{'10-local generator suspended in a loop':40} {'µs':>10} {'x dict baseline':>16} {'x native yields':>16}")
    for label, func in (
        ("copy.copy", lambda: copy.copy(gen)),
        ("copy.deepcopy", lambda: copy.deepcopy(gen)),
        ("pickle.dumps", lambda: pickle.dumps(gen)),
        ("pickle.loads", lambda: pickle.loads(data)),
        ("pickle round trip", lambda: pickle.loads(pickle.dumps(gen))),
    ):
        cost = best(func, 2000)
        print(f"{label:40} {cost * 1e6:10.2f} {cost / baseline_pickle:15.1f}x {cost / native_yield:15.0f}x")
    plain_size = len(pickle.dumps(plain))
    print()
    print(f"pickle size: {len(data)} bytes (the same 10 locals as a plain dict: {plain_size} bytes, "
          f"{len(data) / plain_size:.2f}x); baseline dict round trip {baseline_pickle * 1e6:.2f} µs")


if __name__ == "__main__":
    main()
