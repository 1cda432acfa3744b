"""The local REPL, driven through a real pty like a user at a terminal."""

from __future__ import annotations

import getpass
import os
import re
import sys
import textwrap
import time

import pexpect
import pytest

from prompt_toolkit.document import Document
from prompt_toolkit.completion import CompleteEvent

from shellsvc.repl import NamespaceCompleter
from shellsvc.repl.keys import needs_continuation

PROMPT = ">>> "
# prompt_toolkit switches bracketed paste off when a prompt accepts its input and on
# when the next prompt starts: what a user sees as "the command ran, a new prompt".
ACCEPTED, READY = "\x1b[?2004l", "\x1b[?2004h"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\r")


@pytest.fixture
def repl(tmp_path):
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state"), TERM="xterm", PYTHONUNBUFFERED="1",
               PROMPT_TOOLKIT_NO_CPR="1")  # pexpect is no terminal: it never answers a CPR
    with open(tmp_path / "pty.log", "w") as log:
        child = pexpect.spawn(
            sys.executable, ["-m", "shellsvc", "repl", "--history", str(tmp_path / "history")],
            env=env, encoding="utf-8", timeout=15, dimensions=(40, 120), logfile=log,
        )
        try:
            child.expect_exact(PROMPT)
            yield child
            if child.isalive():
                child.sendcontrol("d")
                child.expect(pexpect.EOF, timeout=10)
        finally:
            child.close(force=True)


def run(child: pexpect.spawn, line: str) -> str:
    """Type ``line``, press Enter, return the screen text printed before the next prompt."""
    child.send(line + "\r")
    child.expect_exact(ACCEPTED)
    child.expect_exact(READY)
    return ANSI.sub("", child.before)


def test_local_repl_evaluates_in_a_real_pty(repl, tmp_path):
    run(repl, "x = 41")
    assert "42" in run(repl, "x + 1")
    # The app's ticker keeps running while the REPL waits for input.
    first = int(run(repl, "app.ticks").strip().splitlines()[-1])
    run(repl, "import time; time.sleep(1.2)")
    later = int(run(repl, "app.ticks").strip().splitlines()[-1])
    assert later >= first + 2
    # Top-level await runs on the app's loop.
    assert re.search(r"\b\d+\b", run(repl, "await app.refresh()"))
    repl.sendcontrol("d")
    repl.expect(pexpect.EOF)
    history = (tmp_path / "history").read_text()
    assert "x + 1" in history
    assert oct((tmp_path / "history").stat().st_mode & 0o777) == "0o600"


def test_ctrl_c_interrupts_running_code_and_clears_the_line(repl):
    repl.send("while True: pass\r")
    repl.expect_exact(ACCEPTED)
    repl.sendcontrol("c")
    repl.expect_exact("KeyboardInterrupt")
    repl.expect_exact(READY)
    repl.send("half typed")
    repl.expect_exact("typed")
    repl.sendcontrol("c")  # at the prompt: discards the line
    repl.expect_exact(READY)
    assert "7" in run(repl, "3 + 4")


def test_multiline_block_and_input(repl):
    repl.send("def f(n):\r")
    repl.expect_exact("... ")
    run(repl, "return n * 2\r")
    assert "42" in run(repl, "f(21)")
    repl.send("name = input('who? ')\r")
    repl.expect_exact(ACCEPTED)
    repl.expect_exact(READY)  # the input() prompt
    repl.expect_exact("who?")
    repl.send("bob\r")
    repl.expect_exact(READY)
    assert "'bob'" in run(repl, "name")


def test_exit_ends_the_repl(repl):
    repl.send("exit()\r")
    repl.expect(pexpect.EOF)
    repl.close()
    assert repl.exitstatus == 0


def test_ctrl_d_exits_and_history_defaults_to_a_private_per_user_file(tmp_path):
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state"), TERM="xterm", PROMPT_TOOLKIT_NO_CPR="1")
    child = pexpect.spawn(sys.executable, ["-m", "shellsvc", "repl"], env=env, encoding="utf-8", timeout=15,
                          dimensions=(40, 120))
    try:
        child.expect_exact(PROMPT)
        assert "42" in run(child, "6 * 7")
        child.sendcontrol("d")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    history = tmp_path / "state" / "shellsvc" / f"history-{getpass.getuser()}"
    assert "6 * 7" in history.read_text()
    assert history.stat().st_mode & 0o777 == 0o600


def test_app_keeps_running_while_the_repl_waits(repl):
    first = int(run(repl, "app.ticks").strip().splitlines()[-1])
    time.sleep(1.5)  # nobody types: the app's ticker (every 0.5 s) must keep going
    later = int(run(repl, "app.ticks").strip().splitlines()[-1])
    assert later >= first + 2


def test_tracebacks_show_only_the_users_frames(repl):
    run(repl, "def inner():\r    return 1 / 0\r")
    text = run(repl, "inner()")
    assert "ZeroDivisionError: division by zero" in text
    assert "return 1 / 0" in text
    files = re.findall(r'File "([^"]+)"', text)
    assert len(files) == 2 and all(f.startswith("<local-") for f in files)  # no engine/REPL frames
    assert "7" in run(repl, "3 + 4")


def test_help_is_shown_in_the_repl(repl):
    assert "Return the number of items in a container" in run(repl, "help(len)")


def test_completion_in_the_terminal_uses_the_live_namespace_without_running_properties(repl):
    # Attributes: the menu opens while typing, Tab highlights, Enter takes it, Enter runs it.
    repl.send("app.summ")
    repl.expect_exact("summary")  # the completion menu lists the live attribute
    repl.send("\t")
    repl.send("\r")
    text = run(repl, "")
    assert re.search(r"\d+ ticks, 8 items", text)
    assert run(repl, "app.reads_of_summary").strip().splitlines()[-1] == "1"
    # Completing after a property must not evaluate it.
    repl.send("app.summary.")
    time.sleep(0.3)
    repl.send("\t")
    time.sleep(0.3)
    repl.sendcontrol("c")  # discard the line
    repl.expect_exact(READY)
    assert run(repl, "app.reads_of_summary").strip().splitlines()[-1] == "1"
    # Dict keys.
    repl.send("app.items['pe")
    repl.expect_exact("'pears'")
    repl.send("\t")
    repl.send("\r")
    assert run(repl, "").strip().splitlines()[-1] == "5"


EMBED_APP = textwrap.dedent("""
    import asyncio, signal, sys
    import shellsvc

    async def main():
        sigint_calls = []
        def app_handler(signum, frame):
            sigint_calls.append(signum)
        signal.signal(signal.SIGINT, app_handler)
        state = {"ticks": 0}
        async def tick():
            while True:
                await asyncio.sleep(0.1)
                state["ticks"] += 1
        ticker = asyncio.create_task(tick())
        await shellsvc.embed(namespace={"state": state}, history_file=sys.argv[1], banner="EMBEDDED")
        before = state["ticks"]
        await asyncio.sleep(0.5)
        print(f"AFTER-EMBED ticking={state['ticks'] > before} same_handler="
              f"{signal.getsignal(signal.SIGINT) is app_handler} sigint_calls={len(sigint_calls)}", flush=True)
        ticker.cancel()

    asyncio.run(main())
""")


def test_embed_runs_inside_the_app_and_leaves_its_sigint_handler_alone(tmp_path):
    script = tmp_path / "app.py"
    script.write_text(EMBED_APP)
    env = dict(os.environ, TERM="xterm", PROMPT_TOOLKIT_NO_CPR="1")
    child = pexpect.spawn(sys.executable, [str(script), str(tmp_path / "history")], env=env, encoding="utf-8",
                          timeout=15, dimensions=(40, 120))
    try:
        child.expect_exact("EMBEDDED")
        child.expect_exact(PROMPT)
        first = int(run(child, "state['ticks']").strip().splitlines()[-1])
        child.send("while True: pass\r")
        child.expect_exact(ACCEPTED)
        time.sleep(0.3)
        child.sendcontrol("c")  # a key in raw mode, not a SIGINT for the app
        child.expect_exact("KeyboardInterrupt")
        child.expect_exact(READY)
        assert int(run(child, "state['ticks']").strip().splitlines()[-1]) > first
        child.send("raise SystemExit\r")  # ends the REPL, not the app
        child.expect_exact("AFTER-EMBED ticking=True same_handler=True sigint_calls=0")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0


def complete(namespace: dict, text: str) -> list[str]:
    completer = NamespaceCompleter(lambda: namespace)
    return [c.text for c in completer.get_completions(Document(text), CompleteEvent())]


def test_completion_names_attributes_and_dict_keys_without_side_effects():
    calls = []

    class Service:
        counter = 1

        @property
        def expensive(self):
            calls.append("expensive")
            return self

        def start(self):
            pass

    ns = {"service": Service(), "settings": {"timeout": 1, "token": 2, 3: "x"}}
    assert "service" in complete(ns, "serv")
    assert {"start", "counter", "expensive"} <= set(complete(ns, "service."))
    assert complete(ns, "service.expensive.") == []  # would run the property: not followed
    assert complete(ns, "service.expensive.start.") == []
    assert calls == []
    assert sorted(complete(ns, "settings['t")) == ["timeout']", "token']"]
    assert "print" in complete(ns, "pri")


def test_enter_continues_blocks_like_the_interpreter():
    assert needs_continuation("def f():")
    assert needs_continuation("def f():\n    return 1")
    assert not needs_continuation("def f():\n    return 1\n")
    assert needs_continuation("x = (1,")
    assert not needs_continuation("x = 1")
