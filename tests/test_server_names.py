"""What the service puts in an admin's namespace: patch tools (journalled as the SSH user),
generator tools, ``cmd(...)`` for the console commands, and plugins' shell names kept
current across reloads - all over real SSH (asyncssh client, port 0)."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shellsvc.patching import default_manager
from shellsvc.runtime import Runtime
from shellsvc.server import Service

from test_server_helpers import FAST_HASH, PASSWORD, config, connect, events, mode, running

USERS = {"alice": {"role": "admin", "password_hash": FAST_HASH},
         "bob": {"role": "admin", "password_hash": FAST_HASH},
         "olga": {"role": "operator", "password_hash": FAST_HASH}}

PLUGIN = '''
from shellsvc import Plugin

class Greeter(Plugin):
    """Greets."""
    name = "greeter"
    version = "{version}"

    def greet(self, who="world"):
        """Say hello."""
        return f"hello {{who}} from v{version}"

    commands = [greet]

    def shell_names(self):
        return {{"greet": self.greet, "greeter_version": "{version}"}}
'''

TARGET = """
def price(n):
    return n * 10

def countdown(n):
    while n:
        yield n
        n -= 1
"""


@pytest.fixture
def target_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    source = tmp_path / "names_target.py"
    source.write_text(TARGET)
    monkeypatch.syspath_prepend(str(tmp_path))
    import names_target  # type: ignore[import-not-found]

    yield names_target
    sys.modules.pop("names_target", None)


@contextlib.asynccontextmanager
async def serving_greeter(tmp_path: Path) -> AsyncIterator[tuple[Service, Runtime, Path]]:
    """A service whose runtime has the greeter plugin (version 1) loaded and started."""
    source = tmp_path / "greeter.py"
    source.write_text(PLUGIN.format(version="1"))
    async with Runtime() as runtime:
        await runtime.load(source)
        async with running(config(tmp_path, USERS), runtime=runtime) as service:
            yield service, runtime, source


async def run(conn, code: str) -> str:
    result = await conn.run(code)
    assert result.exit_status == 0, (code, result.stderr)
    return result.stdout


async def test_admin_namespace_has_patch_tools_journalled_as_the_ssh_user(tmp_path: Path, target_module) -> None:
    previous_default = default_manager()
    async with running(config(tmp_path, USERS), namespace={"target": target_module}) as service:
        assert default_manager() is service.patches  # module-level hotswap() goes to the same journal
        async with connect(service, "alice", password=PASSWORD) as alice:
            out = await run(alice, "def cheap(n):\n    return n\nrecord = patch(target.price, cheap)\n"
                                   "print(record.id, record.user, target.price(3))")
            assert out == "1 alice 3\n"
            assert "#1 active" in await run(alice, "print(repr(patches()))")
            for name in ("rollback", "commit_patch", "scoped_patch", "percall", "original",
                         "copy_generator", "save_generator", "load_generator", "cmd"):
                assert await run(alice, f"print(callable({name}))") == "True\n", name
            fork = "it = target.countdown(3); next(it); twin = copy_generator(it); print(next(twin), next(it))"
            assert await run(alice, fork) == "2 2\n"
        async with connect(service, "olga", password=PASSWORD) as olga:
            listing = await olga.run("patches list")
            assert "#1 active" in listing.stdout and "by alice" in listing.stdout
            undone = await olga.run("patches rollback 1")
            assert undone.exit_status == 0 and undone.stdout.startswith("rolled back #1")
        assert target_module.price(3) == 30
        journal = service.config.server.state_dir / "patches.jsonl"
        assert mode(journal) == 0o600
        ops = [(e["op"], e["user"]) for e in map(json.loads, journal.read_text().splitlines())]
        assert ops == [("apply", "alice"), ("rollback", "olga")]
    assert default_manager() is previous_default  # restored when the service stops


async def test_admins_call_console_commands_from_python(tmp_path: Path) -> None:
    async with serving_greeter(tmp_path) as (service, _, _):
        async with connect(service, "alice", password=PASSWORD) as alice:
            assert (await run(alice, "print(cmd('status'))")).startswith("uptime ")
            assert await run(alice, "cmd('greeter greet ops')") == "hello ops from v1\n"
            assert "greeter  started" in await run(alice, "print(cmd('plugins list'))")
            assert "audit tail" in await run(alice, "print(cmd('help'))")  # admins see admin commands
            refused = await alice.run("cmd('plugins reload /etc/passwd')")
            assert refused.exit_status == 1 and "CommandError" in refused.stderr
            assert "is not one of: greeter" in refused.stderr
        audited = [(e["user"], e["role"], e["text"], e["denied"]) for e in events(service, "console_command")]
        assert audited[0] == ("alice", "admin", "status", False)
        assert audited[-1] == ("alice", "admin", "plugins reload /etc/passwd", True)


async def test_plugin_shell_names_follow_reload_and_unload(tmp_path: Path) -> None:
    async with serving_greeter(tmp_path) as (service, runtime, source):
        async with connect(service, "alice", password=PASSWORD) as alice, \
                connect(service, "bob", password=PASSWORD) as bob:
            assert await run(alice, "greet('alice')") == "'hello alice from v1'\n"
            await run(bob, "greeter_version = 'mine'")  # bob rebinds one of the offered names
            source.write_text(PLUGIN.format(version="2"))
            await runtime.reload("greeter")
            assert await run(alice, "greet('alice'), greeter_version") == "('hello alice from v2', '2')\n"
            assert await run(bob, "greet('bob'), greeter_version") == "('hello bob from v2', 'mine')\n"
            await runtime.unload("greeter")
            gone = await alice.run("greet")
            assert gone.exit_status == 1 and "NameError" in gone.stderr
            assert await run(bob, "greeter_version") == "'mine'\n"


async def test_reloading_a_plugin_supersedes_the_patches_of_its_old_code(tmp_path: Path) -> None:
    async with serving_greeter(tmp_path) as (service, runtime, source):
        async with connect(service, "alice", password=PASSWORD) as alice:
            loud = "def greet(self, who='world'):\n    return 'HELLO ' + who\n"
            assert await run(alice, f"patch(type(plugins.greeter).greet, {loud!r}).id") == "1\n"
            assert await run(alice, "greet('ops')") == "'HELLO ops'\n"
            source.write_text(PLUGIN.format(version="2"))
            await runtime.reload("greeter")
            assert await run(alice, "greet('ops')") == "'hello ops from v2'\n"  # the new code, unpatched
        async with connect(service, "olga", password=PASSWORD) as olga:
            listing = (await olga.run("patches list")).stdout
        assert "#1 superseded" in listing
        assert service.patches.patches(active_only=True) == []  # nothing to re-apply after a restart
        superseded = events(service, "patches_superseded")
        assert [(e["plugin"], e["ids"], e["reason"]) for e in superseded] == [("greeter", [1], "reloaded")]
