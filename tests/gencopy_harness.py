"""Differential harness for shellsvc.gencopy: run native and resumable generators side by side.

An *outcome* is what a user observes from one operation: ``("yield", value, events)``,
``("return", value, events)`` or ``("raise", type_name, message, events)``.  The same
module runs in a fresh subprocess (:func:`subprocess_main`) to check pickles there.
"""

from __future__ import annotations

import builtins
import inspect
import pickle
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import gencopy_cases
from gencopy_cases import CASES_BY_NAME, EVENTS, NEXT, Case

Outcome = tuple[Any, ...]


def drive(awaitable: Any) -> Any:
    """Run an awaitable that only awaits ``asyncio.sleep(0)`` (no event loop needed)."""
    while True:
        try:
            awaitable.send(None)
        except StopIteration as stop:
            return stop.value


def exception(name: str, message: str) -> BaseException:
    kind = getattr(builtins, name, None) or getattr(gencopy_cases, name)
    return kind(message)


def apply(gen: Any, op: tuple[Any, ...], is_async: bool) -> Outcome:
    EVENTS.clear()
    try:
        kind = op[0]
        if kind == "next":
            value = drive(gen.__anext__()) if is_async else next(gen)
        elif kind == "send":
            value = drive(gen.asend(op[1])) if is_async else gen.send(op[1])
        elif kind == "throw":
            exc = exception(op[1], op[2])
            value = drive(gen.athrow(exc)) if is_async else gen.throw(exc)
        elif kind == "close":
            value = drive(gen.aclose()) if is_async else gen.close()
            return ("closed", value, tuple(EVENTS))
        else:
            raise AssertionError(f"unknown op {op!r}")
        return ("yield", value, tuple(EVENTS))
    except StopIteration as stop:
        return ("return", stop.value, tuple(EVENTS))
    except StopAsyncIteration:
        return ("return", None, tuple(EVENTS))
    except BaseException as exc:  # noqa: BLE001 - the outcome under test
        return ("raise", type(exc).__name__, str(exc), tuple(EVENTS))
    finally:
        EVENTS.clear()


def introspect(gen: Any, is_async: bool) -> tuple[Any, ...]:
    """What ``gi_*``/``ag_*`` introspection shows a user about a suspended generator."""
    from shellsvc.gencopy import generator_state

    if is_async:
        frame, delegate, code = gen.ag_frame, gen.ag_await, gen.ag_code
    else:
        frame, delegate, code = gen.gi_frame, gen.gi_yieldfrom, gen.gi_code
    state = generator_state(gen) if is_async else inspect.getgeneratorstate(gen)
    if delegate is None or is_async:
        delegation = delegate is not None
    elif isinstance(delegate, types.GeneratorType):
        delegation = ("generator", delegate.gi_code.co_name, delegate.gi_frame.f_lineno if delegate.gi_frame else None)
    else:
        delegation = "iterator"
    return (
        state,
        frame.f_lineno if frame is not None else None,
        delegation,
        code.co_name,
        gen.__name__,
        gen.__qualname__,
    )


def run(gen: Any, ops: list[tuple[Any, ...]], is_async: bool) -> list[Outcome]:
    return [apply(gen, op, is_async) for op in ops]


def native_callable(case: Case) -> Any:
    func = case.func
    if isinstance(func, types.MethodType):
        return types.MethodType(func.__func__.__wrapped__, func.__self__)
    return func.__wrapped__


def fresh(case: Case, native: bool = False) -> Any:
    return (native_callable(case) if native else case.func)(*case.args)


def ops_for(case: Case) -> list[tuple[Any, ...]]:
    """The case's operations; by default ``next`` until the generator finishes, plus one."""
    if case.ops is not None:
        return list(case.ops)
    gen = fresh(case, native=True)
    ops: list[tuple[Any, ...]] = []
    for _ in range(500):
        ops.append(NEXT)
        if apply(gen, NEXT, case.is_async)[0] != "yield":
            return ops + [NEXT]
    raise AssertionError(f"case {case.name} does not finish")


def subprocess_main(path_in: str, path_out: str) -> None:
    """Unpickle each ``(case, cut, data)`` of ``path_in`` and record its continuation."""
    jobs = pickle.loads(Path(path_in).read_bytes())
    results = {}
    for name, cut, data in jobs:
        case = CASES_BY_NAME[name]
        try:
            gen = pickle.loads(data)
            results[(name, cut)] = run(gen, ops_for(case)[cut:], case.is_async)
        except Exception as exc:  # noqa: BLE001 - reported to the parent as a failure
            results[(name, cut)] = f"load failed: {type(exc).__name__}: {exc}"
    Path(path_out).write_bytes(pickle.dumps(results))


def run_in_subprocess(jobs: list[tuple[str, int, bytes]], workdir: Path) -> dict[tuple[str, int], Any]:
    """Run :func:`subprocess_main` in a fresh interpreter (one process for all jobs)."""
    path_in, path_out = workdir / "jobs.pickle", workdir / "results.pickle"
    path_in.write_bytes(pickle.dumps(jobs))
    here = Path(__file__).resolve().parent
    code = f"import sys; sys.path.insert(0, {str(here)!r}); import gencopy_harness as h; h.subprocess_main({str(path_in)!r}, {str(path_out)!r})"
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=workdir)
    if completed.returncode != 0:
        raise AssertionError(f"subprocess failed ({completed.returncode}):\n{completed.stderr}")
    return pickle.loads(path_out.read_bytes())
