"""The execution engine: namespaces, REPL semantics, routing, interrupts, the app loop."""

from __future__ import annotations

import asyncio
import random
import signal
import sys
import threading
import time

import pytest

from shellsvc.engine import Engine, NamespaceRegistry, SessionIO, is_complete


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
    rng = random.Random(1234)
    users = {"alice": {}, "bob": {}}
    sessions = {u: open_session(engine, u)[0] for u in users}
    mismatches = 0
    for _ in range(1000):
        user = rng.choice(list(users))
        key = f"k{rng.randrange(20)}"
        if rng.random() < 0.5:
            value = rng.randrange(10**6)
            users[user][key] = value
            assert (await sessions[user].run(f"{key} = {value}")).ok
        else:
            outcome = await sessions[user].run(f"{key}")
            expected = users[user].get(key)
            got = int(outcome.value_repr) if outcome.ok else None
            mismatches += got != expected
    assert mismatches == 0
    for user, model in users.items():
        other = next(u for u in users if u != user)
        leaked = {k for k in model if k not in users[other] and k in engine.namespaces.get(other)}
        assert leaked == set()


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


async def _interrupt_after_start(session, code: str) -> tuple:
    task = asyncio.create_task(session.run(code))
    deadline = time.monotonic() + 5
    while not session.busy and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.05)
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
                "async def job():\n    try:\n        await asyncio.sleep(3600)\n"
                "    except asyncio.CancelledError:\n        state.append('cancelled')\n        raise\n")
    outcome, _ = await _interrupt_after_start(s, "await job()")
    assert outcome.status == "interrupted"
    assert s.namespace["state"] == ["cancelled"]


async def test_timeout(engine):
    s, cap = open_session(engine)
    outcome = await s.run("while True: pass", timeout=0.2)
    assert outcome.status == "timeout" and outcome.exit_code == 1
    assert "timed out" in cap.stderr
    assert (await s.run("1")).value_repr == "1"


async def test_interrupt_when_idle_is_a_no_op(engine):
    s, _ = open_session(engine)
    assert s.interrupt() is False
    await s.run("x = 1")
    assert s.interrupt() is False
    assert (await s.run("x")).value_repr == "1"


async def test_engine_never_touches_signal_handlers(engine):
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    s, _ = open_session(engine)
    await _interrupt_after_start(s, "while True: pass")
    after = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    assert before == after


async def test_app_ticker_keeps_ticking_during_cpu_bound_command(engine):
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    s, _ = open_session(engine)
    run = asyncio.create_task(s.run("import time\nend = time.perf_counter() + 0.6\nwhile time.perf_counter() < end: pass"))
    start_ticks = ticks
    outcome = await run
    task.cancel()
    assert outcome.ok
    # 0.6 s of CPU-bound work: the loop ticked throughout (10 ms ticks; generous floor
    # because a loaded 2-core machine stretches each tick).
    assert ticks - start_ticks >= 10


async def test_closing_session_interrupts_running_command(engine):
    s, cap = open_session(engine)
    run = asyncio.create_task(s.run("while True: pass"))
    while not s.busy:
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.05)
    await s.close()
    outcome = await asyncio.wait_for(run, 5)
    assert outcome.status == "interrupted"
    assert s not in engine.sessions()
