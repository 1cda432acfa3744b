"""Side by side, in one run on one machine: shellsvc vs ptpython over asyncssh vs aiomonitor.

    python benchmarks/compare_peers.py [--quick] [--peers shellsvc,ptpython,ptpython-stock,aiomonitor]

Needs the ``bench`` extra (``pip install -e '.[bench]'``: ptpython, aiomonitor); a peer that
is not installed gets a column saying so. See docs/benchmarks.md for how to read the table.

Every peer is hosted by the same small "app" in its own child process: an asyncio loop with
a 10 ms ticker (its lateness is the *app loop lag* any task of the app would see) and a
SIGINT handler installed with ``loop.add_signal_handler``. The driver (this process) plays
the users, the same way for every peer:

* a terminal session per user: asyncssh with ``term_type`` (a PTY) for the SSH peers, a small
  telnet client for aiomonitor (its ``console`` command proxies to its aioconsole REPL);
  keys are typed, ANSI escapes are stripped, and the screen is matched;
* eval round trip: type ``1000+i`` + Enter, wait for the result and the next prompt;
  the ``ssh host '1000+i'`` exec round trip is printed against a raw asyncssh exec echo
  server measured in the same run (the floor of any SSH request);
* app loop lag while N sessions (1, 4) each run a CPU-bound loop for a fixed window;
* two users: does B see A's variable, do keystrokes typed in parallel cross-wire, where
  does ``print`` go;
* Ctrl-C during ``while True: pass``: does it stop, is the session usable afterwards, does
  the app loop keep running meanwhile;
* a real SIGINT sent to the app at the end: does the app's own handler still run?

Every step has a timeout, so a peer that blocks is reported as "hangs" rather than hanging
this script; a child whose loop stays blocked is killed.

ptpython is run two ways. "ptpython run_async" is the embedding that works: one prompt_toolkit
AppSession per SSH channel, ``await app.run_async()`` inside ``create_app_session``, a namespace
and ``print`` per connection. "ptpython stock contrib" is ``ptpython.contrib.asyncssh_repl.
ReplSSHServerSession`` wired like ptpython's own example (one shared namespace) plus the two shims
it needs to start at all on current prompt_toolkit (``create_pipe_input()`` is a context manager
since 3.0.29; its stdout has no ``isatty()``, so CPR is turned off). It reads input with
``app.run(in_thread=True)`` in an executor thread, which also renders to the SSH channel from
that thread. Both evaluate the code on the app's event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import codecs
import contextlib
import faulthandler
import json
import logging
import os
import re
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh

from bench_ssh import LagMonitor, pct

USERS = ("alice", "bob", "carol", "dave")
PROMPT = ">>>"
TERM_SIZE = (120, 40)


# == the app (child process) ======================================================================

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _start_raw(workdir: Path, keys: Path) -> dict[str, Any]:
    """A raw asyncssh exec server that echoes the command: the floor of any SSH request."""
    async def echo(process: asyncssh.SSHServerProcess) -> None:
        process.stdout.write(f"{process.command}\n")
        process.exit(0)

    acceptor = await asyncssh.listen("127.0.0.1", 0, server_host_keys=[asyncssh.generate_private_key("ssh-ed25519")],
                                     process_factory=echo, authorized_client_keys=str(keys), config=None)
    return {"port": acceptor.get_port()}


async def _start_shellsvc(workdir: Path, keys: Path) -> dict[str, Any]:
    from shellsvc import Service

    config = {
        "server": {"host": "127.0.0.1", "port": 0, "state_dir": str(workdir / "state")},
        "limits": {"max_sessions_per_user": 100, "max_unauthenticated": 100, "penalty_exempt": ["127.0.0.0/8"]},
        "users": {user: {"role": "admin", "authorized_keys": str(keys)} for user in USERS},
    }
    service = Service(namespace={"answer": 42}, config=config)
    await service.start()
    return {"port": service.port}


class _ChannelStdout:
    """What prompt_toolkit's Vt100_Output writes to: the SSH channel (on the loop thread)."""

    encoding = "utf-8"

    def __init__(self, chan: asyncssh.SSHServerChannel[str]) -> None:
        self._chan = chan

    def write(self, data: str) -> None:
        self._chan.write(data.replace("\n", "\r\n"))

    def flush(self) -> None:
        pass


def _ptpython_run_async_session() -> asyncssh.SSHServerSession[str]:
    """ptpython embedded the way that works: its own AppSession per channel, ``app.run_async()``."""
    from prompt_toolkit.application import create_app_session
    from prompt_toolkit.data_structures import Size
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output.vt100 import Vt100_Output
    from ptpython.repl import PythonRepl

    class Session(asyncssh.SSHServerSession[str]):
        def __init__(self) -> None:
            self._stack = contextlib.ExitStack()
            self._input = self._stack.enter_context(create_pipe_input())
            self._chan: Any = None
            self._repl: PythonRepl | None = None
            self._task: asyncio.Task[None] | None = None

        def connection_made(self, chan: Any) -> None:
            self._chan = chan

        def shell_requested(self) -> bool:
            return True

        def session_started(self) -> None:
            self._task = asyncio.ensure_future(self._run())

        def _size(self) -> Size:
            width, height, _, _ = self._chan.get_terminal_size()
            return Size(rows=height or 24, columns=width or 80)

        def _print(self, *values: object, sep: str = " ", end: str = "\n", **_: Any) -> None:
            self._chan.write((sep.join(map(str, values)) + end).replace("\n", "\r\n"))

        async def _run(self) -> None:
            output = Vt100_Output(_ChannelStdout(self._chan), self._size,  # type: ignore[arg-type]
                                  term=self._chan.get_terminal_type() or "xterm", enable_cpr=False)
            namespace = {"answer": 42, "print": self._print}
            try:
                with create_app_session(input=self._input, output=output):
                    repl = PythonRepl(get_globals=lambda: namespace, input=self._input, output=output)
                    repl.enable_open_in_editor = False
                    repl.enable_system_bindings = False
                    self._repl = repl
                    while True:
                        try:
                            text = await repl.app.run_async()
                        except KeyboardInterrupt:
                            continue
                        except EOFError:
                            break
                        if text.strip():
                            await repl.run_and_show_expression_async(text)
            finally:
                self._chan.exit(0)

        def data_received(self, data: str, datatype: Any) -> None:
            self._input.send_text(data)

        def terminal_size_changed(self, *size: int) -> None:
            if self._repl is not None:
                self._repl.app._on_resize()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._task is not None:
                self._task.cancel()
            self._stack.close()

    return Session()


def _ptpython_stock_session(namespace: dict[str, Any]) -> asyncssh.SSHServerSession[str]:
    """ptpython's own ReplSSHServerSession, with the pipe input it expects (pre-3.0.29 API)."""
    from prompt_toolkit.input import create_pipe_input
    from ptpython.contrib import asyncssh_repl

    def legacy_create_pipe_input() -> Any:
        manager = create_pipe_input()
        pipe = manager.__enter__()
        pipe.send = pipe.send_text  # what the contrib module calls (prompt_toolkit <= 3.0.28)
        pipe.manager = manager  # closing (or collecting) the manager closes the pipe
        return pipe

    asyncssh_repl.create_pipe_input = legacy_create_pipe_input  # type: ignore[assignment]
    return asyncssh_repl.ReplSSHServerSession(lambda: namespace)


async def _start_ptpython(workdir: Path, keys: Path, stock: bool) -> dict[str, Any]:
    shared = {"answer": 42}  # ptpython's example passes the module globals: one namespace for everyone
    if stock:
        # The contrib Stdout has no isatty(), which prompt_toolkit >= 3.0.3x calls unless CPR is off.
        os.environ["PROMPT_TOOLKIT_NO_CPR"] = "1"

    class Server(asyncssh.SSHServer):
        def session_requested(self) -> asyncssh.SSHServerSession[str]:
            return _ptpython_stock_session(shared) if stock else _ptpython_run_async_session()

    acceptor = await asyncssh.listen("127.0.0.1", 0, server_host_keys=[asyncssh.generate_private_key("ssh-ed25519")],
                                     server_factory=Server, authorized_client_keys=str(keys), line_editor=False,
                                     config=None)
    return {"port": acceptor.get_port()}


async def _start_aiomonitor(workdir: Path, keys: Path) -> dict[str, Any]:
    import aiomonitor

    termui, webui, console = _free_port(), _free_port(), _free_port()
    aiomonitor.start_monitor(asyncio.get_running_loop(), host="127.0.0.1", port=termui, webui_port=webui,
                             console_port=console, locals={"answer": 42})
    return {"port": termui}


STARTERS: dict[str, Callable[[Path, Path], Awaitable[dict[str, Any]]]] = {
    "raw": _start_raw,
    "shellsvc": _start_shellsvc,
    "ptpython": lambda workdir, keys: _start_ptpython(workdir, keys, stock=False),
    "ptpython-stock": lambda workdir, keys: _start_ptpython(workdir, keys, stock=True),
    "aiomonitor": _start_aiomonitor,
}


def die_with_parent() -> None:
    """Linux: the app is killed when the driver goes away, even while a peer blocks its loop."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError) as exc:
        logging.getLogger(__name__).warning("cannot tie the app's life to the driver's: %s", exc)


async def serve(kind: str, workdir: Path, keys: Path) -> None:
    """The app: a ticker, its own SIGINT handler, the peer, and a control channel on stdin/stdout."""
    # The control channel gets private copies of stdin/stdout: whatever a peer prints goes to the
    # log, and whatever a peer reads from stdin (prompt_toolkit's "Press ENTER to continue..." after
    # an unhandled error does) reads /dev/null instead of eating control commands.
    control = os.fdopen(os.dup(1), "w", buffering=1)
    commands = os.fdopen(os.dup(0), "rb", buffering=0)
    os.dup2(2, 1)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")

    def reply(*words: object) -> None:
        control.write("@@ " + " ".join(map(str, words)) + "\n")

    loop = asyncio.get_running_loop()
    sigints = 0

    def on_sigint() -> None:
        nonlocal sigints
        sigints += 1

    loop.add_signal_handler(signal.SIGINT, on_sigint)
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # the driver asks where a blocked loop is
    lag = LagMonitor()
    ticker = asyncio.create_task(lag.run())  # held: the loop keeps only weak references to tasks
    info = {**await STARTERS[kind](workdir, keys), "main_thread": threading.main_thread().ident}
    reply("READY", json.dumps(info, separators=(",", ":")))
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), commands)
    try:
        await _control(reader, reply, lag, lambda: sigints)
    except BaseException as exc:  # e.g. the KeyboardInterrupt of a SIGINT whose handler a peer removed
        reply("DIED", type(exc).__name__)
        raise
    # "quit" or the driver went away. Exit now: asyncio.run's cleanup would wait for a peer's
    # threads (ptpython's input readers never return).
    os._exit(0)


async def _control(reader: asyncio.StreamReader, reply: Callable[..., None], lag: LagMonitor,
                   sigints: Callable[[], int]) -> None:
    while line := (await reader.readline()).decode().strip():
        if line == "lag-reset":
            lag.samples.clear()
            reply("OK")
        elif line == "lag":
            await asyncio.sleep(0.05)  # let the ticker record the tick that spans a block that just ended
            samples = sorted(lag.samples) or [0.0]
            reply("LAG", pct(samples, 0.5), pct(samples, 0.99), samples[-1], len(lag.samples))
        elif line == "sigints":
            reply("SIGINTS", sigints())
        elif line == "ping":
            reply("PONG")
        elif line == "quit":
            break


# == the users (this process) =====================================================================

ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[PX^_][^\x1b]*\x1b\\"
                  r"|\x1b[()][0-9A-Za-z]|\x1b[@-Z\\-_=>]")
CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")


class Hang(Exception):
    """A step did not finish in time: the peer is reported as hanging there."""


class Refused(Hang):
    """The peer answered, but with a refusal or an error instead of doing the step."""

    def __init__(self, message: str, cell: str = "fails") -> None:
        super().__init__(message)
        self.cell = cell


class Screen:
    """What a terminal user reads: the output with escape sequences and control bytes removed."""

    def __init__(self, answer: Callable[[str], None]) -> None:
        self.text = ""
        self.pos = 0
        self._answer = answer
        self._pending = ""
        self._changed = asyncio.Event()
        self.closed = False

    def feed(self, data: str) -> None:
        data = self._pending + data
        self._pending = ""
        cut = data.rfind("\x1b")
        if cut != -1 and len(data) - cut < 64 and not ANSI.match(data, cut):
            data, self._pending = data[:cut], data[cut:]  # an escape sequence split across reads
        for _ in range(data.count("\x1b[6n")):
            self._answer("\x1b[1;1R")  # a cursor position request: answer like a terminal would
        self.text += CONTROL.sub("", ANSI.sub("", data))
        self._changed.set()

    def close(self) -> None:
        self.closed = True
        self._changed.set()

    async def expect(self, pattern: str, timeout: float) -> re.Match[str]:
        """The first match of ``pattern`` after the previous one, within ``timeout`` seconds."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.text, self.pos)
            if match:
                self.pos = match.end()
                return match
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.closed:
                tail = self.text[-80:].replace("\n", "⏎")
                state = "closed" if self.closed else f"no {pattern!r} after {timeout:g} s"
                raise Hang(f"{state}; screen ends {tail!r}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    def seen_since(self, start: int, needle: str) -> bool:
        return needle in self.text[start:]


class Terminal:
    """One user's interactive session: type keys, read the screen."""

    def __init__(self) -> None:
        self.screen = Screen(self.type)

    def type(self, keys: str) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def eval(self, line: str, result: str, timeout: float) -> float:
        """Type ``line`` + Enter; seconds until ``result`` and then the next prompt are on screen."""
        start = time.perf_counter()
        self.type(line + "\r")
        await self.screen.expect(result, timeout)
        await self.screen.expect(re.escape(PROMPT), timeout)
        return time.perf_counter() - start


class SSHTerminal(Terminal):
    def __init__(self, conn: asyncssh.SSHClientConnection, process: asyncssh.SSHClientProcess[str]) -> None:
        super().__init__()
        self.conn = conn
        self.process = process
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            while data := await self.process.stdout.read(65536):
                self.screen.feed(data)
        except (OSError, asyncssh.Error):
            pass
        finally:
            self.screen.close()

    def type(self, keys: str) -> None:
        self.process.stdin.write(keys)

    async def close(self) -> None:
        self.conn.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.conn.wait_closed(), 5)
        self._reader.cancel()


IAC, WILL, SB, SE, TTYPE, NAWS = 255, 251, 250, 240, 24, 31
#: IAC IAC (a literal 255), a subnegotiation (group 1), an option negotiation, or another command.
TELNET_COMMAND = re.compile(rb"\xff(?:\xff|\xfa(.*?)\xff\xf0|[\xfb-\xfe].|[\x00-\xf9])", re.DOTALL)


class TelnetTerminal(Terminal):
    """A minimal telnet client: answers the terminal type and window size, strips IAC sequences."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        super().__init__()
        self.reader, self.writer = reader, writer
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        width, height = TERM_SIZE
        writer.write(bytes([IAC, WILL, TTYPE, IAC, WILL, NAWS, IAC, SB, NAWS, 0, width, 0, height, IAC, SE]))
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        pending = b""
        try:
            while chunk := await self.reader.read(65536):
                data, text, end = pending + chunk, bytearray(), 0
                for command in TELNET_COMMAND.finditer(data):
                    text += data[end:command.start()]
                    end = command.end()
                    if command.group() == bytes([IAC, IAC]):
                        text.append(IAC)
                    elif (command.group(1) or b"")[:2] == bytes([TTYPE, 1]):  # SEND: answer IS xterm
                        self.writer.write(bytes([IAC, SB, TTYPE, 0]) + b"xterm" + bytes([IAC, SE]))
                rest = data[end:]
                cut = rest.find(bytes([IAC]))  # a command split across reads waits for the next one
                text += rest if cut == -1 else rest[:cut]
                pending = b"" if cut == -1 else rest[cut:]
                self.screen.feed(self._decoder.decode(bytes(text)))
        except OSError:
            pass
        finally:
            self.screen.close()

    def type(self, keys: str) -> None:
        self.writer.write(keys.encode())

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(self.writer.wait_closed(), 5)
        self._task.cancel()


class App:
    """The driver's handle on one child process hosting a peer."""

    def __init__(self, kind: str, workdir: Path, keys: Path, key: asyncssh.SSHKey, attempts: int = 1) -> None:
        self.kind = kind
        self.attempts = attempts
        self.workdir = workdir / f"{kind}-{time.monotonic_ns()}"
        self.keys = keys
        self.key = key
        self.proc: asyncio.subprocess.Process | None = None
        self.info: dict[str, Any] = {}
        self.terminals: list[Terminal] = []
        self.open_failures: list[str] = []
        self.broken = 0
        self.blocked = False
        self.notes: list[str] = []

    @property
    def log(self) -> Path:
        return self.workdir / "app.log"

    async def start(self) -> App:
        self.workdir.mkdir(mode=0o700)
        with open(self.log, "wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, __file__, "--serve", self.kind, "--workdir", str(self.workdir), "--keys",
                str(self.keys), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=log)
        words = await self._reply(30, "READY")
        self.info = json.loads(words[0])
        return self

    async def _reply(self, timeout: float, expected: str) -> list[str]:
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = await asyncio.wait_for(self.proc.stdout.readline(), max(0.01, deadline - time.monotonic()))
            except TimeoutError:
                self.blocked = True
                raise Hang(f"the app did not answer within {timeout:g} s: its event loop is blocked"
                           f"{await self.blocked_at()}") from None
            if not line:
                try:
                    code = await asyncio.wait_for(self.proc.wait(), max(0.01, deadline - time.monotonic()))
                except TimeoutError:
                    raise Hang(f"the app closed its control channel but did not exit within {timeout:g} s") from None
                raise Hang(f"the app exited with status {code}{self._log_tail()}")
            words = line.decode().split()
            if words[:2] == ["@@", expected]:
                return words[2:]
            if words[:2] == ["@@", "DIED"]:
                raise Hang(f"the app's main task died with {words[2]}")

    async def blocked_at(self) -> str:
        """Where the app's main thread is, from a faulthandler dump (SIGUSR1), as `` in ...``."""
        assert self.proc is not None
        if self.proc.returncode is not None:
            return ""
        size = self.log.stat().st_size
        self.proc.send_signal(signal.SIGUSR1)
        await asyncio.sleep(0.3)
        with open(self.log, "rb") as log:
            log.seek(size)
            dump = log.read().decode(errors="replace")
        main = f"{self.info.get('main_thread', 0):#018x}"
        block = re.search(rf"(?:Current thread|Thread) {main} \(most recent call first\):\n((?:  File .*\n)+)", dump)
        frames = re.findall(r'File "([^"]+)", line (\d+) in (\S+)', block.group(1)) if block else []
        ours = [frame for frame in frames if not frame[0].startswith(sys.base_prefix)]  # skip the stdlib
        if not ours:
            return ""
        path, line, function = ours[0]
        return f" (in {function}, {'/'.join(Path(path).parts[-2:])}:{line})"

    def _log_tail(self) -> str:
        lines = [line for line in self.log.read_text(errors="replace").splitlines() if line.strip()]
        return f" (log: {lines[-1].strip()[:120]})" if lines else ""

    def last_error(self, since: int = 0) -> str:
        """The last error the app logged after byte ``since``, as `` (app log: ...)``, or nothing."""
        with open(self.log, "rb") as log:
            log.seek(since)
            text = log.read().decode(errors="replace")
        errors = [line.strip() for line in text.splitlines()
                  if re.search(r"\[Errno \d+\]|\w+(Error|Exception): \S", line) and not line.startswith(" ")]
        return f" (app log: {errors[-1][:120]})" if errors else ""

    async def ask(self, command: str, expected: str, timeout: float = 10) -> list[str]:
        assert self.proc is not None and self.proc.stdin is not None
        if self.proc.returncode is not None:
            raise Hang(f"the app exited with status {self.proc.returncode}")
        self.proc.stdin.write(f"{command}\n".encode())
        with contextlib.suppress(ConnectionError):
            await self.proc.stdin.drain()
        return await self._reply(timeout, expected)

    async def lag(self, timeout: float = 10) -> tuple[float, float, float]:
        p50, p99, worst, _ = await self.ask("lag", "LAG", timeout)
        return float(p50), float(p99), float(worst)

    def connect(self, user: str = "alice") -> Any:
        return asyncssh.connect("127.0.0.1", self.info["port"], username=user, client_keys=[self.key],
                                known_hosts=None, agent_path=None, config=None, connect_timeout=10)

    async def terminal(self, user: str, timeout: float = 5) -> Terminal:
        """A logged-in interactive session at its first Python prompt.

        A connection that breaks or shows nothing at all is retried (and counted in
        ``open_failures``): one broken session should not hide how the peer does otherwise.
        """
        for attempt in range(1, self.attempts + 1):
            opened = len(self.terminals)
            try:
                return await asyncio.wait_for(self._terminal(user, timeout), timeout + 5)
            except TimeoutError:
                error: Exception = Hang(f"no Python prompt within {timeout:g} s")
            except (Hang, OSError, asyncssh.Error) as exc:
                error = exc
            blank = len(self.terminals) > opened and not self.terminals[-1].screen.text.strip()
            if attempt == self.attempts or (isinstance(error, Hang) and not blank):
                raise error if isinstance(error, Hang) else Hang(f"{type(error).__name__}: {short(error)}")
            self.open_failures.append(f"{type(error).__name__}: {short(error)}")
        raise AssertionError("unreachable")

    async def _terminal(self, user: str, timeout: float) -> Terminal:
        term: Terminal
        if self.kind == "aiomonitor":
            reader, writer = await asyncio.open_connection("127.0.0.1", self.info["port"])
            term = TelnetTerminal(reader, writer)
            self.terminals.append(term)
            await term.screen.expect("monitor >>>", timeout)
            await asyncio.sleep(0.2)
            logged = self.log.stat().st_size
            term.type("console\r")
            deadline = time.monotonic() + timeout
            while True:  # aioconsole's banner, or an error in the app's log (e.g. its port is taken)
                try:
                    await term.screen.expect("running in an asyncio event loop", 0.25)
                    break
                except Hang:
                    if error := self.last_error(since=logged):
                        others = len(self.terminals) > 1
                        raise Refused(f"`console` did not start{error}",
                                      "n/a: one session at a time" if others else "fails") from None
                    if time.monotonic() > deadline:
                        raise
        else:
            conn = await self.connect(user)
            process = await conn.create_process(term_type="xterm", term_size=TERM_SIZE, encoding="utf-8")
            term = SSHTerminal(conn, process)
            self.terminals.append(term)
            try:  # a session that shows nothing at all is broken
                await term.screen.expect("[^\n]", min(timeout, 3))
            except Hang:
                raise Hang(f"a blank screen for {min(timeout, 3):g} s") from None
            term.screen.pos = 0
        await term.screen.expect(re.escape(PROMPT), timeout)
        await asyncio.sleep(0.2)  # let the first render settle (prompt_toolkit draws the prompt twice)
        term.screen.pos = len(term.screen.text)
        return term

    async def close_terminals(self) -> None:
        terminals, self.terminals = self.terminals, []
        self.broken += sum(term.screen.closed for term in terminals)  # the peer closed them, not us
        await asyncio.gather(*(term.close() for term in terminals), return_exceptions=True)

    async def sigint_survives(self) -> str:
        """Send the app a real SIGINT: does the handler the app installed still run?"""
        assert self.proc is not None
        if self.proc.returncode is not None:
            return "n/a (app already exited)"
        self.proc.send_signal(signal.SIGINT)
        await asyncio.sleep(0.5)
        try:
            count = int((await self.ask("sigints", "SIGINTS", 5))[0])
        except Hang as exc:
            if self.proc.returncode is not None or "main task died" in str(exc):
                return "lost: the SIGINT killed the app"
            self.notes.append(f"sigint: {short(exc)}")
            return "n/a: app loop blocked"
        return "yes" if count else "lost: handler not called"

    async def stop(self) -> None:
        await self.close_terminals()
        if self.proc is None or self.proc.returncode is not None:
            return
        if not self.blocked:  # a blocked app would not read "quit"
            with contextlib.suppress(Hang):
                await self.ask("quit", "never", 3)
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()


# == the scenarios ================================================================================

@dataclass
class Settings:
    round_trips: int
    window: float
    ctrl_c_wait: float
    step_timeout: float
    attempts: int  # per session open and per scenario, for peers that drop connections


@dataclass
class Column:
    label: str
    cells: dict[str, str] = field(default_factory=dict)
    numbers: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f}" if seconds < 0.1 else f"{seconds * 1e3:.0f}"


def short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) < 160 else text[:157] + "..."


async def exec_round_trip(app: App, settings: Settings) -> list[float] | str:
    """``ssh host '1000+i'`` round trips on an open connection, or why the peer cannot do them."""
    try:
        async with app.connect() as conn:
            times = []
            for i in range(settings.round_trips + 10):
                start = time.perf_counter()
                result = await asyncio.wait_for(conn.run(f"1000+{i}"), settings.step_timeout)
                elapsed = time.perf_counter() - start
                if result.exit_status != 0 or result.stdout.strip() not in (str(1000 + i), f"1000+{i}"):
                    return f"fails: exit status {result.exit_status}, output {result.stdout!r}"
                if i >= 10:
                    times.append(elapsed)
            return times
    except asyncssh.ChannelOpenError as exc:
        return f"refused ({exc.reason})"
    except TimeoutError:
        return "hangs"
    except (OSError, asyncssh.Error) as exc:
        return f"fails: {short(exc)}"


async def pty_round_trip(app: App, settings: Settings) -> list[float]:
    try:
        term = await app.terminal("alice")
    except Hang as exc:
        raise Hang(f"no session: {exc}") from None
    times: list[float] = []
    try:
        for i in range(5):  # warm up (first evals import/compile things)
            await term.eval(f"2000+{i}", rf"\b{2000 + i}\b", settings.step_timeout)
        for i in range(settings.round_trips):
            times.append(await term.eval(f"1000+{i}", rf"\b{1000 + i}\b", settings.step_timeout))
    except Hang as exc:
        raise Hang(f"{'closed' if term.screen.closed else 'hangs'} after {len(times)} of "
                   f"{settings.round_trips} evals: {exc}") from None
    await app.close_terminals()
    return times


async def sees_probe(bob: Terminal, column: Column, timeout: float, prefix: str = "") -> None:
    """Does ``bob`` see the variable alice set?"""
    bob.type("'B sees ' + repr(probe_a)\r")
    try:
        seen = await bob.screen.expect(r"B sees (\d+)|NameError", timeout)
        column.cells["isolation"] = prefix + ("YES (shared namespace)" if seen.group(1) else "no (separate)")
    except Hang as exc:
        column.cells["isolation"] = prefix + "hangs"
        column.notes.append(f"isolation: {short(exc)}")
    with contextlib.suppress(Hang):
        await bob.screen.expect(re.escape(PROMPT), timeout)


async def two_users(app: App, column: Column, settings: Settings) -> None:
    timeout = settings.step_timeout
    try:
        alice = await app.terminal("alice")
    except Hang as exc:
        column.cells["isolation"] = column.cells["crosswire"] = column.cells["print"] = "fails: no session"
        column.notes.append(f"isolation: first user gets no prompt: {short(exc)}")
        return
    await alice.eval("(probe_a := 4242) + 1", r"\b4243\b", timeout)
    try:
        bob = await app.terminal("bob")
    except Hang as exc:
        column.notes.append(f"isolation: second user gets no prompt: {short(exc)}")
        if not isinstance(exc, Refused):
            column.cells["isolation"] = column.cells["crosswire"] = column.cells["print"] = "n/a: 2nd session hangs"
            return
        # One session at a time (aiomonitor's console): B comes after A has left.
        column.cells["crosswire"] = column.cells["print"] = "n/a: one session at a time"
        await app.close_terminals()
        await asyncio.sleep(0.5)  # the peer closes its side
        try:
            await sees_probe(await app.terminal("bob"), column, timeout, "one at a time; B after A: ")
        except Hang as again:
            column.cells["isolation"] = "n/a: 2nd session refused"
            column.notes.append(f"isolation: B after A: {short(again)}")
        return
    await sees_probe(bob, column, timeout)
    # Keystrokes typed at the same time by both users must stay in their own sessions.
    marks = (len(alice.screen.text), len(bob.screen.text))
    for keys, term in (("5000+", alice), ("7000+", bob), ("11", alice), ("22", bob), ("\r", alice), ("\r", bob)):
        term.type(keys)
        await asyncio.sleep(0.05)
    outcome = []
    for name, term, good in (("A", alice, "5011"), ("B", bob, "7022")):
        try:
            await term.screen.expect(rf"\b{good}\b", timeout)
            outcome.append("")
        except Hang:
            wrong = re.findall(r"\b\d{4,5}\b", term.screen.text[marks[0] if term is alice else marks[1]:])
            outcome.append(f"{name} got {'/'.join(dict.fromkeys(wrong)) or 'nothing'} not {good}")
    bad = [text for text in outcome if text]
    column.cells["crosswire"] = "no" if not bad else "YES: " + "; ".join(bad)
    with contextlib.suppress(Hang):
        await alice.screen.expect(re.escape(PROMPT), 2)
        await bob.screen.expect(re.escape(PROMPT), 2)
    # print() from each user: on whose screen does it appear?
    marks = (len(alice.screen.text), len(bob.screen.text))
    alice.type("print('from' + '-alice')\r")
    await asyncio.sleep(0.3)
    bob.type("print('from' + '-bob')\r")
    wrong = []
    for name, term, own in (("A", alice, "from-alice"), ("B", bob, "from-bob")):
        try:
            await term.screen.expect(own, timeout)
        except Hang:
            wrong.append(f"{name}'s print not on {name}'s screen")
    await asyncio.sleep(0.5)  # time for a misrouted print to show up too
    for name, term, mark, other in (("A", alice, marks[0], "from-bob"), ("B", bob, marks[1], "from-alice")):
        if term.screen.seen_since(mark, other):
            wrong.append(f"{name} sees the other's print")
    column.cells["print"] = "own terminal" if not wrong else "WRONG: " + "; ".join(wrong)
    await app.close_terminals()


#: One expression (every REPL takes it on one line) that keeps the CPU busy for {seconds} s in pure Python.
BUSY = ("'done-%d' % (lambda end: sum(1 for _ in iter(lambda: __import__('time').time() < end, False)))"
        "(__import__('time').time() + {seconds})")


async def loop_lag(app: App, sessions: int, settings: Settings) -> tuple[tuple[float, float, float], int, str]:
    """App loop lag while ``sessions`` sessions each spin the CPU for ``settings.window`` seconds."""
    terms = []
    for index in range(sessions):
        terms.append(await app.terminal(USERS[index % len(USERS)]))
    await app.ask("lag-reset", "OK")
    for term in terms:
        term.type(BUSY.format(seconds=settings.window) + "\r")
    started = time.perf_counter()
    outcome, finished = "", 0
    for term in terms:
        try:
            await term.screen.expect(r"done-\d+", settings.window * sessions + settings.step_timeout)
            finished += 1
        except Hang as exc:
            outcome = f"a session did not finish: {short(exc)}"
    elapsed = time.perf_counter() - started
    lag = await app.lag(timeout=settings.step_timeout)
    await app.close_terminals()
    if not outcome and elapsed > settings.window * 1.5 + 1:
        outcome = f"sessions took {elapsed:.1f} s for a {settings.window:g} s loop (serialised)"
    return lag, finished, outcome


async def ctrl_c(app: App, column: Column, settings: Settings) -> None:
    term = await app.terminal("alice")
    await term.eval("3000+1", r"\b3001\b", settings.step_timeout)
    term.type("while True: pass\r\r")  # the second Enter ends the block where a REPL asks for one
    await asyncio.sleep(1.0)

    async def loop_runs() -> bool:
        try:
            await app.ask("ping", "PONG", 1)
            return True
        except Hang:
            return False

    running = await loop_runs()
    start = time.perf_counter()
    term.type("\x03")
    try:
        await term.screen.expect("KeyboardInterrupt", settings.ctrl_c_wait)
        column.cells["ctrl_c"] = f"yes, in {ms(time.perf_counter() - start)} ms"
    except Hang:
        column.cells["ctrl_c"] = f"NO: still running after {settings.ctrl_c_wait:g} s"
        column.cells["usable"] = "NO (session stuck)"
        running = running and await loop_runs()
    column.cells["loop_during"] = "yes" if running else "NO: app loop blocked"
    if "usable" in column.cells:
        return
    try:
        await term.screen.expect(re.escape(PROMPT), settings.step_timeout)
        await term.eval("3000+2", r"\b3002\b", settings.step_timeout)
        column.cells["usable"] = "yes"
    except Hang as exc:
        column.cells["usable"] = f"NO: {short(exc)}"


ROWS = [
    ("exec", "eval round trip, `ssh host '1000+i'` (median / p99 ms)"),
    ("pty", "eval round trip, terminal: type `1000+i⏎` (median / p99 ms)"),
    ("lag0", "app loop lag, no session (p50 / p99 / max ms)"),
    ("lag1", "app loop lag, 1 session busy (p50 / p99 / max ms)"),
    ("lag4", "app loop lag, 4 sessions busy (p50 / p99 / max ms)"),
    ("isolation", "two users: B sees A's variable?"),
    ("crosswire", "two users typing at once: keystrokes cross-wired?"),
    ("print", "two users: where print() goes"),
    ("ctrl_c", "Ctrl-C stops `while True: pass`?"),
    ("usable", "session usable after Ctrl-C?"),
    ("loop_during", "app loop runs during `while True: pass`?"),
    ("sigint", "app's own SIGINT handler still runs afterwards?"),
]


async def run_step(column: Column, key: str, step: Callable[[], Awaitable[Any]]) -> Any:
    try:
        return await step()
    except Hang as exc:
        column.cells[key] = exc.cell if isinstance(exc, Refused) else "hangs"
        column.notes.append(f"{key}: {short(exc)}")
    except (OSError, asyncssh.Error) as exc:
        column.cells[key] = "fails"
        column.notes.append(f"{key}: {type(exc).__name__}: {short(exc)}")
    return None


def lag_cell(lag: tuple[float, float, float]) -> str:
    return " / ".join(ms(value) for value in lag)


async def round_trips(app: App, column: Column, settings: Settings) -> None:
    if app.kind == "aiomonitor":
        column.cells["exec"] = "n/a (telnet)"
    else:
        result = await exec_round_trip(app, settings)
        if isinstance(result, str):
            column.cells["exec"] = result
        else:
            column.numbers["exec"] = result
    try:
        column.numbers["pty"] = await pty_round_trip(app, settings)
    except Hang as exc:
        column.cells["pty"] = "NO: " + str(exc).split(":")[0]
        column.notes.append(f"pty: {short(exc)}")
        if str(exc).startswith("no session"):
            column.cells["sigint"] = "n/a: nothing was evaluated"
            return
    column.cells["sigint"] = await app.sigint_survives()


async def loop_lags(app: App, column: Column, settings: Settings) -> None:
    async def idle() -> None:
        await app.ask("lag-reset", "OK")
        await asyncio.sleep(settings.window)
        column.numbers["lag0"] = await app.lag()
        column.cells["lag0"] = lag_cell(column.numbers["lag0"])

    await run_step(column, "lag0", idle)
    for sessions in (1, 4):
        result = await run_step(column, f"lag{sessions}", lambda: loop_lag(app, sessions, settings))
        if result:
            lag, finished, outcome = result
            column.cells[f"lag{sessions}"] = lag_cell(lag)
            if finished == sessions:
                column.numbers[f"lag{sessions}"] = lag
            else:
                column.cells[f"lag{sessions}"] += f" (only {finished} of {sessions} sessions showed a result)"
            if outcome:
                column.notes.append(f"lag{sessions}: {outcome}")
        await app.close_terminals()


SCENARIOS: list[tuple[str, Callable[[App, Column, Settings], Awaitable[None]]]] = [
    ("pty", round_trips),
    ("isolation", two_users),
    ("lag0", loop_lags),
    ("ctrl_c", ctrl_c),
]


async def measure(kind: str, label: str, workdir: Path, keys: Path, key: asyncssh.SSHKey,
                  settings: Settings) -> Column:
    """Each scenario in a fresh app, so what one does to a peer cannot spoil the next.

    A scenario during which the peer dropped a session's connection is run again (up to
    ``settings.attempts`` times; the drops are in the notes): the other answers are still worth having.
    """
    column = Column(label)
    for key_cell, scenario in SCENARIOS:
        for attempt in range(1, settings.attempts + 1):
            cells, numbers, notes = dict(column.cells), dict(column.numbers), list(column.notes)
            app = App(kind, workdir, keys, key, settings.attempts)
            try:
                await app.start()
                await run_step(column, key_cell, lambda: scenario(app, column, settings))
            except Hang as exc:
                column.cells.setdefault(key_cell, "fails")
                column.notes.append(f"{key_cell}: the app did not start: {short(exc)}")
            finally:
                await app.stop()
            column.notes.extend(app.notes)
            if app.open_failures:
                column.notes.append(f"{key_cell}: {len(app.open_failures)} session(s) failed to open and were "
                                    f"retried: {'; '.join(dict.fromkeys(app.open_failures))}")
            if not app.broken or attempt == settings.attempts:
                break
            column.cells, column.numbers = cells, numbers
            column.notes = notes + [f"{key_cell}: attempt {attempt} lost {app.broken} session(s) to a dropped "
                                    f"connection ({'; '.join(column.notes[len(notes):])[:200]}); ran it again"]
    return column


def fill_round_trips(columns: list[Column], baseline: list[float] | None) -> None:
    """Median / p99 with ratios: exec against the raw asyncssh echo, PTY against shellsvc."""
    reference = next((c.numbers["pty"] for c in columns if c.label == "shellsvc" and "pty" in c.numbers), None)
    for column in columns:
        if "exec" in column.numbers:
            times = column.numbers["exec"]
            cell = f"{ms(statistics.median(times))} / {ms(pct(times, 0.99))}"
            if baseline:
                cell += f" ({statistics.median(times) / statistics.median(baseline):.2f}× raw echo)"
            column.cells["exec"] = cell
        if "pty" in column.numbers:
            times = column.numbers["pty"]
            cell = f"{ms(statistics.median(times))} / {ms(pct(times, 0.99))}"
            if reference and column.label != "shellsvc":
                cell += f" ({statistics.median(times) / statistics.median(reference):.2f}× shellsvc)"
            column.cells["pty"] = cell


def fill_lag_ratios(columns: list[Column]) -> None:
    reference = next((c for c in columns if c.label == "shellsvc"), None)
    if reference is None:
        return
    for column in columns:
        if column is reference:
            continue
        for key in ("lag1", "lag4"):
            mine, theirs = column.numbers.get(key), reference.numbers.get(key)
            if mine and theirs and theirs[1] > 0:
                ratio = mine[1] / theirs[1]
                column.cells[key] += f" ({ratio:.0f}× shellsvc p99)" if ratio >= 10 else f" ({ratio:.1f}× shellsvc p99)"


def table(columns: list[Column], baseline_cell: str) -> str:
    header = ["", *(column.label for column in columns)]
    rows = [header, ["---"] * len(header)]
    rows.append(["raw asyncssh exec echo, same run (median / p99 ms)", baseline_cell] + [""] * (len(columns) - 1))
    for key, title in ROWS:
        rows.append([title, *(column.cells.get(key, "—") for column in columns)])
    return "\n".join("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows)


PEERS = {
    "shellsvc": ("shellsvc", None),
    "ptpython": ("ptpython run_async", "ptpython"),
    "ptpython-stock": ("ptpython stock contrib", "ptpython"),
    "aiomonitor": ("aiomonitor", "aiomonitor"),
}


def installed(module: str | None) -> str | None:
    """The installed version of a peer, or None."""
    if module is None:
        return "here"
    from importlib import metadata

    try:
        return metadata.version(module)
    except metadata.PackageNotFoundError:
        return None


async def main(args: argparse.Namespace) -> int:
    settings = (Settings(round_trips=20, window=0.5, ctrl_c_wait=2.5, step_timeout=5, attempts=1) if args.quick else
                Settings(round_trips=args.round_trips, window=args.window, ctrl_c_wait=3.0, step_timeout=6, attempts=2))
    kinds = [kind.strip() for kind in args.peers.split(",") if kind.strip()]
    unknown = [kind for kind in kinds if kind not in PEERS]
    if unknown:
        print(f"compare_peers: unknown peer(s) {', '.join(unknown)}; choose from {', '.join(PEERS)}", file=sys.stderr)
        return 2
    versions = {kind: installed(PEERS[kind][1]) for kind in kinds}
    import prompt_toolkit

    peers = {PEERS[kind][1]: version for kind, version in versions.items() if PEERS[kind][1] and version}
    print(f"compare_peers: python {sys.version.split()[0]}, asyncssh {asyncssh.__version__}, prompt_toolkit "
          f"{prompt_toolkit.__version__}" + "".join(f", {name} {version}" for name, version in peers.items())
          + f"; {os.cpu_count()} CPUs, load avg {os.getloadavg()[0]:.1f}; {settings.round_trips} round trips, "
          f"{settings.window:g} s busy window", flush=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="compare-peers-") as tmp:
        workdir = Path(tmp)
        key = asyncssh.generate_private_key("ssh-ed25519")
        keys = workdir / "authorized_keys"
        keys.write_bytes(key.export_public_key())
        raw = App("raw", workdir, keys, key)
        await raw.start()
        try:
            baseline = await exec_round_trip(raw, settings)
        finally:
            await raw.stop()
        baseline_cell = (f"{ms(statistics.median(baseline))} / {ms(pct(baseline, 0.99))}"
                         if isinstance(baseline, list) else baseline)
        columns = []
        for kind in kinds:
            label = PEERS[kind][0]
            if versions[kind] is None:
                columns.append(Column(label, {"pty": f"not installed (pip install {PEERS[kind][1]})"}))
                continue
            print(f"  measuring {label} ...", end="", flush=True)
            began = time.perf_counter()
            columns.append(await measure(kind, label, workdir, keys, key, settings))
            print(f" {time.perf_counter() - began:.0f} s", flush=True)
    fill_round_trips(columns, baseline if isinstance(baseline, list) else None)
    fill_lag_ratios(columns)
    print()
    print(table(columns, baseline_cell))
    notes = [f"- {column.label}: {note}" for column in columns for note in column.notes]
    if notes:
        print("\nNotes:\n" + "\n".join(notes))
    print(f"\n(total {time.perf_counter() - started:.0f} s; machine load avg {os.getloadavg()[0]:.1f})")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="20 round trips, 0.5 s busy windows: a smoke run")
    parser.add_argument("--peers", default=",".join(PEERS), help="comma-separated subset of: " + ", ".join(PEERS))
    parser.add_argument("--round-trips", type=int, default=200)
    parser.add_argument("--window", type=float, default=2.0, help="seconds each busy session spins the CPU")
    parser.add_argument("--serve", choices=sorted(STARTERS), help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--keys", type=Path, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.serve:
        die_with_parent()
        asyncio.run(serve(arguments.serve, arguments.workdir, arguments.keys))
    else:
        sys.exit(asyncio.run(main(arguments)))
