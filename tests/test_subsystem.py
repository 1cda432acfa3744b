"""The ``shellsvc`` SSH subsystem against a real service on 127.0.0.1, port 0.

Clients are asyncssh: raw frames where the wire format itself is under test, and the
project's own :class:`clients.RemoteShell` elsewhere (it speaks the same protocol module).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from clients import RemoteError, RemoteShell
from shellsvc.protocol import MAX_FRAME, SUBSYSTEM, VERSION, FrameDecoder, ProtocolError, encode
from shellsvc.runtime import Runtime

from test_server_helpers import FAST_HASH, PASSWORD, config, connect, events, running, wait_until

USERS = {"alice": {"role": "admin", "password_hash": FAST_HASH},
         "olga": {"role": "operator", "password_hash": FAST_HASH}}


class Frames:
    """Raw protocol over one subsystem channel: send dicts, read decoded frames."""

    def __init__(self, process: Any) -> None:
        self.process = process
        self.decoder = FrameDecoder()
        self.frames: list[dict[str, Any]] = []

    def send(self, message: dict[str, Any]) -> None:
        self.process.stdin.write(encode(message))

    async def until(self, predicate: Any, timeout: float = 20) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for frame in self.frames:
                if predicate(frame):
                    self.frames.remove(frame)
                    return frame
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"no matching frame in {timeout}s; have {self.frames}")
            chunk = await asyncio.wait_for(self.process.stdout.read(65536), remaining)
            if not chunk:
                raise AssertionError(f"channel closed; frames so far {self.frames}")
            self.frames.extend(self.decoder.feed(chunk))

    async def reply(self, request_id: int) -> dict[str, Any]:
        return await self.until(lambda f: f["type"] == "reply" and f.get("id") == request_id)


async def open_shell(conn: Any) -> RemoteShell:
    return await RemoteShell.open(conn)


def collect() -> tuple[list[tuple[str, str]], Any]:
    seen: list[tuple[str, str]] = []
    return seen, lambda stream, text: seen.append((stream, text))


# -- framing ------------------------------------------------------------------------------------------

def test_frame_decoder_splits_joins_and_limits() -> None:
    decoder = FrameDecoder(max_frame=64)
    assert decoder.feed('{"type":"a","x":"line\\nbreak"}\n{"type":') == [{"type": "a", "x": "line\nbreak"}]
    assert decoder.pending > 0
    assert decoder.feed('"b"}\n\n') == [{"type": "b"}]
    assert json.loads(encode({"type": "t", "data": "é\n"})) == {"type": "t", "data": "é\n"}
    assert encode({"type": "t", "data": "é\n"}).count("\n") == 1 and encode({"type": "t"}).isascii()
    for bad in ('[1]\n', 'nope\n', '{"no_type": 1}\n', '{"type": 3}\n'):
        with pytest.raises(ProtocolError):
            FrameDecoder().feed(bad)
    with pytest.raises(ProtocolError, match="exceeds the limit"):
        FrameDecoder(max_frame=64).feed("x" * 65)  # no newline: refused before it grows without bound


# -- handshake and errors ---------------------------------------------------------------------------

async def test_hello_then_requests_and_protocol_errors(tmp_path: Path) -> None:
    async with running(config(tmp_path, USERS)) as service:
        async with connect(service, "alice", password=PASSWORD) as conn:
            process = await conn.create_process(subsystem=SUBSYSTEM)
            frames = Frames(process)
            hello = await frames.until(lambda f: f["type"] == "hello")
            assert hello["version"] == VERSION and hello["user"] == "alice" and hello["role"] == "admin"
            assert "eval" in hello["requests"] and hello["topics"] == ["runtime", "patches"]
            frames.send({"type": "ping", "id": 1})  # before hello: refused, channel closed
            refused = await frames.reply(1)
            assert refused["error"]["code"] == "hello_required"
            assert (await asyncio.wait_for(process.wait(), 20)).exit_status == 2

            process = await conn.create_process(subsystem=SUBSYSTEM)
            frames = Frames(process)
            frames.send({"type": "hello", "version": VERSION})
            frames.send({"type": "frobnicate", "id": 2})
            frames.send({"type": "eval", "id": 3})
            frames.send({"type": "eval", "id": "4", "code": "1"})
            frames.send({"type": "complete", "id": 5, "text": 7})
            frames.send({"type": "ping", "id": 6})
            assert (await frames.reply(2))["error"]["code"] == "unknown_request"
            assert (await frames.reply(3))["error"] == {"code": "bad_request", "message": "eval: missing field 'code'"}
            assert (await frames.until(lambda f: f["type"] == "reply" and f["id"] is None))["error"]["code"] == "bad_request"
            assert "must be str" in (await frames.reply(5))["error"]["message"]
            assert (await frames.reply(6))["ok"] is True
            process.stdin.write("this is not json\n")
            fatal = await frames.until(lambda f: f["type"] == "reply" and f["id"] is None)
            assert fatal["error"]["code"] == "protocol"
            assert (await asyncio.wait_for(process.wait(), 20)).exit_status == 2

            process = await conn.create_process(subsystem=SUBSYSTEM)
            frames = Frames(process)
            frames.send({"type": "hello", "version": VERSION + 1})
            mismatch = await frames.until(lambda f: f["type"] == "reply")
            assert mismatch["error"]["code"] == "version" and str(VERSION) in mismatch["error"]["message"]
        errors = events(service, "subsystem_error")
        assert [e["code"] for e in errors] == ["protocol", "version"]


async def test_oversized_frame_closes_the_channel(tmp_path: Path) -> None:
    async with running(config(tmp_path, USERS)) as service:
        async with connect(service, "alice", password=PASSWORD) as conn:
            process = await conn.create_process(subsystem=SUBSYSTEM)
            frames = Frames(process)
            frames.send({"type": "hello", "version": VERSION})
            chunk = "x" * (1024 * 1024)
            for _ in range(MAX_FRAME // len(chunk) + 1):
                process.stdin.write(chunk)
            fatal = await frames.until(lambda f: f["type"] == "reply" and f["id"] is None)
            assert fatal["error"]["code"] == "protocol" and "limit" in fatal["error"]["message"]


# -- eval -------------------------------------------------------------------------------------------------

async def test_eval_streams_output_and_reports_results(tmp_path: Path) -> None:
    async with running(config(tmp_path, USERS), namespace={"answer": 42}) as service:
        async with connect(service, "alice", password=PASSWORD) as conn:
            shell = await open_shell(conn)
            seen, output = collect()
            result = await shell.eval("import sys\nprint('out')\nprint('err', file=sys.stderr)\nanswer", output=output)
            assert (result.status, result.exit_code, result.value) == ("ok", 0, "42")
            assert ("".join(t for s, t in seen if s == "stdout"), "".join(t for s, t in seen if s == "stderr")) == \
                ("out\n42\n", "err\n")
            error = await shell.eval("{}['missing']", output=output)
            assert (error.status, error.exit_code) == ("error", 1) and "KeyError: 'missing'" in (error.error or "")
            assert (await shell.eval("raise SystemExit(7)")).exit_code == 7
            assert (await shell.eval("answer + 1")).value == "43"  # a fresh session after SystemExit, same namespace
            timeout = await shell.eval("import time\nwhile True: time.sleep(0.01)", timeout=0.3)
            assert timeout.status == "timeout"
            # output is streamed while the code still runs, not only at the end
            seen.clear()
            task = asyncio.ensure_future(shell.eval("import time\nprint('early', flush=True)\ntime.sleep(30)",
                                                    output=output))
            await wait_until(lambda: "".join(t for _, t in seen) == "early\n", what="streamed output")
            assert not task.done()
            assert await shell.interrupt() is True
            assert (await task).status == "interrupted"
        commands = events(service, "command")
        assert commands[0]["text"].startswith("import sys") and commands[0]["session"].startswith("alice/")
        requests = events(service, "subsystem_request")
        assert [r["request"] for r in requests if r["request"] == "eval"] == ["eval"] * 6


async def test_interrupt_stops_a_busy_loop_and_complete_answers_meanwhile(tmp_path: Path) -> None:
    async with running(config(tmp_path, USERS), namespace={"needle_in_haystack": 1}) as service:
        async with connect(service, "alice", password=PASSWORD) as conn:
            shell = await open_shell(conn)
            busy = asyncio.ensure_future(shell.eval("while True: pass"))
            await wait_until(lambda: any(s.busy for s in service.engine.sessions()), what="the loop to run")
            # the server answers other requests while the eval spins
            completions = await asyncio.wait_for(shell.complete("needle_in"), 10)
            assert [c["text"] for c in completions] == ["needle_in_haystack"]
            started = time.monotonic()
            assert await shell.interrupt() is True
            result = await asyncio.wait_for(busy, 10)
            assert result.status == "interrupted" and "KeyboardInterrupt" in (result.error or "")
            assert time.monotonic() - started < 5
            assert (await shell.eval("1 + 1")).value == "2"
            assert await shell.interrupt() is False  # nothing runs now


async def test_evals_run_in_order_and_a_queued_one_can_be_interrupted(tmp_path: Path) -> None:
    async with running(config(tmp_path, USERS)) as service:
        async with connect(service, "alice", password=PASSWORD) as conn:
            process = await conn.create_process(subsystem=SUBSYSTEM)
            frames = Frames(process)
            frames.send({"type": "hello", "version": VERSION})
            frames.send({"type": "eval", "id": 1, "code": "import time\norder = ['first']\ntime.sleep(1)"})
            frames.send({"type": "eval", "id": 2, "code": "order.append('second')"})
            frames.send({"type": "eval", "id": 3, "code": "order.append('third')"})
            frames.send({"type": "interrupt", "id": 4, "target": 2})  # still queued behind 1
            assert (await frames.reply(4))["interrupted"] == 2
            assert (await frames.reply(2))["status"] == "interrupted"
            assert (await frames.reply(1))["status"] == "ok"
            assert (await frames.reply(3))["status"] == "ok"
            frames.send({"type": "eval", "id": 5, "code": "order"})
            assert (await frames.reply(5))["value"] == "['first', 'third']"
            frames.send({"type": "eval", "id": 5, "code": "1"})
            frames.send({"type": "eval", "id": 5, "code": "2"})  # same id while the first is in flight
            replies = [await frames.reply(5), await frames.reply(5)]
            assert sorted(r["ok"] for r in replies) == [False, True]


async def test_completion_round_trip_never_runs_properties(tmp_path: Path) -> None:
    class Account:
        calls = 0

        @property
        def balance(self) -> int:
            Account.calls += 1
            return 0

        def deposit(self) -> None: ...

    async with running(config(tmp_path, USERS), namespace={"account": Account(), "accounts": {"alice": 1}}) as service:
        async with connect(service, "alice", password=PASSWORD) as conn:
            shell = await open_shell(conn)
            assert [c["text"] for c in await shell.complete("account.dep")] == ["deposit"]
            assert [c["text"] for c in await shell.complete("accounts['al")] == ["alice']"]
            middle = await shell.complete("x = accou + 1", cursor=len("x = accou"))
            assert {c["text"] for c in middle} == {"account", "accounts"} and all(c["start"] == -5 for c in middle)
            assert await shell.complete("account.balance.") == []
            assert Account.calls == 0


async def test_input_is_answered_by_the_client(tmp_path: Path) -> None:
    async with running(config(tmp_path, USERS)) as service:
        async with connect(service, "alice", password=PASSWORD) as conn:
            shell = await open_shell(conn)
            prompts: list[str] = []

            async def answer(prompt: str) -> str | None:
                prompts.append(prompt)
                return "world" if len(prompts) == 1 else None

            seen, output = collect()
            result = await shell.eval("name = input('name? ')\nprint('hello', name)\ninput()", output=output,
                                      on_input=answer)
            # input() writes its prompt to stdout itself, then reads a line: the client shows it
            assert prompts == ["", ""]
            text = "".join(t for _, t in seen)
            assert text.startswith("name? hello world\n") and "EOFError" in text
            assert result.status == "error" and "EOFError" in (result.error or "")


async def test_background_output_is_pushed_without_a_request(tmp_path: Path) -> None:
    async with running(config(tmp_path, USERS)) as service:
        async with connect(service, "alice", password=PASSWORD) as conn:
            shell = await open_shell(conn)
            pushed, shell.on_output = collect()
            result = await shell.eval("import threading\nthreading.Timer(0.3, lambda: print('later')).start()")
            assert result.status == "ok" and pushed == []
            await wait_until(lambda: "".join(t for _, t in pushed) == "later\n", what="the timer's output")


# -- events -----------------------------------------------------------------------------------------------

PLUGIN = '''
from shellsvc import Plugin

class Ticker(Plugin):
    """Ticks."""
    name = "ticker"
    version = "{version}"
'''


async def test_subscribed_clients_receive_runtime_and_patch_events(tmp_path: Path) -> None:
    source = tmp_path / "ticker.py"
    source.write_text(PLUGIN.format(version="1"))
    async with Runtime() as runtime:
        await runtime.load(source)
        async with running(config(tmp_path, USERS), runtime=runtime) as service:
            async with connect(service, "alice", password=PASSWORD) as conn, \
                    connect(service, "olga", password=PASSWORD) as operator_conn:
                shell = await open_shell(conn)
                operator = await open_shell(operator_conn)
                got: list[tuple[str, dict[str, Any]]] = []
                operator_got: list[tuple[str, dict[str, Any]]] = []
                shell.on_event = lambda topic, event: got.append((topic, event))
                operator.on_event = lambda topic, event: operator_got.append((topic, event))
                assert await shell.subscribe(["runtime", "patches"]) == ["patches", "runtime"]
                assert await operator.subscribe(["runtime"]) == ["runtime"]
                with pytest.raises(RemoteError, match="unknown topic"):
                    await shell.subscribe(["gossip"])
                source.write_text(PLUGIN.format(version="2"))
                await runtime.reload("ticker")
                await wait_until(lambda: any(e["kind"] == "reloaded" for _, e in got), what="the reload event")
                await wait_until(lambda: operator_got, what="the operator's copy")
                topic, event = next((t, e) for t, e in got if e["kind"] == "reloaded")
                assert topic == "runtime" and event["plugin"] == "ticker" and event["generation"] == 2
                plugins = await shell.plugins()
                assert [(p["name"], p["state"], p["version"]) for p in plugins] == [("ticker", "started", "2")]
                await shell.request("unsubscribe", topics=["runtime", "patches"])
                source.write_text(PLUGIN.format(version="3"))  # a real change: an unchanged file is not reloaded
                await runtime.reload("ticker")
                # The operator, still subscribed, gets this reload; a round trip on alice's channel
                # then passes anything the server pushed to her before answering.
                await wait_until(lambda: sum(e["kind"] == "reloaded" for _, e in operator_got) == 2,
                                 what="the operator's copy of the second reload")
                assert [(p["name"], p["version"]) for p in await shell.plugins()] == [("ticker", "3")]
                assert sum(e["kind"] == "reloaded" for _, e in got) == 1


# -- roles and audit -------------------------------------------------------------------------------------

async def test_operator_gets_console_commands_only(tmp_path: Path) -> None:
    marker = tmp_path / "operator-ran-python"
    async with running(config(tmp_path, USERS), namespace={"secret": "s3"}) as service:
        async with connect(service, "olga", password=PASSWORD) as conn:
            shell = await open_shell(conn)
            assert shell.role == "operator" and "eval" not in shell.hello["requests"]
            for attempt in ({"code": f"open({str(marker)!r}, 'w')"},):
                with pytest.raises(RemoteError) as refused:
                    await shell.request("eval", **attempt)
                assert refused.value.code == "forbidden" and "command" in refused.value.message
            for kind, fields in (("apply_patch", {"name": "fix.py"}), ("patches", {}), ("plugins", {}),
                                 ("rollback_patch", {"ids": [1]})):
                with pytest.raises(RemoteError, match="not permitted for role operator"):
                    await shell.request(kind, **fields)
            seen, output = collect()
            reply = await shell.command("status", output=output)
            assert reply["exit_status"] == 0 and "uptime" in "".join(t for _, t in seen)
            denied = await shell.command("secret", output=output)
            assert denied["denied"] is True and denied["exit_status"] != 0
            assert [c["text"] for c in await shell.complete("stat")] == ["status"]
            assert await shell.complete("secr") == []
        assert not marker.exists()
        requests = events(service, "subsystem_request")
        refusals = [r for r in requests if r.get("denied")]
        assert [r["request"] for r in refusals] == ["eval", "apply_patch", "patches", "plugins", "rollback_patch"]
        assert all(r["reason"] == "forbidden" and r["user"] == "olga" for r in refusals)
        console = events(service, "console_command")
        assert [(c["text"], c["denied"]) for c in console] == [("status", False), ("secret", True)]


async def test_every_request_is_audited_before_it_runs(tmp_path: Path) -> None:
    async with running(config(tmp_path, USERS)) as service:
        async with connect(service, "alice", password=PASSWORD) as conn:
            shell = await open_shell(conn)
            await shell.request("ping")
            await shell.complete("pri")
            await shell.eval("1")
            await shell.command("status")
            await shell.subscribe(["patches"])
            await shell.patches()
            audit_path = service.config.server.audit_log_path
            lines = audit_path.read_text().splitlines()
            before_command = next(i for i, line in enumerate(lines) if '"event": "command"' in line)
            eval_request = next(i for i, line in enumerate(lines)
                                if '"subsystem_request"' in line and '"request": "eval"' in line)
            assert eval_request < before_command
        requests = events(service, "subsystem_request")
        assert [r["request"] for r in requests] == ["hello", "ping", "complete", "eval", "command", "subscribe", "patches"]
        assert all(r["user"] == "alice" and r["role"] == "admin" and r["session"] for r in requests)
        opened = events(service, "session_open")
        assert opened[-1]["kind"] == "subsystem"
        closed = await wait_until(lambda: events(service, "session_close"), what="session_close")
        assert closed[-1]["session"] == opened[-1]["session"]


async def test_a_forced_command_key_gets_its_command_not_the_subsystem(tmp_path: Path) -> None:
    from test_server_helpers import authorized_keys, make_key, public_line

    _, key = make_key(tmp_path, "robot")
    keys = authorized_keys(tmp_path, "robot", f'command="print(6 * 7)" {public_line(key)}')
    users = {"robot": {"role": "admin", "authorized_keys": str(keys)}}
    async with running(config(tmp_path, users)) as service:
        async with connect(service, "robot", client_keys=[key]) as conn:
            process = await conn.create_process(subsystem=SUBSYSTEM)
            result = await asyncio.wait_for(process.wait(), 20)
            assert result.stdout == "42\n"
        assert events(service, "session_open")[0]["kind"] == "exec"
