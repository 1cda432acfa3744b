"""Patch events reaching connected clients: a real service on 127.0.0.1, port 0, asyncssh clients."""

from __future__ import annotations

import importlib
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from clients import RemoteShell
from test_server_helpers import FAST_HASH, PASSWORD, config, connect, running, wait_until

USERS = {"alice": {"role": "admin", "password_hash": FAST_HASH},
         "bob": {"role": "admin", "password_hash": FAST_HASH},
         "olga": {"role": "operator", "password_hash": FAST_HASH}}


@pytest.fixture
def pricing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    root = tmp_path / "app"
    root.mkdir()
    (root / "push_pricing.py").write_text(textwrap.dedent('''
        def discount(total):
            return 0
        '''))
    monkeypatch.syspath_prepend(str(root))
    sys.modules.pop("push_pricing", None)
    importlib.invalidate_caches()
    yield importlib.import_module("push_pricing")
    sys.modules.pop("push_pricing", None)


async def test_patches_made_in_an_exec_session_are_pushed_to_subscribed_clients(tmp_path: Path, pricing: Any) -> None:
    """bob patches from ``ssh host 'patch(...)'``; alice's client, subscribed to ``patches``, is told."""
    async with running(config(tmp_path, USERS)) as service:
        async with connect(service, "alice", password=PASSWORD) as alice_conn, \
                connect(service, "bob", password=PASSWORD) as bob_conn:
            shell = await RemoteShell.open(alice_conn)
            pushed: list[tuple[str, dict[str, Any]]] = []
            shell.on_event = lambda topic, event: pushed.append((topic, event))
            assert await shell.subscribe(["patches"]) == ["patches"]

            applied = await bob_conn.run("record = patch('push_pricing.discount', 'return total // 10'); print(record.id)")
            assert applied.exit_status == 0, applied.stderr
            patch_id = int(applied.stdout.strip())
            assert pricing.discount(100) == 10  # the service's process really runs the new code
            topic, event = await wait_until(lambda: next(iter(pushed), None), what="the 'applied' push")
            assert topic == "patches"
            assert (event["kind"], event["ids"], event["targets"], event["user"]) == (
                "applied", [patch_id], ["push_pricing.discount"], "bob")
            assert "applied #%d (push_pricing.discount) by bob" % patch_id == event["text"]

            failed = await bob_conn.run("patch('push_pricing.discount', 'return 1', health_check=lambda: False)")
            assert failed.exit_status == 1 and "PatchHealthError" in failed.stderr
            await wait_until(lambda: len(pushed) == 2, what="the health-check push")
            assert pushed[1][1]["kind"] == "health_check_failed" and "returned False" in pushed[1][1]["reason"]

            # The same manager behind the console command: one event per change, never two.
            rolled = await bob_conn.run(f"rollback({patch_id})")
            assert rolled.exit_status == 0, rolled.stderr
            await wait_until(lambda: len(pushed) == 3, what="the rollback push")
            assert [(e["kind"], e["ids"], e["user"]) for _, e in pushed[2:]] == [("rolled_back", [patch_id], "bob")]
            assert pricing.discount(100) == 0

            await shell.request("unsubscribe", topics=["patches"])
            again = await bob_conn.run("patch('push_pricing.discount', 'return 5')")
            assert again.exit_status == 0, again.stderr
            await shell.patches()  # a round trip: a push sent before it would have arrived by now
            assert len(pushed) == 3


async def test_direct_hotswap_in_a_session_is_journaled_as_the_ssh_user(tmp_path: Path, pricing: Any) -> None:
    async with running(config(tmp_path, USERS)) as service:
        async with connect(service, "bob", password=PASSWORD) as conn:
            result = await conn.run("import shellsvc.patching as p; print(p.hotswap('push_pricing.discount', 'return 3').user)")
            assert result.exit_status == 0, result.stderr
            assert result.stdout.strip() == "bob"
