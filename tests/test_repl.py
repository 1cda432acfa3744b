"""The local REPL, driven through a real pty like a user at a terminal."""

from __future__ import annotations

import os
import re
import sys

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
    child = pexpect.spawn(
        sys.executable, ["-m", "shellsvc", "repl", "--history", str(tmp_path / "history")],
        env=env, encoding="utf-8", timeout=15, dimensions=(40, 120), logfile=open(tmp_path / "pty.log", "w"),
    )
    child.expect_exact(PROMPT)
    yield child
    if child.isalive():
        child.sendcontrol("d")
        child.expect(pexpect.EOF, timeout=10)
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
    assert calls == []
    assert sorted(complete(ns, "settings['t")) == ["timeout']", "token']"]
    assert "print" in complete(ns, "pri")


def test_enter_continues_blocks_like_the_interpreter():
    assert needs_continuation("def f():")
    assert needs_continuation("def f():\n    return 1")
    assert not needs_continuation("def f():\n    return 1\n")
    assert needs_continuation("x = (1,")
    assert not needs_continuation("x = 1")
