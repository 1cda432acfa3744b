"""``shellsvc serve``, ``shellsvc demo`` and ``shellsvc passwd``.

Wire into the main parser with :func:`add_subcommands`; each ``run_*`` returns the
process exit status. Output meant for the person at the terminal (the port, the
one-time credential, the hash) is printed; everything else goes to ``logging``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import importlib.util
import logging
import os
import secrets
import signal
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

from shellsvc.runtime.errors import PluginError

from .audit import AuditLogError
from .config import ConfigError, ServiceConfig, ServerConfig, UserConfig, load_config
from .hostkey import HostKeyError
from .passwords import hash_password, parse_password_hash
from .service import Service

__all__ = ["add_subcommands", "run_demo", "run_passwd", "run_serve"]

log = logging.getLogger(__name__)

#: What ``--log-level`` accepts (any case).
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"


def add_subcommands(subparsers: Any) -> None:
    """Add ``serve``, ``demo`` and ``passwd`` to an argparse subparsers object."""
    serve = subparsers.add_parser("serve", help="run the SSH service hosting the configured plugin directories")
    serve.add_argument("--config", "-c", required=True, type=Path, help="TOML config file")
    serve.add_argument("--log-level", default="INFO", type=str.upper, choices=LOG_LEVELS,
                       help="logging level (default INFO)")
    serve.set_defaults(func=run_serve)

    demo = subparsers.add_parser("demo", help="run the sample app with an SSH shell on 127.0.0.1")
    demo.add_argument("--port", type=int, default=8022, help="port (default 8022; 0 = any free port)")
    demo.add_argument("--state-dir", type=Path, default=None,
                      help="where the host key and audit log go (default: a new temporary directory)")
    demo.add_argument("--log-level", default="WARNING", type=str.upper, choices=LOG_LEVELS,
                      help="logging level (default WARNING)")
    demo.set_defaults(func=run_demo)

    passwd = subparsers.add_parser("passwd", help="hash a password for [users.NAME] password_hash")
    passwd.set_defaults(func=run_passwd)


# -- passwd ---------------------------------------------------------------------------------

def run_passwd(args: argparse.Namespace | None = None) -> int:
    """Read a password (no echo on a terminal; one line from stdin when piped), print its hash."""
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if password != getpass.getpass("Again: "):
            print("shellsvc passwd: the passwords differ; nothing printed", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        print("shellsvc passwd: empty password refused", file=sys.stderr)
        return 1
    print(hash_password(password))
    return 0


# -- serve ----------------------------------------------------------------------------------

def _setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


async def _wait_for_stop_signal() -> None:
    """Wait for SIGINT/SIGTERM.

    Plain ``signal.signal`` handlers rather than ``loop.add_signal_handler``: prompt_toolkit
    applications started with ``handle_sigint=True`` replace and then *remove* the loop's
    SIGINT handler, but they restore a Python-level one.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def handler(signum: int, frame: object) -> None:
        loop.call_soon_threadsafe(stop.set)

    previous = {signum: signal.signal(signum, handler) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        await stop.wait()
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


async def _serve(config: ServiceConfig) -> None:
    from shellsvc.runtime import Runtime

    runtime = Runtime()
    try:
        for directory in config.server.plugins:
            await runtime.load(directory)
        if config.server.plugins:
            runtime.watch(*config.server.plugins)
        async with Service(runtime=runtime, config=config) as service:
            # Patches journaled by an earlier run come back over the freshly loaded plugins.
            report = await asyncio.to_thread(service.patches.reapply)
            service.audit.write("patches_reapplied", applied=report.applied, failed=report.failed,
                                skipped=report.skipped, superseded=report.superseded)
            if report.applied or report.failed or report.superseded:
                log.info("patch journal: %s", report)
            print(f"shellsvc listening on {service.host}:{service.port} "
                  f"(host key {service.host_key_fingerprint}); Ctrl-C stops", flush=True)
            await _wait_for_stop_signal()
    finally:
        await runtime.aclose()


def run_serve(args: argparse.Namespace) -> int:
    _setup_logging(args.log_level)
    try:
        config = load_config(args.config)
        asyncio.run(_serve(config))
    except (ConfigError, HostKeyError, AuditLogError, OSError) as exc:
        print(f"shellsvc serve: {exc}", file=sys.stderr)
        return 2
    except PluginError as exc:  # a plugin directory of server.plugins does not load
        print(f"shellsvc serve: {config.source}: server.plugins: {exc}", file=sys.stderr)
        return 2
    return 0


# -- demo -----------------------------------------------------------------------------------

def _load_sample_app() -> ModuleType | None:
    path = EXAMPLES_DIR / "sample_app.py"
    if not path.exists():
        return None
    spec = importlib.util.spec_from_file_location("shellsvc_sample_app", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def demo_config(state_dir: Path, port: int, passwords: dict[str, str]) -> ServiceConfig:
    """The demo's config, loopback only: ``passwords`` maps each demo user - ``admin`` (Python)
    and ``operator`` (the console) - to a fresh one-time password."""
    config = ServiceConfig(server=ServerConfig(host="127.0.0.1", port=port, state_dir=state_dir),
                           source="shellsvc demo")
    for name, password in passwords.items():
        config = config.with_user(UserConfig(name=name, role=name,
                                             password_hash=parse_password_hash(hash_password(password))))
    return config


def _ssh_line(known_hosts: Path, port: int, user: str) -> str:
    return f"ssh -o UserKnownHostsFile={known_hosts} -p {port} {user}@127.0.0.1"


async def _demo(args: argparse.Namespace, state_dir: Path) -> None:
    sample = _load_sample_app()
    runtime = await sample.build_runtime() if sample is not None else None
    passwords = {"admin": secrets.token_urlsafe(12), "operator": secrets.token_urlsafe(12)}
    try:
        service = Service(runtime=runtime, config=demo_config(state_dir, args.port, passwords))
        try:
            await service.start()
        except OSError as exc:
            if args.port == 0:
                raise
            log.warning("%s; using a free port instead", exc)
            service = Service(runtime=runtime, config=demo_config(state_dir, 0, passwords))
            await service.start()
        try:
            known_hosts = state_dir / "known_hosts"
            known_hosts.write_text(service.known_hosts_line())
            port = service.port
            assert port is not None
            print(f"shellsvc demo: the sample app is running with an SSH shell on 127.0.0.1:{port}\n"
                  f"  host key  {service.host_key_fingerprint}\n"
                  f"  user      admin\n"
                  f"  password  {passwords['admin']}   (one-time: valid until this demo stops)\n\n"
                  f"Paste:\n\n"
                  f"  {_ssh_line(known_hosts, port, 'admin')}\n\n"
                  f"Try `counter.increment(41) + 1`, `cmd('plugins list')`, `patches()`.\n\n"
                  f"The operator console (allow-listed commands, never Python): user operator, "
                  f"password {passwords['operator']}\n\n"
                  f"  {_ssh_line(known_hosts, port, 'operator')}\n\n"
                  f"Try `help`, `counter increment 5`, `plugins reload ticker`.\n"
                  f"Audit log: {service.config.server.audit_log_path}\n"
                  f"Ctrl-C here stops the demo.", flush=True)
            await _wait_for_stop_signal()
        finally:
            await service.stop()
    finally:
        if runtime is not None:
            await runtime.aclose()


def run_demo(args: argparse.Namespace) -> int:
    _setup_logging(args.log_level)
    with contextlib.ExitStack() as stack:
        if args.state_dir is None:
            state_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="shellsvc-demo-"))) / "state"
        else:
            state_dir = args.state_dir
        try:
            asyncio.run(_demo(args, state_dir))
        except (HostKeyError, AuditLogError, OSError) as exc:
            print(f"shellsvc demo: {exc}", file=sys.stderr)
            return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point (``python -m shellsvc.server.cli``) until the main CLI wires these in."""
    parser = argparse.ArgumentParser(prog="shellsvc")
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
