"""SSH service: exec requests and scripts on stdin, with the asyncssh client on port 0."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncssh

from test_server_helpers import FAST_HASH, PASSWORD, config, connect, events, running, wait_until

USERS = {"alice": {"role": "admin", "password_hash": FAST_HASH},
         "bob": {"role": "admin", "password_hash": FAST_HASH},
         "olga": {"role": "operator", "password_hash": FAST_HASH}}


async def test_exec_output_streams_and_exit_codes(tmp_path: Path) -> None:
    async with running(config(tmp_path, USERS), namespace={"answer": 42}) as service:
        async with connect(service, "alice", password=PASSWORD) as conn:
            ok = await conn.run("print('out'); import sys; print('err', file=sys.stderr); answer")
            assert (ok.stdout, ok.stderr, ok.exit_status) == ("out\n42\n", "err\n", 0)
            error = await conn.run("{}['missing']")
            assert error.exit_status == 1 and error.stdout == ""
            assert "KeyError: 'missing'" in error.stderr and "Traceback" in error.stderr
            assert (await conn.run("raise SystemExit(3)")).exit_status == 3
            assert (await conn.run("exit(5)")).exit_status == 5
            assert (await conn.run("import sys; sys.exit()")).exit_status == 0
            syntax = await conn.run("def (")
            assert syntax.exit_status == 1 and "SyntaxError" in syntax.stderr
        results = events(service, "command_result")
        assert [(r["status"], r["exit_code"]) for r in results] == [
            ("ok", 0), ("error", 1), ("exit", 3), ("exit", 5), ("exit", 0), ("error", 1)]
        assert all(r["duration"] >= 0 for r in results)


async def test_script_on_stdin(tmp_path: Path) -> None:
    script = "total = 0\nfor i in range(5):\n    total += i\n\nprint('total', total)\nraise SystemExit(total)\n"
    async with running(config(tmp_path, USERS)) as service:
        async with connect(service, "alice", password=PASSWORD) as conn:
            result = await conn.run(input=script)  # shell request without a PTY
            assert (result.stdout, result.exit_status) == ("total 10\n", 10)
            empty_command = await conn.run("", input="print('via empty exec')\n")
            assert empty_command.stdout == "via empty exec\n"
        opened = events(service, "session_open")
        assert [o["kind"] for o in opened] == ["script", "script"]
        assert events(service, "command")[0]["text"] == script


async def test_input_reads_the_exec_channel_stdin(tmp_path: Path) -> None:
    async with running(config(tmp_path, USERS)) as service:
        async with connect(service, "alice", password=PASSWORD) as conn:
            result = await conn.run("name = input('name? '); print('hello', name)", input="world\n")
            assert result.stdout == "name? hello world\n"
            process = await conn.create_process("input()")
            process.stdin.write_eof()
            eof = await process.wait(timeout=20)
            assert eof.exit_status == 1 and "EOFError" in eof.stderr


async def test_namespace_persists_per_user_and_is_not_shared(tmp_path: Path) -> None:
    async with running(config(tmp_path, USERS)) as service:
        async with connect(service, "alice", password=PASSWORD) as alice, \
                connect(service, "bob", password=PASSWORD) as bob:
            await alice.run("secret = 'alice-only'")
            await bob.run("secret = 'bob-only'")
            assert (await alice.run("secret")).stdout == "'alice-only'\n"
            assert (await bob.run("secret")).stdout == "'bob-only'\n"
        async with connect(service, "alice", password=PASSWORD) as again:
            assert (await again.run("secret")).stdout == "'alice-only'\n"


async def test_operator_gets_the_console_by_default_never_python(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    async with running(config(tmp_path, USERS)) as service:
        async with connect(service, "olga", password=PASSWORD) as conn:
            result = await conn.run(f"open({str(marker)!r}, 'w').write('x')")
            assert result.exit_status == 2 and result.stdout == ""
            assert result.stderr.startswith("error: unexpected '('") and "not Python" in result.stderr
            script = await conn.run(input=f"status\nopen({str(marker)!r}, 'w')\n")
            assert script.exit_status == 2 and script.stdout.startswith("uptime")
            listed = await conn.run("help")
            assert listed.exit_status == 0 and "plugins reload NAME" in listed.stdout
            assert "audit tail" not in listed.stdout  # admins only
        assert not marker.exists()
        denied = [e for e in events(service, "console_command") if e["denied"]]
        assert [e["reason"] for e in denied] == ["bad input", "bad input"]
        assert not events(service, "command")  # no Python command was ever started


async def test_disconnect_cancels_the_running_command(tmp_path: Path) -> None:
    async with running(config(tmp_path, USERS)) as service:
        async with connect(service, "alice", password=PASSWORD) as conn:
            process = await conn.create_process("started = True\nwhile True: pass")
            # busy also means "queued": wait until the code really runs
            await wait_until(lambda: service.engine.namespaces.get("alice").get("started"), what="command running")
        await wait_until(lambda: events(service, "session_close"), what="session closed")
        assert events(service, "session_close")[0]["reason"] == "disconnected"
        assert events(service, "command_result")[0]["status"] == "cancelled"
        await wait_until(lambda: not service.engine.sessions(), what="engine session freed")
        async with connect(service, "alice", password=PASSWORD) as conn:
            assert (await conn.run("started")).stdout == "True\n"  # the namespace stays
        del process


async def test_interrupt_signal_stops_a_command(tmp_path: Path) -> None:
    async with running(config(tmp_path, USERS)) as service:
        async with connect(service, "alice", password=PASSWORD) as conn:
            process = await conn.create_process("print('looping', flush=True)\nwhile True: pass")
            assert await asyncio.wait_for(process.stdout.readline(), 20) == "looping\n"
            process.send_signal("INT")
            result = await process.wait(timeout=20)
            assert result.exit_status == 1 and "KeyboardInterrupt" in result.stderr
        assert events(service, "command_result")[0]["status"] == "interrupted"


async def test_large_output_is_delivered_completely(tmp_path: Path) -> None:
    async with running(config(tmp_path, USERS)) as service:
        async with connect(service, "alice", password=PASSWORD) as conn:
            result = await conn.run("for i in range(20000): print('%06d' % i, 'x' * 90)")
        lines = result.stdout.splitlines()
        assert len(lines) == 20000 and lines[-1].startswith("019999 ")


async def test_control_characters_are_escaped_in_the_audit_log(tmp_path: Path) -> None:
    text = "'\x1b[31mred\x1b[0m\x07\x7f\u202e'"
    async with running(config(tmp_path, USERS)) as service:
        async with connect(service, "alice", password=PASSWORD) as conn:
            await conn.run(text)
        raw = service.config.server.audit_log_path.read_bytes()
        assert all(byte == 0x0A or 0x20 <= byte < 0x7F for byte in raw)
        assert events(service, "command")[0]["text"] == text  # escaped, not lost


async def test_the_audit_record_is_written_before_the_command_runs(tmp_path: Path) -> None:
    async with running(config(tmp_path, USERS)) as service:
        log = service.config.server.audit_log_path
        code = f"import json; print(json.loads(open({str(log)!r}).readlines()[-1])['text'][-11:])  # before-me"
        async with connect(service, "alice", password=PASSWORD) as conn:
            result = await conn.run(code)
        assert (result.stdout, result.exit_status) == ("# before-me\n", 0)  # the running code read its own record
        assert [e["status"] for e in events(service, "command_result")] == ["ok"]


async def test_exec_with_pty_translates_newlines(tmp_path: Path) -> None:
    async with running(config(tmp_path, USERS)) as service:
        async with connect(service, "alice", password=PASSWORD) as conn:
            result = await conn.run("print('a'); print('b')", term_type="xterm", request_pty="force")
        assert result.stdout == "a\r\nb\r\n" and result.exit_status == 0


async def test_unauthenticated_channel_cannot_exist(tmp_path: Path) -> None:
    """Nothing before auth: a wrong password never reaches a session."""
    async with running(config(tmp_path, USERS)) as service:
        try:
            async with connect(service, "alice", password="bad", preferred_auth="password") as conn:
                await conn.run("1")
        except asyncssh.PermissionDenied:
            pass
        assert not events(service, "session_open")


async def test_back_to_back_execs_reuse_a_worker_but_not_after_an_interrupt(tmp_path: Path) -> None:
    async with running(config(tmp_path, USERS)) as service:
        async with connect(service, "alice", password=PASSWORD) as conn:
            ident = "import threading; threading.current_thread().name"
            first = (await conn.run(ident)).stdout
            assert (await conn.run(ident)).stdout == first  # thread-bound state survives, no new thread
            process = await conn.create_process("print('spin', flush=True)\nwhile True: pass")
            assert await asyncio.wait_for(process.stdout.readline(), 20) == "spin\n"
            process.send_signal("INT")
            await process.wait(timeout=20)
            assert (await conn.run(ident)).stdout != first  # an interrupted worker is not reused
            assert (await conn.run("raise SystemExit(0)")).exit_status == 0
        async with connect(service, "bob", password=PASSWORD) as bob:
            assert (await bob.run(ident)).stdout != first  # never another user's worker
