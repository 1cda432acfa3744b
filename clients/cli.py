"""``shellsvc-client``: the command line.

    shellsvc-client [-p PORT] [-i KEY] user@host                 interactive
    shellsvc-client user@host -c CODE | -f FILE | < script.py    scripting (exit status of the code)
    shellsvc-client user@host --upload fix.py [--apply]          SFTP into the patches directory
    shellsvc-client --hosts h1,h2,h3 -c CODE | --apply fix.py    fan-out, canary first

Exit status: the remote code's (0, 1 for an uncaught exception, n for ``SystemExit(n)``);
255 when the connection could not be made (as ``ssh``); 2 for usage errors.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable
from pathlib import Path

import asyncssh

from .connection import ConnectError, ConnectOptions, ask_password_on_terminal, open_connection
from .fanout import Action, fan_out, format_ids, format_table, results_json
from .hostkeys import HostKeyError, default_known_hosts
from .remote import RemoteError, RemoteShell
from .script import run_script, stdin_reader
from .target import Target, parse_hosts, parse_target
from .upload import UploadError, upload_patch

__all__ = ["main", "parse_args"]

log = logging.getLogger("clients")

#: Exit status when no session could be had (``ssh`` uses the same).
EXIT_CONNECT = 255


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="shellsvc-client",
        description="A shell inside a running Python application, over SSH (the shellsvc subsystem).")
    parser.add_argument("destination", nargs="?", help="[user@]host[:port] (not with --hosts)")
    parser.add_argument("-p", "--port", type=int, help="port (default 8022, shellsvc's default)")
    parser.add_argument("-l", "--user", help="login name when the destination has none (default: local user)")
    parser.add_argument("-i", "--identity", action="append", type=Path, default=[], metavar="KEY",
                        help="private key file (repeatable; default: the SSH agent and ~/.ssh/id_*)")
    parser.add_argument("--known-hosts", type=Path, default=None, metavar="FILE",
                        help="known_hosts file to verify the server's key (default ~/.ssh/known_hosts)")
    parser.add_argument("--batch", action="store_true",
                        help="never ask (unknown host keys are refused, no password prompt)")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("-c", dest="code", metavar="CODE", help="run CODE and exit with its status")
    what.add_argument("-f", dest="file", metavar="FILE", help="run the script FILE ('-' for stdin)")
    parser.add_argument("--upload", type=Path, metavar="FILE", help="upload FILE into the patches directory")
    parser.add_argument("--apply", nargs="?", const="", metavar="PATCH",
                        help="apply a patch file: a local file (uploaded first) or the name of one already "
                             "in the patches directory; after --upload FILE, no value: that file")
    parser.add_argument("--hosts", metavar="H1,H2,...", help="run -c/-f/--apply on many hosts, the first as canary")
    parser.add_argument("--parallel", type=int, default=8, metavar="N", help="fan-out: hosts at once (default 8)")
    parser.add_argument("--json", action="store_true", help="fan-out: results as JSON instead of a table")
    parser.add_argument("--timeout", type=float, metavar="SECONDS", help="interrupt code running longer than this")
    parser.add_argument("--history", type=Path, metavar="FILE", help="interactive history file")
    args = parser.parse_args(argv)
    if args.upload is not None and args.apply and args.destination is None and not args.hosts:
        args.destination, args.apply = args.apply, ""  # "--upload FILE --apply user@host": --apply is a flag here
    if args.hosts and args.destination:
        parser.error("give either a destination or --hosts, not both")
    if not args.hosts and not args.destination:
        parser.error("a destination ([user@]host) is required")
    if args.apply == "" and args.upload is None:
        parser.error("--apply needs a PATCH (or --upload FILE)")
    if args.hosts and args.code is None and args.file is None and args.apply is None:
        parser.error("--hosts needs -c CODE, -f FILE or --apply PATCH")
    if (args.apply is not None or args.upload) and (args.code is not None or args.file is not None):
        parser.error("--upload/--apply cannot be combined with -c/-f")
    try:
        args.targets = (parse_hosts(args.hosts, user=args.user, port=args.port) if args.hosts
                        else [parse_target(args.destination, user=args.user, port=args.port)])
    except ValueError as exc:
        parser.error(str(exc))
    return args


def missing_files(args: argparse.Namespace) -> list[str]:
    """Local files the command line names that are not there: said before connecting."""
    missing = [f"-i {key}: no such private key file" for key in args.identity if not key.is_file()]
    if args.file not in (None, "-") and not Path(args.file).is_file():
        missing.append(f"-f {args.file}: no such file")
    if args.upload is not None and not args.upload.is_file():
        missing.append(f"--upload {args.upload}: no such file")
    return missing


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if problems := missing_files(args):
        for problem in problems:
            print(f"shellsvc-client: {problem}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="shellsvc-client: %(message)s")
    try:
        return asyncio.run(_main(args))
    except KeyboardInterrupt:
        return 130
    except (HostKeyError, ConnectError) as exc:
        print(f"shellsvc-client: {exc}", file=sys.stderr)
        return EXIT_CONNECT


def _on_terminal(args: argparse.Namespace) -> bool:
    return not args.batch and sys.stdin.isatty() and sys.stdout.isatty()


async def _ask_yes(question: str) -> bool:
    from prompt_toolkit import PromptSession

    session: PromptSession[str] = PromptSession()
    while True:
        try:
            answer = (await session.prompt_async(question)).strip().lower()
        except (EOFError, KeyboardInterrupt):
            return False
        if answer in ("yes", "no"):
            return answer == "yes"
        question = "Please type 'yes' or 'no': "


def _options(args: argparse.Namespace, *, may_ask: bool) -> ConnectOptions:
    return ConnectOptions(identities=args.identity, known_hosts=args.known_hosts or default_known_hosts(),
                          ask_trust=_ask_yes if may_ask else None,
                          ask_password=ask_password_on_terminal if may_ask else None)


def _code(args: argparse.Namespace) -> str | None:
    if args.code is not None:
        return str(args.code)
    if args.file is not None:
        return sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
    return None


def _patch_action(args: argparse.Namespace) -> Action | None:
    """``--upload FILE [--apply]`` / ``--apply PATCH``: what to upload and the name to apply."""
    if args.apply is None:
        return None
    if args.apply == "":
        return Action(patch=args.upload.name, upload=args.upload)
    local = Path(args.apply)
    if args.upload is not None:
        return Action(patch=args.apply, upload=args.upload)
    if local.is_file():
        return Action(patch=local.name, upload=local)
    return Action(patch=args.apply)


async def _main(args: argparse.Namespace) -> int:
    if args.hosts:
        return await _fan_out(args)
    return await _one_host(args)


async def _one_host(args: argparse.Namespace) -> int:
    target = args.targets[0]
    conn = await open_connection(target, _options(args, may_ask=_on_terminal(args)))
    async with conn:
        try:
            status = await _single(args, target, conn)
        except (RemoteError, UploadError) as exc:
            print(f"shellsvc-client: {exc}", file=sys.stderr)
            status = 1
    return status


async def _single(args: argparse.Namespace, target: Target, conn: asyncssh.SSHClientConnection) -> int:
    action = _patch_action(args)
    if args.upload is not None and action is None:
        name = await upload_patch(conn, args.upload)
        print(f"uploaded {args.upload} to the patches directory of {target} as {name}")
        return 0
    shell = await RemoteShell.open(conn)
    if action is not None:
        assert action.patch is not None
        if action.upload is not None:
            await upload_patch(conn, action.upload, action.patch)
        ids = await shell.apply_patch(action.patch, output=lambda stream, text: print(text, end=""))
        print(f"applied {action.patch} on {target}: {format_ids(ids)}")
        return 0
    code = _code(args)
    if code is None and not sys.stdin.isatty():
        code = sys.stdin.read()
    if code is None:
        from .interactive import default_history_file, run_interactive  # prompt_toolkit: interactive only

        history = args.history or default_history_file(shell.role)
        return await run_interactive(shell, history_file=history, where=f"{target.host}:{target.port}")
    reads_stdin = args.file == "-" or (args.code is None and args.file is None)
    return await _interruptible(shell, run_script(shell, code, timeout=args.timeout,
                                                  on_input=None if reads_stdin else stdin_reader()))


async def _interruptible(shell: RemoteShell, work: Awaitable[int]) -> int:
    """Scripting mode: the first Ctrl-C interrupts the remote code, a second one gives up."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(work)
    presses = 0

    def on_sigint() -> None:
        nonlocal presses
        presses += 1
        if presses == 1:
            asyncio.ensure_future(shell.interrupt())
        else:
            task.cancel()

    try:
        loop.add_signal_handler(signal.SIGINT, on_sigint)
    except (NotImplementedError, RuntimeError):  # not the main thread / platform without signals
        pass
    try:
        return int(await task)
    except asyncio.CancelledError:
        return 130
    finally:
        try:
            loop.remove_signal_handler(signal.SIGINT)
        except (NotImplementedError, RuntimeError):
            pass


async def _fan_out(args: argparse.Namespace) -> int:
    targets = args.targets
    action = _patch_action(args)
    if action is None:
        code = _code(args)
        assert code is not None
        action = Action(code=code)
    options = _options(args, may_ask=False)  # many hosts: unknown keys are refused, never asked about
    results = await fan_out(targets, action, lambda t: open_connection(t, options), parallel=args.parallel,
                            timeout=args.timeout)
    sys.stdout.write(results_json(results) if args.json else format_table(results))
    return 0 if all(r.ok for r in results) else 1
