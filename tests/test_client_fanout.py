"""Fan-out: ``shellsvc-client --hosts ...`` across three local servers, canary first.

Code runs against three services in this process (each has its own namespaces); patch
application uses three server *processes*, since a patch changes the process it is
applied in - like a real fleet.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import textwrap
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path


from shellsvc.server import Service

from test_client import CLIENT
from test_server_helpers import authorized_keys, communicate, config, events, make_key, public_line, running


async def run_client(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    env = {**os.environ, "HOME": str(tmp_path), "SSH_AUTH_SOCK": ""}
    process = await asyncio.create_subprocess_exec(*CLIENT, *args, stdin=asyncio.subprocess.DEVNULL,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                   env=env)
    out, err = await communicate(process, timeout=120)
    return process.returncode or 0, out.decode(), err.decode()


def fleet_args(key: Path, known_hosts: Path, ports: list[int], *extra: str) -> list[str]:
    hosts = ",".join(f"127.0.0.1:{port}" for port in ports)
    return ["--hosts", hosts, "-l", "alice", "-i", str(key), "--known-hosts", str(known_hosts), *extra]


# -- code on three in-process services ---------------------------------------------------------------

@asynccontextmanager
async def three_services(tmp_path: Path, healthy: list[bool]) -> AsyncIterator[tuple[list[Service], Path, Path]]:
    key_path, key = make_key(tmp_path, "alice")
    keys = authorized_keys(tmp_path, "alice", public_line(key))
    async with AsyncExitStack() as stack:
        services = [await stack.enter_async_context(running(
            config(tmp_path / f"node{i}", {"alice": {"role": "admin", "authorized_keys": str(keys)}}),
            namespace={"healthy": ok, "node": i})) for i, ok in enumerate(healthy)]
        known = tmp_path / "known_hosts"
        known.write_text("".join(s.known_hosts_line() for s in services))
        yield services, key_path, known


CODE = "ran = True\nprint('node', node)\nassert healthy, f'node {node} is unhealthy'"


async def test_failing_canary_leaves_the_other_hosts_untouched(tmp_path: Path) -> None:
    for directory in ("node0", "node1", "node2"):
        (tmp_path / directory).mkdir()
    async with three_services(tmp_path, [False, True, True]) as (services, key, known):
        status, out, err = await run_client(tmp_path, *fleet_args(key, known, [s.port for s in services], "-c", CODE,
                                                                  "--json"))
        assert status == 1, err
        report = json.loads(out)
        assert report["ok"] is False
        assert [h["status"] for h in report["hosts"]] == ["failed", "skipped", "skipped"]
        canary = report["hosts"][0]
        assert canary["port"] == services[0].port and canary["exit_code"] == 1
        assert "node 0 is unhealthy" in canary["output"] and "AssertionError" in canary["output"]
        assert all("canary" in h["detail"] for h in report["hosts"][1:])
        assert services[0].engine.namespaces.get("alice").get("ran") is True
        for service in services[1:]:  # never even contacted
            assert events(service, "connect") == [] and events(service, "command") == []
            assert "ran" not in service.engine.namespaces.get("alice")


async def test_all_healthy_hosts_run_and_the_table_shows_each(tmp_path: Path) -> None:
    for directory in ("node0", "node1", "node2"):
        (tmp_path / directory).mkdir()
    async with three_services(tmp_path, [True, True, True]) as (services, key, known):
        status, out, err = await run_client(tmp_path, *fleet_args(key, known, [s.port for s in services], "-c", CODE))
        assert status == 0, err
        lines = out.splitlines()
        assert lines[0].split() == ["HOST", "STATUS", "EXIT", "TIME", "DETAIL"]
        rows = [line.split() for line in lines[1:]]
        assert [(r[0], r[1], r[2]) for r in rows] == [(f"alice@127.0.0.1:{s.port}", "ok", "0") for s in services]
        assert [" ".join(r[4:]) for r in rows] == ["node 0", "node 1", "node 2"]
        # one failure after the canary stops the hosts not started yet (one at a time here)
        services[1].engine.namespaces.get("alice")["healthy"] = False
        for service in services:
            service.engine.namespaces.get("alice").pop("ran", None)
        status, out, _ = await run_client(tmp_path, *fleet_args(key, known, [s.port for s in services], "-c", CODE,
                                                                "--parallel", "1", "--json"))
        assert status == 1
        assert [h["status"] for h in json.loads(out)["hosts"]] == ["ok", "failed", "skipped"]
        assert "ran" not in services[2].engine.namespaces.get("alice")


async def test_unknown_host_in_the_fleet_is_an_error_not_a_prompt(tmp_path: Path) -> None:
    for directory in ("node0", "node1", "node2"):
        (tmp_path / directory).mkdir()
    async with three_services(tmp_path, [True, True, True]) as (services, key, known):
        known.write_text(services[0].known_hosts_line())
        status, out, _ = await run_client(tmp_path, *fleet_args(key, known, [s.port for s in services], "-c", "1",
                                                                "--json", "--parallel", "1"))
        hosts = json.loads(out)["hosts"]
        assert status == 1 and [h["status"] for h in hosts] == ["ok", "error", "skipped"]
        assert "is not known" in hosts[1]["detail"]


# -- patches on three server processes ---------------------------------------------------------------

SERVER = textwrap.dedent('''
    import asyncio, json, sys
    from shellsvc import Service

    async def main():
        async with Service(config=sys.argv[1]) as service:
            print(json.dumps({"port": service.port, "known_hosts": service.known_hosts_line()}), flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the test closes stdin

    asyncio.run(main())
''')

APP = textwrap.dedent('''
    import os
    HEALTHY = os.environ["FLEET_HEALTHY"] == "1"

    def price():
        return 100
''')

PATCH = textwrap.dedent('''
    """Raise the price."""
    import fleetapp

    PATCHES = {"fleetapp.price": "def price():\\n    return 120\\n"}

    def health_check():
        return fleetapp.HEALTHY
''')


@asynccontextmanager
async def fleet(tmp_path: Path, healthy: list[bool]) -> AsyncIterator[tuple[list[int], Path, Path]]:
    key_path, key = make_key(tmp_path, "alice")
    keys = authorized_keys(tmp_path, "alice", public_line(key))
    processes: list[asyncio.subprocess.Process] = []
    (tmp_path / "server.py").write_text(SERVER)
    try:
        for index, ok in enumerate(healthy):
            node = tmp_path / f"node{index}"
            node.mkdir()
            (node / "fleetapp.py").write_text(APP)
            (node / "shellsvc.toml").write_text(textwrap.dedent(f'''
                [server]
                port = 0
                state_dir = "state"
                [limits]
                auth_failure_delay = 0.02
                [users.alice]
                role = "admin"
                authorized_keys = "{keys}"
            '''))
            env = {**os.environ, "FLEET_HEALTHY": "1" if ok else "0",
                   "PYTHONPATH": os.pathsep.join([str(node), str(Path.cwd()), os.environ.get("PYTHONPATH", "")])}
            processes.append(await asyncio.create_subprocess_exec(
                sys.executable, str(tmp_path / "server.py"), str(node / "shellsvc.toml"), cwd=node, env=env,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE))
        started = [json.loads(await asyncio.wait_for(p.stdout.readline(), 60)) for p in processes]  # type: ignore[union-attr]
        known = tmp_path / "known_hosts"
        known.write_text("".join(s["known_hosts"] for s in started))
        yield [s["port"] for s in started], key_path, known
    finally:
        for process in processes:
            if process.stdin is not None:
                process.stdin.close()
        for process in processes:
            try:
                await asyncio.wait_for(process.wait(), 20)
            except TimeoutError:
                process.kill()
                await process.wait()


async def prices(tmp_path: Path, key: Path, known: Path, ports: list[int]) -> list[str]:
    status, out, err = await run_client(tmp_path, *fleet_args(key, known, ports, "--json", "-c",
                                                              "import fleetapp\nprint(fleetapp.price())"))
    assert status == 0, (out, err)
    return [h["output"].strip() for h in json.loads(out)["hosts"]]


async def test_patch_failing_on_the_canary_touches_no_other_host(tmp_path: Path) -> None:
    (tmp_path / "raise_price.py").write_text(PATCH)
    async with fleet(tmp_path, [False, True, True]) as (ports, key, known):
        status, out, err = await run_client(tmp_path, *fleet_args(key, known, ports, "--apply",
                                                                  str(tmp_path / "raise_price.py"), "--json"))
        assert status == 1, err
        hosts = json.loads(out)["hosts"]
        assert [h["status"] for h in hosts] == ["failed", "skipped", "skipped"]
        assert "health_check() returned False" in hosts[0]["detail"] and hosts[0]["applied"] == []
        assert await prices(tmp_path, key, known, ports) == ["100", "100", "100"]
        for index in (1, 2):  # not even uploaded there
            assert not (tmp_path / f"node{index}" / "state" / "patches" / "raise_price.py").exists()
            audit = (tmp_path / f"node{index}" / "state" / "audit.log").read_text()
            assert "upload" not in audit and "apply_patch" not in audit


async def test_patch_failing_after_the_canary_is_rolled_back_everywhere(tmp_path: Path) -> None:
    (tmp_path / "raise_price.py").write_text(PATCH)
    async with fleet(tmp_path, [True, True, False]) as (ports, key, known):
        status, out, err = await run_client(tmp_path, *fleet_args(key, known, ports, "--apply",
                                                                  str(tmp_path / "raise_price.py"), "--json"))
        assert status == 1, err
        hosts = json.loads(out)["hosts"]
        assert [h["status"] for h in hosts] == ["rolled back", "rolled back", "failed"]
        assert hosts[0]["applied"] == [1] and "rolled back" in hosts[0]["detail"]
        assert await prices(tmp_path, key, known, ports) == ["100", "100", "100"]
        # and a healthy fleet keeps it, with the table
        status, out, err = await run_client(tmp_path, *fleet_args(key, known, ports[:2], "--apply", "raise_price.py"))
        assert status == 0, err
        assert [line.split()[1] for line in out.splitlines()[1:]] == ["ok", "ok"]
        assert await prices(tmp_path, key, known, ports) == ["120", "120", "100"]
