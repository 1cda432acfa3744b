"""Patch upload: OpenSSH ``scp``/``sftp`` jailed into the patches directory, and applying patch files.

The real OpenSSH clients talk to a real service on 127.0.0.1 (port 0). Modern ``scp``
speaks SFTP; ``scp -O`` the legacy scp protocol - both are served (asyncssh implements
both) and both are jailed the same way.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from clients import RemoteError, RemoteShell
from shellsvc.patching import PatchManager
from shellsvc.server.upload import PatchDirectory, PatchFileError, apply_patch_file

from test_server_helpers import (authorized_keys, communicate, config, connect, events, make_key, public_line, running,
                                 wait_until)

needs_openssh = pytest.mark.skipif(not (shutil.which("scp") and shutil.which("sftp")), reason="OpenSSH clients missing")

FIX = '''"""Discounts are 10% now."""
PATCHES = {"MODULE.discount": "def discount(total):\\n    return total * 0.10\\n"}
'''


@pytest.fixture
def app_module(tmp_path: Path) -> Iterator[object]:
    """A module of the 'application' to patch, importable under a name unique to the test."""
    name = f"shop_{os.getpid()}_{abs(hash(tmp_path)) % 10**8}"
    source = tmp_path / "app"
    source.mkdir()
    (source / f"{name}.py").write_text("def discount(total):\n    return total * 0.05\n\n"
                                       "def price(total):\n    return total - discount(total)\n")
    sys.path.insert(0, str(source))
    try:
        yield importlib.import_module(name)
    finally:
        sys.path.remove(str(source))
        sys.modules.pop(name, None)


def users(tmp_path: Path) -> tuple[dict[str, dict[str, str]], dict[str, Path]]:
    keys: dict[str, Path] = {}
    table: dict[str, dict[str, str]] = {}
    for name, role in (("alice", "admin"), ("olga", "operator")):
        path, key = make_key(tmp_path, name)
        keys[name] = path
        table[name] = {"role": role, "authorized_keys": str(authorized_keys(tmp_path, name, public_line(key)))}
    return table, keys


async def openssh(service: object, tool: str, key: Path, *args: str, stdin: str | None = None) -> tuple[int, str]:
    """Run ``scp``/``sftp`` against the service; returns (exit status, stdout+stderr)."""
    known = Path(str(key) + ".known_hosts")
    known.write_text(service.known_hosts_line())  # type: ignore[attr-defined]
    options = ["-F", "/dev/null", "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={known}",
               "-o", "StrictHostKeyChecking=yes", "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
               "-i", str(key), "-P", str(service.port)]  # type: ignore[attr-defined]
    process = await asyncio.create_subprocess_exec(
        tool, *options, *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    out, _ = await communicate(process, stdin.encode() if stdin else None, 60)
    return process.returncode or 0, out.decode(errors="replace")


def patches_dir(service: object) -> Path:
    return service.config.server.state_dir / "patches"  # type: ignore[attr-defined]


@needs_openssh
@pytest.mark.parametrize("legacy", [False, True], ids=["scp-sftp-mode", "scp-O-legacy"])
async def test_scp_upload_lands_in_the_patches_directory(tmp_path: Path, legacy: bool) -> None:
    table, keys = users(tmp_path)
    fix = tmp_path / "fix.py"
    fix.write_text("PATCHES = {}\n")
    flags = ["-O"] if legacy else []
    async with running(config(tmp_path, table)) as service:
        status, output = await openssh(service, "scp", keys["alice"], *flags, str(fix), "alice@127.0.0.1:")
        assert status == 0, output
        landed = patches_dir(service) / "fix.py"
        assert landed.read_text() == "PATCHES = {}\n"
        assert landed.stat().st_mode & 0o777 == 0o600 and patches_dir(service).stat().st_mode & 0o777 == 0o700
        status, output = await openssh(service, "scp", keys["alice"], *flags, str(fix), "alice@127.0.0.1:renamed.py")
        assert status == 0, output
        assert sorted(p.name for p in patches_dir(service).iterdir()) == ["fix.py", "renamed.py"]
        uploads = await wait_until(lambda: len(events(service, "upload")) == 2 and events(service, "upload"))
        assert [(u["user"], u["file"], u["size"]) for u in uploads] == [("alice", "fix.py", 13), ("alice", "renamed.py", 13)]
        assert len(uploads[0]["sha256"]) == 64


@needs_openssh
@pytest.mark.parametrize("legacy", [False, True], ids=["scp-sftp-mode", "scp-O-legacy"])
async def test_scp_to_any_other_path_fails(tmp_path: Path, legacy: bool) -> None:
    table, keys = users(tmp_path)
    fix = tmp_path / "fix.py"
    fix.write_text("PATCHES = {}\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    flags = ["-O"] if legacy else []
    async with running(config(tmp_path, table)) as service:
        real_dir = patches_dir(service)
        for destination in (f"{outside}/fix.py", "../fix.py", "../../outside/fix.py", "sub/fix.py", "/tmp/fix.py",
                            f"{real_dir}/fix.py", ".hidden.py", "../state/audit.log"):
            status, output = await openssh(service, "scp", keys["alice"], *flags, str(fix), f"alice@127.0.0.1:{destination}")
            assert status != 0, (destination, output)
            assert "denied" in output.lower() or "only plain files" in output or "not allowed" in output, output
        assert list(outside.iterdir()) == [] and not Path("/tmp/fix.py").exists()
        assert list(real_dir.iterdir()) == []
        assert "fix.py" not in os.listdir(service.config.server.state_dir)
        # a directory is refused too (scp -r would create one)
        status, output = await openssh(service, "scp", keys["alice"], *flags, "-r", str(outside), "alice@127.0.0.1:")
        assert status != 0 and list(real_dir.iterdir()) == []
        assert events(service, "upload_refused")


@needs_openssh
async def test_sftp_is_jailed_in_the_patches_directory(tmp_path: Path) -> None:
    table, keys = users(tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret\n")
    (tmp_path / "fix.py").write_text("PATCHES = {}\n")
    async with running(config(tmp_path, table)) as service:
        directory = patches_dir(service)
        directory.mkdir(mode=0o700, exist_ok=True)
        (directory / "planted").symlink_to(secret)  # put there on the host: must not be a way out
        batch = "\n".join([
            f"put {tmp_path / 'fix.py'} fix.py", "pwd", "ls -1",
            "-cd /tmp", "-cd ..", f"-get {secret} {tmp_path / 'got1'}", f"-get /etc/passwd {tmp_path / 'got2'}",
            f"-get planted {tmp_path / 'got3'}", f"-get ../audit.log {tmp_path / 'got4'}",
            "-mkdir sub", "-symlink /etc/passwd link", f"-put {tmp_path / 'fix.py'} /tmp/escaped.py",
            "rename fix.py fix2.py", f"get fix2.py {tmp_path / 'roundtrip.py'}", "ls -1",
        ]) + "\n"
        status, output = await openssh(service, "sftp", keys["alice"], "-b", "-", "alice@127.0.0.1", stdin=batch)
        assert status == 0, output
        assert "Remote working directory: /" in output
        assert (tmp_path / "roundtrip.py").read_text() == "PATCHES = {}\n"
        for name in ("got1", "got2", "got3", "got4"):
            assert not (tmp_path / name).exists(), output
        assert not Path("/tmp/escaped.py").exists()
        assert sorted(p.name for p in directory.iterdir()) == ["fix2.py", "planted"]
        listing = output.split("ls -1", 2)[-1]
        assert "fix2.py" in listing and "planted" not in listing
    assert secret.read_text() == "top secret\n"


@needs_openssh
async def test_operators_cannot_upload(tmp_path: Path) -> None:
    table, keys = users(tmp_path)
    fix = tmp_path / "fix.py"
    fix.write_text("PATCHES = {}\n")
    async with running(config(tmp_path, table)) as service:
        for flags in ([], ["-O"]):  # modern scp asks for the sftp subsystem, -O runs "scp -t"
            status, output = await openssh(service, "scp", keys["olga"], *flags, str(fix), "olga@127.0.0.1:")
            assert status != 0, output
        status, output = await openssh(service, "sftp", keys["olga"], "-b", "-", "olga@127.0.0.1", stdin="ls\n")
        assert status != 0 and "subsystem request failed" in output
        assert not patches_dir(service).exists() or list(patches_dir(service).iterdir()) == []
        refused = events(service, "upload_refused")
        assert [(r["user"], r["kind"]) for r in refused] == [("olga", "sftp"), ("olga", "scp"), ("olga", "sftp")]
        assert all("operator" in r["reason"] for r in refused)
        # and the asyncssh SFTP client gets the same answer
        async with connect(service, "olga", client_keys=[keys["olga"]]) as conn:
            with pytest.raises(Exception, match="(?i)refused|failed"):
                async with conn.start_sftp_client():
                    pass


# -- applying patch files -----------------------------------------------------------------------------

def test_apply_patch_file_applies_all_or_nothing(tmp_path: Path, app_module: object) -> None:
    name = app_module.__name__  # type: ignore[attr-defined]
    manager = PatchManager(tmp_path / "state")
    directory = PatchDirectory(tmp_path / "patches")
    directory.ensure()
    original = app_module.discount.__code__  # type: ignore[attr-defined]

    (directory.path / "good.py").write_text(FIX.replace("MODULE", name))
    records = apply_patch_file(manager, directory.file("good.py"), user="alice")
    assert app_module.price(100) == 90.0 and [r.note for r in records] == ["good.py: Discounts are 10% now."]  # type: ignore[attr-defined]
    manager.rollback(records[0].id)
    assert app_module.discount.__code__ is original  # type: ignore[attr-defined]

    (directory.path / "half.py").write_text(
        f"PATCHES = [({name!r} + '.discount', 'return 0'), ({name!r} + '.missing', 'return 1')]\n")
    with pytest.raises(PatchFileError, match=r"half.py: patching '.*missing' failed.*rolled back #2"):
        apply_patch_file(manager, directory.file("half.py"))
    assert app_module.discount.__code__ is original  # type: ignore[attr-defined]

    (directory.path / "unhealthy.py").write_text(
        FIX.replace("MODULE", name) + f"import {name}\ndef health_check():\n    return {name}.price(100) == 95\n")
    with pytest.raises(PatchFileError, match="health_check\\(\\) returned False; rolled back #3"):
        apply_patch_file(manager, directory.file("unhealthy.py"))
    assert app_module.discount.__code__ is original  # type: ignore[attr-defined]

    # an async health check is awaited like one given to patch(): its False result counts
    (directory.path / "unhealthy_async.py").write_text(
        FIX.replace("MODULE", name) + f"import {name}\nasync def health_check():\n    return {name}.price(100) == 95\n")
    with pytest.raises(PatchFileError, match="health_check\\(\\) returned False; rolled back #4"):
        apply_patch_file(manager, directory.file("unhealthy_async.py"))
    assert app_module.discount.__code__ is original  # type: ignore[attr-defined]

    for body, message in (("PATCHES = {\n", "line 1"), ("x = 1\n", "define PATCHES"), ("PATCHES = {}\n", "empty"),
                          ("raise RuntimeError('boom')\n", "RuntimeError: boom")):
        (directory.path / "bad.py").write_text(body)
        with pytest.raises(PatchFileError, match=message):
            apply_patch_file(manager, directory.file("bad.py"))
    assert [r.status for r in manager.patches()] == ["rolled back"] * 4

    for bad_name in ("../good.py", "sub/good.py", ".good.py", "", "a" * 200):
        with pytest.raises(PatchFileError, match="not a patch file name"):
            directory.file(bad_name)
    with pytest.raises(PatchFileError, match="no patch file 'nope.py'.*uploaded: bad.py, good.py, half.py, unhealthy.py, unhealthy_async.py"):
        directory.file("nope.py")


async def test_uploaded_patch_is_applied_and_rolled_back_over_the_subsystem(tmp_path: Path, app_module: object) -> None:
    table, keys = users(tmp_path)
    name = app_module.__name__  # type: ignore[attr-defined]
    original = app_module.discount.__code__  # type: ignore[attr-defined]
    async with running(config(tmp_path, table)) as service:
        async with connect(service, "alice", client_keys=[keys["alice"]]) as conn:
            async with conn.start_sftp_client() as sftp:
                async with sftp.open("fix.py", "w") as remote:
                    await remote.write(FIX.replace("MODULE", name) + "print('applying the fix')\n")
            shell = await RemoteShell.open(conn)
            pushed: list[dict[str, object]] = []
            shell.on_event = lambda topic, event: pushed.append(event)
            await shell.subscribe(["patches"])
            printed: list[str] = []
            ids = await shell.apply_patch("fix.py", output=lambda stream, text: printed.append(text))
            assert app_module.price(100) == 90.0 and "".join(printed) == "applying the fix\n"  # type: ignore[attr-defined]
            listing = await shell.patches()
            assert listing["files"] == ["fix.py"]
            assert [(p["id"], p["status"], p["user"], p["applied"]) for p in listing["patches"]] == [(ids[0], "active", "alice", True)]
            with pytest.raises(RemoteError, match="no patch file 'other.py'") as missing:
                await shell.apply_patch("other.py")
            assert missing.value.code == "not_found"
            with pytest.raises(RemoteError, match="not a patch file name"):
                await shell.apply_patch("../state/audit.log")
            assert await shell.rollback_patch(ids) == ids
            assert app_module.discount.__code__ is original  # type: ignore[attr-defined]
            with pytest.raises(RemoteError, match="already rolled back"):
                await shell.rollback_patch(ids)
            await wait_until(lambda: len(pushed) == 2, what="patch events")
            assert [(e["kind"], e["ids"]) for e in pushed] == [("applied", ids), ("rolled_back", ids)]
        applied = events(service, "patch_file_applied")
        assert [(a["user"], a["file"], a["ids"]) for a in applied] == [("alice", "fix.py", ids)]
