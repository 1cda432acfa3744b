"""The execution engine: namespaces, REPL semantics, routing, interrupts, the app loop."""

from __future__ import annotations

import asyncio
import builtins
import pydoc
import random
import signal
import sys
import threading
import time
import types

import pytest

from shellsvc.engine import Engine, NamespaceRegistry, Scheduler, SessionIO, is_complete
from shellsvc.engine.compiler import compile_cell


class Capture:
    """A session's stdout/stderr as the user would see them."""

    def __init__(self) -> None:
        self.out: list[str] = []
        self.err: list[str] = []
        self.lines: list[str] = []
        self.io = SessionIO(self.out.append, self.err.append, self._readline)

    def _readline(self, prompt: str) -> str:
        if not self.lines:
            raise EOFError
        return self.lines.pop(0)

    @property
    def stdout(self) -> str:
        return "".join(self.out)

    @property
    def stderr(self) -> str:
        return "".join(self.err)


class App:
    """Stands in for the host application: state owned by its event loop."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.refreshed_on: list[threading.Thread] = []
        self.value = 0

    async def refresh(self) -> int:
        assert asyncio.get_running_loop() is self.loop
        self.refreshed_on.append(threading.current_thread())
        await asyncio.sleep(0)
        self.value += 1
        return self.value


@pytest.fixture
async def engine():
    eng = Engine(NamespaceRegistry(lambda user: {"app": App(), "who": user}))
    yield eng
    await eng.aclose()


def open_session(engine: Engine, user: str = "alice") -> tuple:
    cap = Capture()
    return engine.open_session(user, cap.io), cap


async def test_expression_echoes_repr_and_binds_underscore(engine):
    s, cap = open_session(engine)
    assert (await s.run("x = 41")).status == "ok"
    outcome = await s.run("x + 1")
    assert outcome.status == "ok" and outcome.value_repr == "42"
    assert cap.stdout == "42\n"
    await s.run("_ * 2")
    assert cap.stdout == "42\n84\n"
    await s.run("None")
    assert cap.stdout == "42\n84\n"  # like the interpreter: None is not echoed


def test_incomplete_input_asks_for_more():
    assert not is_complete("if x:")
    assert not is_complete("foo(1,")
    assert not is_complete("x = 1 + \\")
    assert is_complete("x = 1")
    assert is_complete("await app.refresh()")
    assert is_complete("1 +")  # a syntax error is complete: it gets reported


async def test_statements_and_multiline_blocks(engine):
    s, cap = open_session(engine)
    await s.run("def double(n):\n    return n * 2\n")
    await s.run("for i in range(3):\n    print(double(i))\n")
    assert cap.stdout == "0\n2\n4\n"


async def test_traceback_shows_user_frames_only(engine):
    s, cap = open_session(engine)
    await s.run("def inner():\n    return 1 / 0\n")
    outcome = await s.run("inner()")
    assert outcome.status == "error" and outcome.exit_code == 1
    text = cap.stderr
    assert "ZeroDivisionError: division by zero" in text
    assert "return 1 / 0" in text  # the user's source line is shown
    assert "shellsvc" not in text.replace("<alice", "")  # no engine frames
    assert text.count('File "') == 2


async def test_syntax_error_reported_and_session_usable(engine):
    s, cap = open_session(engine)
    outcome = await s.run("1 +")
    assert outcome.status == "error"
    assert "SyntaxError" in cap.stderr and "Traceback" not in cap.stderr
    assert (await s.run("2 + 2")).value_repr == "4"


async def test_system_exit_ends_session_not_process(engine):
    s, cap = open_session(engine)
    outcome = await s.run("raise SystemExit(3)")
    assert outcome.status == "exit" and outcome.exit_code == 3
    assert s.closed
    s2, _ = open_session(engine)
    assert (await s2.run("exit()")).exit_code == 0
    assert not sys.stdin.closed  # exit() closes the session's stdin, not the process's


async def test_user_code_runs_off_the_loop_and_await_runs_on_it(engine):
    s, cap = open_session(engine)
    loop_thread = threading.current_thread()
    await s.run("import threading; t = threading.current_thread()")
    assert s.namespace["t"] is not loop_thread
    outcome = await s.run("await app.refresh()")
    assert outcome.value_repr == "1"
    app = s.namespace["app"]
    assert app.value == 1 and app.refreshed_on == [loop_thread]
    await s.run("async def twice():\n    return [await app.refresh(), await app.refresh()]\n")
    assert (await s.run("await twice()")).value_repr == "[2, 3]"


async def test_async_for_and_async_with_at_top_level(engine):
    s, cap = open_session(engine)
    code = (
        "import asyncio, contextlib\n"
        "async def agen():\n    for i in range(3):\n        await asyncio.sleep(0)\n        yield i\n"
        "@contextlib.asynccontextmanager\nasync def cm():\n    yield 'entered'\n"
    )
    await s.run(code)
    await s.run("async for v in agen():\n    print(v)\n")
    await s.run("async with cm() as c:\n    print(c)\n")
    assert (await s.run("[v async for v in agen()]")).value_repr == "[0, 1, 2]"
    assert cap.stdout == "0\n1\n2\nentered\n[0, 1, 2]\n"


async def test_namespaces_per_user_shared_by_sessions(engine):
    a1, _ = open_session(engine, "alice")
    a2, cap2 = open_session(engine, "alice")
    b, capb = open_session(engine, "bob")
    await a1.run("secret = 'alice-only'")
    assert (await a2.run("secret")).value_repr == "'alice-only'"
    assert (await b.run("secret")).status == "error"
    assert "NameError" in capb.stderr
    assert (await b.run("who")).value_repr == "'bob'"
    await a1.close()
    await a2.close()
    a3, _ = open_session(engine, "alice")  # a reconnect finds the namespace again
    assert (await a3.run("secret")).value_repr == "'alice-only'"


async def test_two_users_interleaving_random_set_get_without_leaks(engine):
    """1000 random set/get operations, two users' sessions running at the same time.

    Each user has two sessions (sharing that user's namespace); every get must see
    exactly what that user set last, never the other user's value.
    """
    rng = random.Random(1234)
    users = {"alice": {}, "bob": {}}
    sessions = {u: [open_session(engine, u)[0] for _ in range(2)] for u in users}
    ops = [(rng.choice(list(users)), f"k{rng.randrange(20)}", rng.random() < 0.5, rng.randrange(10**6))
           for _ in range(1000)]
    mismatches: list[tuple] = []

    async def play(user: str) -> None:
        model = users[user]
        for who, key, is_set, value in ops:
            if who != user:
                continue
            session = rng.choice(sessions[user])
            if is_set:
                model[key] = value
                assert (await session.run(f"{key} = {value}")).ok
            else:
                outcome = await session.run(key)
                got = int(outcome.value_repr) if outcome.ok else None
                if got != model.get(key):
                    mismatches.append((user, key, got, model.get(key)))

    await asyncio.gather(play("alice"), play("bob"))
    assert mismatches == []
    for user, model in users.items():
        other = next(u for u in users if u != user)
        space = engine.namespaces.get(other)
        leaked = {k for k in model if k not in users[other] and k in space}
        assert leaked == set()
        assert all(space[k] == v for k, v in users[other].items())


async def test_concurrent_prints_go_to_their_own_session(engine):
    s1, cap1 = open_session(engine, "alice")
    s2, cap2 = open_session(engine, "bob")
    code = "for i in range(2000):\n    print('{0}', i)\n"
    await asyncio.gather(s1.run(code.format("alice")), s2.run(code.format("bob")))
    assert cap1.stdout.count("alice") == 2000 and "bob" not in cap1.stdout
    assert cap2.stdout.count("bob") == 2000 and "alice" not in cap2.stdout


async def test_threads_and_tasks_started_by_session_print_to_it(engine, capsys):
    s, cap = open_session(engine)
    await s.run(
        "import threading, asyncio\n"
        "t = threading.Thread(target=lambda: print('from my thread')); t.start(); t.join()\n"
        "async def job():\n    await asyncio.sleep(0.01)\n    print('from my task')\n"
        "async def start():\n    return asyncio.ensure_future(job())\n"
        "task = await start()\n"
        "await task\n"
    )
    # The app's own thread, printing at the same time, keeps its stream.
    app_thread = threading.Thread(target=lambda: print("from the app"))
    app_thread.start()
    app_thread.join()
    assert "from my thread\n" in cap.stdout and "from my task\n" in cap.stdout
    assert "from the app" not in cap.stdout
    assert "from the app" in capsys.readouterr().out


async def test_input_reads_from_the_session(engine):
    s, cap = open_session(engine)
    cap.lines = ["bob\n"]
    assert (await s.run("name = input('who? ')")).ok
    assert s.namespace["name"] == "bob" and cap.stdout == "who? "
    outcome = await s.run("input()")
    assert outcome.status == "error" and "EOFError" in cap.stderr


async def test_help_output_goes_to_the_session(engine):
    s, cap = open_session(engine)
    assert (await s.run("help(len)")).ok
    assert "Return the number of items in a container" in cap.stdout


async def _until(predicate, timeout: float = 10, what: str = "condition") -> None:
    """Poll ``predicate`` until true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.005)


def _command_started(session) -> bool:
    """The session's worker thread has picked the command up and is running it."""
    worker = session._worker  # noqa: SLF001 - when the worker starts is only visible inside
    return session.busy and worker is not None and worker.control.running


async def _interrupt_after_start(session, code: str, ready=None) -> tuple:
    task = asyncio.create_task(session.run(code))
    await _until(lambda: _command_started(session) and (ready is None or ready()), what="the command to start")
    await asyncio.sleep(0.05)  # let it get into its loop/wait; an earlier interrupt must work too
    started = time.perf_counter()
    assert session.interrupt()
    outcome = await task
    return outcome, time.perf_counter() - started


@pytest.mark.parametrize(
    "code",
    [
        "while True: pass",
        "import time\nwhile True: time.sleep(0.5)",
        "import time; time.sleep(3600)",
        "import asyncio; await asyncio.sleep(3600)",
        "try:\n    while True: pass\nexcept Exception:\n    pass",
    ],
    ids=["busy-loop", "sleep-loop", "long-sleep", "await", "catch-Exception"],
)
async def test_interrupt_stops_command_and_session_stays_usable(engine, code):
    s, cap = open_session(engine)
    outcome, elapsed = await _interrupt_after_start(s, code)
    assert outcome.status == "interrupted"
    assert elapsed < 1.0
    assert "KeyboardInterrupt" in cap.stderr
    assert (await s.run("40 + 2")).value_repr == "42"


async def test_interrupt_cancels_the_awaited_task_on_the_app_loop(engine):
    s, cap = open_session(engine)
    await s.run("import asyncio\nstate = []\n"
                "async def job():\n    state.append('started')\n    try:\n        await asyncio.sleep(3600)\n"
                "    except asyncio.CancelledError:\n        state.append('cancelled')\n        raise\n")
    outcome, _ = await _interrupt_after_start(s, "await job()", ready=lambda: "started" in s.namespace["state"])
    assert outcome.status == "interrupted"
    assert s.namespace["state"] == ["started", "cancelled"]


async def test_timeout(engine):
    s, cap = open_session(engine)
    outcome = await s.run("while True: pass", timeout=0.2)
    assert outcome.status == "timeout" and outcome.exit_code == 1
    assert "timed out" in cap.stderr
    assert (await s.run("1")).value_repr == "1"


async def test_interrupt_of_a_command_waiting_for_an_engine_slot_stops_it_before_it_runs():
    engine = Engine(NamespaceRegistry(), max_running=1)
    try:
        holder, _ = open_session(engine, "ann")
        waiter, cap = open_session(engine, "bob")
        holding = asyncio.create_task(holder.run("while True: pass"))
        await _until(lambda: _command_started(holder), what="ann's command to take the only slot")
        waiting = asyncio.create_task(waiter.run("ran = True"))
        await _until(lambda: waiter.busy, what="bob's command to queue for a slot")
        assert waiter.interrupt()  # Ctrl-C while queued: not lost
        assert holder.interrupt()
        assert (await holding).status == "interrupted"
        outcome = await waiting
        assert outcome.status == "interrupted" and "KeyboardInterrupt" in cap.stderr
        assert "ran" not in waiter.namespace
        assert (await waiter.run("40 + 2")).value_repr == "42"
    finally:
        await engine.aclose()


async def test_interrupt_when_idle_is_a_no_op(engine):
    s, _ = open_session(engine)
    assert s.interrupt() is False
    await s.run("x = 1")
    assert s.interrupt() is False
    assert (await s.run("x")).value_repr == "1"


async def test_engine_never_touches_signal_handlers(engine, monkeypatch):
    """The app's own SIGINT handler stays installed and is never called; nothing is registered."""
    calls: list[str] = []
    app_handler_calls: list[int] = []

    def app_handler(signum, frame):
        app_handler_calls.append(signum)

    previous = signal.signal(signal.SIGINT, app_handler)
    try:
        real_signal = signal.signal
        monkeypatch.setattr(signal, "signal", lambda *a: calls.append(f"signal{a}") or real_signal(*a))
        loop = asyncio.get_running_loop()
        monkeypatch.setattr(loop, "add_signal_handler", lambda *a: calls.append(f"add_signal_handler{a}"))
        monkeypatch.setattr(signal, "set_wakeup_fd", lambda *a, **k: calls.append("set_wakeup_fd"))
        s, _ = open_session(engine)
        await _interrupt_after_start(s, "while True: pass")
        await _interrupt_after_start(s, "import time; time.sleep(60)")
        assert (await s.run("while True: pass", timeout=0.2)).status == "timeout"
        assert (await s.run("1 + 1")).value_repr == "2"
        assert signal.getsignal(signal.SIGINT) is app_handler
        assert calls == [] and app_handler_calls == []
    finally:
        signal.signal(signal.SIGINT, previous)


class Ticker:
    """A task of the app counting its loop's ticks."""

    def __init__(self, interval: float) -> None:
        self.ticks = 0
        self.interval = interval
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.ticks += 1


@pytest.mark.parametrize("busy", [1, 4])
async def test_app_ticker_keeps_ticking_during_cpu_bound_command(engine, busy):
    ticker = Ticker(0.01)
    sessions = [open_session(engine, f"user{i}")[0] for i in range(busy)]
    code = "import time\nend = time.perf_counter() + 0.6\nwhile time.perf_counter() < end: pass"
    runs = [asyncio.create_task(s.run(code)) for s in sessions]
    start_ticks = ticker.ticks
    outcomes = await asyncio.gather(*runs)
    ticker.task.cancel()
    assert all(o.ok for o in outcomes)
    # >= 0.6 s of CPU-bound work: the loop ticked throughout (10 ms ticks; generous floor
    # because a loaded 2-core machine stretches each tick).
    assert ticker.ticks - start_ticks >= 10


async def test_closing_session_interrupts_running_command(engine):
    s, cap = open_session(engine)
    run = asyncio.create_task(s.run("while True: pass"))
    await _until(lambda: _command_started(s), what="the command to start")
    await s.close()
    outcome = await asyncio.wait_for(run, 5)
    assert outcome.status == "interrupted"
    assert s not in engine.sessions()


# -- routing: pools, help(), the app's own output ----------------------------------------------
async def test_pool_work_from_session_prints_to_it_and_pool_threads_stay_the_apps(engine, capsys):
    """run_in_executor from session code prints to the session; the pool's threads, created
    during that session, still print the app's later work to the app's stdout."""
    s, cap = open_session(engine)
    out = await s.run("import asyncio\nasync def offload():\n"
                      "    await asyncio.get_running_loop().run_in_executor(None, print, 'from session pool work')\n"
                      "await offload()")
    assert out.ok, cap.stderr
    await asyncio.get_running_loop().run_in_executor(None, print, "from the app's pool work")
    assert "from session pool work\n" in cap.stdout
    assert "app's pool work" not in cap.stdout
    assert "from the app's pool work" in capsys.readouterr().out


async def test_app_thread_printing_during_session_keeps_its_stream(engine, capsys):
    stop = threading.Event()

    def app_thread() -> None:
        while not stop.is_set():
            print("app line")
            time.sleep(0.005)

    thread = threading.Thread(target=app_thread)
    thread.start()
    try:
        s, cap = open_session(engine)
        await s.run("for i in range(200):\n    print('session line')\n    __import__('time').sleep(0.001)\n")
    finally:
        stop.set()
        thread.join()
    assert cap.stdout == "session line\n" * 200
    app_out = capsys.readouterr().out
    assert "app line" in app_out and "session line" not in app_out


async def test_interactive_help_reads_and_writes_the_session(engine, capsys):
    s, cap = open_session(engine)
    cap.lines = ["len\n", "q\n"]
    assert (await s.run("help()")).ok, cap.stderr
    assert "Return the number of items in a container" in cap.stdout
    assert "help> " in cap.stdout
    assert "Return the number" not in capsys.readouterr().out


async def test_help_never_uses_the_apps_terminal_pager(engine, monkeypatch):
    """pydoc caches a pager (``less``) chosen for the app's terminal; sessions must not get it."""
    used: list[str] = []
    monkeypatch.setattr(pydoc, "getpager", lambda: lambda text: used.append(text))
    s, cap = open_session(engine)
    assert (await s.run("help(len)")).ok
    assert "Return the number of items" in cap.stdout and used == []
    pydoc.pager("app text")  # the app itself still gets pydoc's choice
    assert used == ["app text"]


# -- SystemExit / KeyboardInterrupt raised on the app loop ------------------------------------
@pytest.mark.parametrize("exc, status", [("SystemExit(4)", "exit"), ("KeyboardInterrupt", "interrupted")])
async def test_exit_raised_inside_awaited_coroutine_ends_only_the_session(engine, exc, status):
    """asyncio re-raises SystemExit/KeyboardInterrupt out of the loop: the bridge must not."""
    ticker = Ticker(0.005)
    try:
        s, cap = open_session(engine)
        await s.run(f"async def leave():\n    raise {exc}\n")
        outcome = await s.run("await leave()")
        assert outcome.status == status
        before = ticker.ticks
        await _until(lambda: ticker.ticks > before or ticker.task.done(), what="the app's ticker to tick")
        assert ticker.ticks > before and not ticker.task.done()  # the app's loop is alive and well
    finally:
        ticker.task.cancel()


# -- interrupts of code blocked in C ----------------------------------------------------------
async def test_interrupt_of_command_blocked_in_c_frees_the_session(engine):
    s, cap = open_session(engine)
    await s.run("import threading; gate = threading.Event()")
    try:
        outcome, elapsed = await _interrupt_after_start(s, "gate.wait()")
        assert outcome.status == "interrupted" and elapsed < 5
        assert "blocked in C code" in cap.stderr
        assert (await s.run("6 * 7")).value_repr == "42"  # a fresh worker thread
    finally:
        s.namespace["gate"].set()  # let the abandoned thread finish


async def test_timeout_of_command_blocked_in_c(engine):
    s, cap = open_session(engine)
    await s.run("import threading; gate = threading.Event()")
    try:
        outcome = await s.run("gate.wait()", timeout=0.2)
        assert outcome.status == "timeout" and "timed out" in cap.stderr
        assert (await s.run("6 * 7")).value_repr == "42"
    finally:
        s.namespace["gate"].set()


# -- the scheduler ---------------------------------------------------------------------------
def _drop(text: str) -> None:
    pass


@pytest.fixture
async def fair_engine():
    scheduler = Scheduler(slots=1, quantum=0.01, grace=0.05)
    eng = Engine(NamespaceRegistry(), scheduler=scheduler)
    yield eng
    await eng.aclose()


async def test_scheduler_rotates_cpu_bound_sessions_so_all_progress(fair_engine):
    sessions = [fair_engine.open_session(f"u{i}", SessionIO(_drop, _drop)) for i in range(3)]
    runs = [asyncio.create_task(s.run("n = 0\nwhile True:\n    n += 1\n")) for s in sessions]
    deadline = time.monotonic() + 10  # wait-until: a loaded machine slows every hand-off
    while time.monotonic() < deadline and not (all(s.namespace.get("n", 0) > 0 for s in sessions)
                                               and fair_engine.scheduler.stats().rotations >= 3):
        await asyncio.sleep(0.05)
    progress = [s.namespace.get("n", 0) for s in sessions]
    stats = fair_engine.scheduler.stats()
    for s in sessions:
        s.interrupt()
    outcomes = await asyncio.gather(*runs)
    assert all(o.status == "interrupted" for o in outcomes)
    assert all(n > 0 for n in progress), progress  # nobody starved
    assert stats.rotations >= 3 and stats.running == 1


async def test_scheduler_interrupts_a_command_waiting_for_its_turn(fair_engine):
    busy = fair_engine.open_session("busy", SessionIO(_drop, _drop))
    spin = asyncio.create_task(busy.run("while True: pass"))
    waiting = fair_engine.open_session("waiting", SessionIO(_drop, _drop))
    outcome, elapsed = await _interrupt_after_start(waiting, "while True: pass")
    assert outcome.status == "interrupted" and elapsed < 1.0
    busy.interrupt()
    assert (await spin).status == "interrupted"


async def test_blocking_waits_lend_the_slot(fair_engine):
    """A sleeping or awaiting command does not hold up the others (no eviction needed)."""
    sleeper = fair_engine.open_session("sleeper", SessionIO(_drop, _drop))
    for code in ("import time; time.sleep(1.5)", "import asyncio; await asyncio.sleep(1.5)"):
        sleeper.namespace.pop("waiting", None)
        task = asyncio.create_task(sleeper.run(f"waiting = True\n{code}"))
        # In its sleep: the command started and has handed its slot back.
        await _until(lambda: sleeper.namespace.get("waiting") and fair_engine.scheduler.stats().running == 0,
                     what="the sleeper to lend its slot")
        other = fair_engine.open_session("other", SessionIO(_drop, _drop))
        before = fair_engine.scheduler.stats().evictions
        started = time.perf_counter()
        assert (await other.run("sum(range(1000))")).value_repr == "499500"
        assert time.perf_counter() - started < 1.0 and not task.done()
        assert fair_engine.scheduler.stats().evictions == before
        assert (await task).ok


async def test_command_blocked_in_c_is_evicted_so_others_run(fair_engine):
    blocked = fair_engine.open_session("blocked", SessionIO(_drop, _drop))
    await blocked.run("import threading; gate = threading.Event()")
    task = asyncio.create_task(blocked.run("waiting = True\ngate.wait(3)"))
    await _until(lambda: blocked.namespace.get("waiting"), what="the command to start")
    other = fair_engine.open_session("other", SessionIO(_drop, _drop))
    started = time.perf_counter()
    assert (await other.run("2 + 2")).value_repr == "4"
    assert time.perf_counter() - started < 1.0 and not task.done()
    assert fair_engine.scheduler.stats().evictions >= 1
    blocked.namespace["gate"].set()
    assert (await task).ok


async def test_switch_interval_lowered_only_while_commands_run(fair_engine):
    original = sys.getswitchinterval()
    try:
        s = fair_engine.open_session("u", SessionIO(_drop, _drop))
        during = await s.run("import sys; sys.getswitchinterval()")
        assert float(during.value_repr) == pytest.approx(fair_engine.scheduler.switch_interval)
        assert sys.getswitchinterval() == pytest.approx(original)
        # A value the app sets while a command runs is the app's: left alone afterwards.
        await s.run("sys.setswitchinterval(0.002)")
        assert sys.getswitchinterval() == pytest.approx(0.002)
    finally:
        sys.setswitchinterval(original)


def test_checkpoints_keep_semantics_and_resolve_outside_the_namespace():
    """Compiled checkpoints change no result, keep docstrings, and live in builtins so a
    function typed into a session still runs when its code moves into an app module."""
    from shellsvc.engine.scheduler import CHECKPOINT_NAME, install_checkpoint

    install_checkpoint()
    assert hasattr(builtins, CHECKPOINT_NAME)
    source = (
        "def f(n):\n    'Doc.'\n    total = 0\n    for i in range(n):\n        while i > 2:\n            i -= 2\n"
        "        total += i\n    return total, [j for j in range(n) if j % 2], {k: k for k in 'ab'}\n"
        "def gen():\n    yield from (x * x for x in range(3))\n"
    )
    ns: dict = {}
    exec(compile_cell(source).body, ns)
    plain: dict = {}
    exec(source, plain)
    assert ns["f"](7) == plain["f"](7) and list(ns["gen"]()) == [0, 1, 4]
    assert ns["f"].__doc__ == "Doc."
    moved = types.FunctionType(ns["f"].__code__, {"__builtins__": builtins})  # e.g. hot-swapped
    assert moved(7) == plain["f"](7)


async def test_random_interrupts_under_contention_never_wedge_the_scheduler(fair_engine):
    """Sessions interrupted at random points - running, waiting for their turn, sleeping,
    awaiting, inside checkpoints - always stop, stay usable, and leave no slot taken."""
    codes = [
        "n = 0\nwhile True:\n    n += 1\n",
        "import time\nwhile True: time.sleep(0.01)",
        "sum(i * i for i in range(10**9))",
        "def f(k):\n    return 1 if k < 2 else f(k - 1) + f(k - 2)\nwhile True: f(15)",
        "import asyncio\nawait asyncio.sleep(100)",
    ]
    rng = random.Random(99)
    sessions = [fair_engine.open_session(f"u{i % 2}", SessionIO(_drop, _drop)) for i in range(4)]
    end = time.monotonic() + 3

    async def drive(session) -> int:
        rounds = 0
        while time.monotonic() < end:
            run = asyncio.create_task(session.run(rng.choice(codes)))
            await asyncio.sleep(rng.random() * 0.1)
            session.interrupt()
            assert (await asyncio.wait_for(run, 10)).status == "interrupted"
            assert (await asyncio.wait_for(session.run("1 + 1"), 10)).value_repr == "2"
            rounds += 1
        return rounds

    rounds = await asyncio.gather(*(drive(s) for s in sessions))
    assert all(r > 0 for r in rounds)
    stats = fair_engine.scheduler.stats()
    assert stats.running == 0 and stats.waiting == 0
