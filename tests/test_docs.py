"""The documentation is tested: every fenced code block in README.md and docs/*.md is run or checked.

A block is handled by its language; a comment on the line before the fence,
``<!-- doctest: WORD ... -->``, adjusts that (docs/index.md, "Writing docs", lists the words):

* ``python`` runs as a script. The blocks of one file run in one child process, each block
  in a fresh ``__main__`` module and a fresh temporary working directory holding a copy of
  ``examples/``. ``continue``: share the module and directory of the previous python block
  of the file. ``async``: top-level ``await``, on an event loop kept for the chain.
  ``app``: ``app`` is bound to ``shellsvc.cli.SampleApp()``. ``compile``: a deliberately
  partial snippet, only compiled. ``file NAME``: a file of a scenario test below (compiled
  here, run there). A python block starting with ``>>>`` is a pycon block.
* ``pycon``: a doctest (ELLIPSIS), run in the chain like python blocks. ``ssh SCENARIO``
  sends each example over a real SSH connection as admin ``alice`` of a live service
  (``service``: an in-process Service hosting a copy of examples/plugins; ``app`` and
  ``serve``: the getting-started app and ``shellsvc serve``).
* ``text`` is output, not executed (it must not hide ``>>>`` or ``$`` lines); with
  ``output`` it must match (ELLIPSIS) what the previous python block printed.
* ``toml`` is loaded with ``shellsvc.load_config`` (files named by ``authorized_keys`` are
  created with a fresh key when missing). ``invalid "TEXT"``: must be refused with an error
  containing TEXT. ``all-keys``: must set every key the loader accepts.
* ``sh``/``bash``/``shell``/``console`` (``$ `` prompts): ``shellsvc`` and
  ``shellsvc-client`` commands are parsed by the real argparse parsers, ``ssh`` commands by
  ``ssh -G``, repository scripts must exist and list the flags shown in their ``--help``,
  other programs must be known. ``run``: the commands are executed (a console block's
  output compared). ``synopsis``: a usage summary; only the options shown are checked.
* ``json``: one protocol frame per line, validated against ``shellsvc.protocol``.

A fence without a language, an unknown language or an unknown marker word fails
``test_every_block_is_accounted_for``, which also counts the blocks by kind.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import contextlib
import dataclasses
import doctest
import inspect
import io
import json
import linecache
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import traceback
import types
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PYTHON = sys.executable
BIN = Path(sys.executable).parent

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
MARKER = re.compile(r"<!--\s*doctest:\s*(?P<words>.*?)\s*-->")

#: Marker words and how many arguments each takes.
MARKER_WORDS = {"continue": 0, "async": 0, "app": 0, "compile": 0, "file": 1, "ssh": 1, "output": 0,
                "invalid": 1, "all-keys": 0, "run": 0, "synopsis": 0}
#: Which block kinds accept which marker words.
KIND_WORDS = {
    "python": {"continue", "async", "app"},
    "python-compile": {"compile"},
    "python-file": {"file"},
    "pycon": {"continue"},
    "pycon-ssh": {"ssh"},
    "toml": {"invalid", "all-keys", "file"},
    "shell": {"run", "synopsis", "ssh"},
    "json": set(),
    "text": set(),
    "output": {"output"},
}
SSH_SCENARIOS = ("service", "app", "serve")
SHELL_LANGS = ("sh", "console", "shell", "bash")
#: Programs doc commands may use besides shellsvc's own and python; anything else is a typo.
KNOWN_PROGRAMS = {
    "scp", "sftp", "ssh-keygen", "ssh-add", "pip", "chmod", "chown", "mkdir", "mv", "cp", "rm", "cat",
    "echo", "printf", "tail", "head", "jq", "kill", "ls", "cd", "export", "install", "grep", "logrotate",
    "systemctl", "git", "test", "stat", "touch", "umask", "ps", "env", "date", "ssh-keyscan", "logger",
}
OUTPUT_CHECKER = doctest.OutputChecker()


# -- finding blocks ------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    words: tuple[str, ...]

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    def arg(self, word: str) -> str | None:
        if word not in self.words:
            return None
        index = self.words.index(word) + 1
        return self.words[index] if index < len(self.words) else None

    @property
    def kind(self) -> str:
        if self.lang in ("python", "py", "pycon"):
            if self.lang == "pycon" or self.text.lstrip().startswith(">>>"):
                return "pycon-ssh" if "ssh" in self.words else "pycon"
            if "compile" in self.words:
                return "python-compile"
            if "file" in self.words:
                return "python-file"
            return "python"
        if self.lang == "toml":
            return "toml"
        if self.lang in SHELL_LANGS:
            return "shell"
        if self.lang in ("json", "jsonl"):
            return "json"
        if self.lang == "text":
            return "output" if "output" in self.words else "text"
        return f"unknown language {self.lang!r}" if self.lang else "no language"


def parse_blocks(path: Path) -> list[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        match = FENCE.match(lines[index])
        if match is None:
            index += 1
            continue
        indent, fence = match["indent"], match["fence"]
        previous = index - 1
        while previous >= 0 and not lines[previous].strip():
            previous -= 1
        marker = MARKER.fullmatch(lines[previous].strip()) if previous >= 0 else None
        words = tuple(shlex.split(marker["words"])) if marker else ()
        body: list[str] = []
        end = index + 1
        while end < len(lines):
            closing = lines[end].strip()
            if closing and set(closing) == {fence[0]} and len(closing) >= len(fence):
                break
            body.append(lines[end][len(indent):] if lines[end].startswith(indent) else lines[end].lstrip())
            end += 1
        else:
            raise AssertionError(f"{path.relative_to(ROOT)}:{index + 1}: unclosed code fence")
        info = match["info"].strip()
        blocks.append(Block(path, index + 1, info.split()[0].lower() if info else "", "\n".join(body) + "\n", words))
        index = end + 1
    return blocks


ALL_BLOCKS = [block for path in DOC_FILES for block in parse_blocks(path)]


def blocks_of(*kinds: str) -> list[Block]:
    return [block for block in ALL_BLOCKS if block.kind in kinds]


def ids(item: Any) -> str:
    return str(item.where)


def check_output(want: str, got: str) -> bool:
    return OUTPUT_CHECKER.check_output(want, got, doctest.ELLIPSIS)


def without_blank_lines(text: str) -> str:
    """Console transcripts are compared without blank lines (the doc may leave them out)."""
    return "".join(line + "\n" for line in text.splitlines() if line.strip())


def output_diff(want: str, got: str) -> str:
    return OUTPUT_CHECKER.output_difference(doctest.Example("", want), got, doctest.ELLIPSIS)


# -- python and pycon blocks: chains, run in one child process per file --------------------------

@dataclasses.dataclass
class Chain:
    blocks: list[Block]
    outputs: dict[int, Block]  # index in blocks -> the `output` block showing what it printed

    @property
    def where(self) -> str:
        return self.blocks[0].where


def build_chains() -> list[Chain]:
    chains: list[Chain] = []
    for path in DOC_FILES:
        current: Chain | None = None
        last_kind = ""
        for block in (b for b in ALL_BLOCKS if b.path == path):
            kind = block.kind
            if kind in ("python", "pycon"):
                if "continue" in block.words:
                    assert current is not None, f"{block.where}: `continue` without a python block before it"
                    current.blocks.append(block)
                else:
                    current = Chain([block], {})
                    chains.append(current)
            elif kind == "output":
                assert current is not None and last_kind in ("python", "pycon"), \
                    f"{block.where}: an `output` block must follow the python block whose output it shows"
                current.outputs[len(current.blocks) - 1] = block
            last_kind = kind
    return chains


CHAINS = build_chains()
_chain_results: dict[Path, dict[str, Any]] = {}


def run_file_chains(path: Path) -> dict[str, Any]:
    """Run every chain of ``path`` in one child process (once per test run); results by chain."""
    if path in _chain_results:
        return _chain_results[path]
    chains = [chain for chain in CHAINS if chain.blocks[0].path == path]
    payload = [{"id": chain.where,
                "blocks": [{"where": b.where, "line": b.line, "file": str(b.path.relative_to(ROOT)),
                            "kind": b.kind, "text": b.text, "words": list(b.words)} for b in chain.blocks]}
               for chain in chains]
    results: dict[str, Any] = {}
    crash = ""
    with tempfile.TemporaryDirectory(prefix="shellsvc-docs-") as tmp:
        result_file = Path(tmp, "results.jsonl")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "HOME": tmp, "XDG_STATE_HOME": str(Path(tmp, "state"))}
        try:
            proc = subprocess.run([PYTHON, __file__, "--run-chains", str(result_file)], input=json.dumps(payload),
                                  capture_output=True, text=True, timeout=600, env=env, cwd=tmp)
            crash = f"exit status {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
        except subprocess.TimeoutExpired as exc:
            crash = f"timed out after {exc.timeout} s"
        if result_file.exists():
            for line in result_file.read_text().splitlines():
                record = json.loads(line)
                results[record["id"]] = record
    for chain in chains:
        results.setdefault(chain.where, {"id": chain.where, "ok": False, "error": f"the runner died: {crash}"})
    _chain_results[path] = results
    return results


class _Router(io.TextIOBase):
    """One ``sys.stdout``/``sys.stderr`` for the whole run, writing to the current block's buffer
    (swapping the stream per block would confuse the engine's per-session proxy)."""

    def __init__(self) -> None:
        self.target = io.StringIO()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.target.write(text)
        return len(text)


def _install_sources(payload: list[dict[str, Any]]) -> None:
    """Put the blocks in ``linecache`` under their doc's name at their doc line numbers, so
    tracebacks name the doc line and ``inspect.getsource`` (used by ``@resumable``) works."""
    files: dict[str, list[str]] = {}
    for chain in payload:
        for block in chain["blocks"]:
            lines = files.setdefault(block["file"], ["\n"] * len((ROOT / block["file"]).read_text().splitlines()))
            for offset, text in enumerate(block["text"].splitlines()):
                lines[block["line"] + offset] = text + "\n"
    for name, lines in files.items():
        linecache.cache[name] = (sum(map(len, lines)), None, lines, name)


def _run_block(block: dict[str, Any], module: types.ModuleType, state: dict[str, Any]) -> None:
    namespace = module.__dict__
    if block["kind"] == "pycon":
        parser = doctest.DocTestParser()
        test = parser.get_doctest(block["text"], namespace, block["where"], block["file"], block["line"])
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
        report = io.StringIO()
        runner.run(test, out=report.write, clear_globs=False)
        namespace.update(test.globs)
        if runner.failures:
            raise AssertionError(report.getvalue())
        return
    source = "\n" * block["line"] + block["text"]
    flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT if "async" in block["words"] else 0
    code = compile(source, block["file"], "exec", flags=flags, dont_inherit=True)
    if "app" in block["words"] and "app" not in namespace:
        from shellsvc.cli import SampleApp

        namespace["app"] = SampleApp()
    if code.co_flags & inspect.CO_COROUTINE:
        if state.get("loop") is None:
            state["loop"] = asyncio.new_event_loop()
            asyncio.set_event_loop(state["loop"])
        state["loop"].run_until_complete(eval(code, namespace))
    else:
        exec(code, namespace)


def _close_loop(loop: asyncio.AbstractEventLoop | None) -> None:
    if loop is None:
        return
    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()
    asyncio.set_event_loop(None)


def runner_main(result_file: str) -> None:
    """The child process: run the chains given on stdin, one JSON result line per chain."""
    payload = json.load(sys.stdin)
    _install_sources(payload)
    stdout, stderr = _Router(), _Router()
    real_stdout = sys.stdout
    sys.stdout, sys.stderr = stdout, stderr  # type: ignore[assignment]
    home = os.getcwd()
    for chain in payload:
        record: dict[str, Any] = {"id": chain["id"], "ok": True, "outputs": []}
        module = types.ModuleType("__main__")
        module.__dict__["__builtins__"] = __builtins__
        saved_main, saved_path = sys.modules["__main__"], list(sys.path)
        sys.modules["__main__"] = module
        state: dict[str, Any] = {}
        with tempfile.TemporaryDirectory(prefix="chain-") as tmp:
            shutil.copytree(ROOT / "examples", Path(tmp, "examples"),
                            ignore=shutil.ignore_patterns("__pycache__"))
            os.chdir(tmp)
            try:
                for block in chain["blocks"]:
                    stdout.target, stderr.target = io.StringIO(), io.StringIO()
                    try:
                        _run_block(block, module, state)
                    except BaseException:  # noqa: BLE001 - report whatever the block raised, SystemExit too
                        record.update(ok=False, failed_at=block["where"], error=traceback.format_exc(),
                                      stderr=stderr.target.getvalue()[-3000:])
                    record["outputs"].append(stdout.target.getvalue())
                    if not record["ok"]:
                        break
            finally:
                try:
                    _close_loop(state.get("loop"))
                except Exception:  # noqa: BLE001
                    record.update(ok=False, error=record.get("error", "") + traceback.format_exc())
                os.chdir(home)
                sys.modules["__main__"], sys.path[:] = saved_main, saved_path
        with open(result_file, "a") as results:
            results.write(json.dumps(record) + "\n")
    sys.stdout = real_stdout
    os._exit(0)  # a thread an example left running must not keep the runner alive


if __name__ == "__main__" and sys.argv[1:2] == ["--run-chains"]:
    sys.path.insert(0, str(ROOT))
    runner_main(sys.argv[2])
    sys.exit(0)


# ---- everything below runs under pytest ---------------------------------------------------------

import asyncssh  # noqa: E402
import pytest  # noqa: E402

import shellsvc  # noqa: E402
from shellsvc import protocol  # noqa: E402
from shellsvc.server.config import ConfigError, LimitsConfig, ServerConfig, load_config, parse_config  # noqa: E402
from test_server_helpers import communicate, make_key  # noqa: E402


def test_every_block_is_accounted_for() -> None:
    """Each block has exactly one handler below; the counts by kind are printed."""
    problems = []
    for block in ALL_BLOCKS:
        if block.kind not in KIND_WORDS:
            problems.append(f"{block.where}: {block.kind}: give the fence a language this test knows")
            continue
        words = list(block.words)
        while words:
            word = words.pop(0)
            if word not in MARKER_WORDS:
                problems.append(f"{block.where}: unknown doctest marker word {word!r}")
                break
            del words[:MARKER_WORDS[word]]
            if word not in KIND_WORDS[block.kind]:
                problems.append(f"{block.where}: marker {word!r} means nothing for a {block.kind} block")
        if "ssh" in block.words and block.arg("ssh") not in SSH_SCENARIOS:
            problems.append(f"{block.where}: ssh scenario must be one of {SSH_SCENARIOS}")
    for path in DOC_FILES:  # the fence parser saw every fence
        fences = sum(1 for line in path.read_text().splitlines() if FENCE.match(line))
        found = sum(1 for block in ALL_BLOCKS if block.path == path)
        if fences != 2 * found:
            problems.append(f"{path.relative_to(ROOT)}: {fences} fence lines but {found} blocks parsed")
    assert not problems, "\n".join(problems)

    handled: Counter[str] = Counter()
    handled["python"] = sum(1 for chain in CHAINS for block in chain.blocks if block.kind == "python")
    handled["pycon"] = sum(1 for chain in CHAINS for block in chain.blocks if block.kind == "pycon")
    handled["output"] = sum(len(chain.outputs) for chain in CHAINS)
    handled["pycon-ssh"] = sum(1 for blocks in SSH_BLOCKS.values() for block in blocks if block.kind == "pycon-ssh")
    for name in ("app", "serve"):
        assert SSH_BLOCKS[name], f"no `ssh {name}` transcript: test_getting_started_* would check nothing"
    handled["python-file"] = sum(1 for block in blocks_of("python-file") if block.arg("file") in SCENARIO_FILES)
    for kind in ("python-compile", "toml", "shell", "json", "text"):
        handled[kind] = len(blocks_of(kind))
    counts = Counter(block.kind for block in ALL_BLOCKS)
    print("\ndoc code blocks by kind:", dict(sorted(counts.items())), "total", len(ALL_BLOCKS))
    assert handled == counts, f"blocks found {dict(counts)} but handled {dict(handled)}"
    # A parser that silently found nothing would pass everything: insist on the kinds the docs use.
    for kind in ("python", "pycon", "pycon-ssh", "python-compile", "toml", "shell", "json", "text", "output"):
        assert counts[kind] >= 1, f"no {kind} blocks found: is the fence parser broken?"


# -- python / pycon -------------------------------------------------------------------------------

@pytest.mark.parametrize("chain", CHAINS, ids=ids)
def test_python_blocks_run(chain: Chain) -> None:
    result = run_file_chains(chain.blocks[0].path)[chain.where]
    assert result["ok"], (f"{result.get('failed_at', chain.where)} failed:\n{result['error']}"
                          f"\nstderr:\n{result.get('stderr', '')}")
    for index, block in chain.outputs.items():
        got = result["outputs"][index]
        assert check_output(block.text, got), f"{block.where}: output differs\n{output_diff(block.text, got)}"


@pytest.mark.parametrize("block", blocks_of("python-compile", "python-file"), ids=ids)
def test_partial_python_blocks_compile(block: Block) -> None:
    compile("\n" * block.line + block.text, block.where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
            dont_inherit=True)


def test_text_blocks_hide_no_code() -> None:
    """Output blocks are not run, so they must not be where commands or REPL input hide."""
    for block in blocks_of("text", "output"):
        for number, line in enumerate(block.text.splitlines(), start=block.line + 1):
            assert not line.startswith((">>> ", "$ ")), \
                f"{block.path.relative_to(ROOT)}:{number}: input in a text block: use pycon or console"


# -- transcripts over SSH -------------------------------------------------------------------------

#: The blocks of each ``ssh SCENARIO``, in document order (pycon and console blocks).
SSH_BLOCKS: dict[str, list[Block]] = {name: [b for b in ALL_BLOCKS if b.arg("ssh") == name] for name in SSH_SCENARIOS}
#: Files written by ``file NAME`` python blocks and the scenario test that runs them.
SCENARIO_FILES = {"app.py": "test_getting_started_embedded_app", "plugins/hello.py": "test_getting_started_serve"}
GETTING_STARTED = ROOT / "docs" / "getting-started.md"


@dataclasses.dataclass
class Live:
    """A running service the transcripts talk to."""

    conn: asyncssh.SSHClientConnection  # the admin whose pycon transcripts run
    port: int
    known_hosts: Path
    keys: dict[str, Path]  # user -> private key file


async def _openssh(live: Live, words: list[str], stdin: bytes = b"") -> str:
    """Run a doc's ``ssh`` command with the real OpenSSH client against ``live``: its port, its
    host key pinned, the user's key (the doc's own ``-p``/``-i`` are replaced)."""
    args, index = [], 1
    while index < len(words):
        if words[index] in ("-p", "-i"):
            index += 2
            continue
        args.append(words[index])
        index += 1
    destination = next(i for i, a in enumerate(args) if "@" in a and not a.startswith("-"))
    user = args[destination].split("@")[0]
    args[destination] = f"{user}@127.0.0.1"
    argv = ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={live.known_hosts}", "-o", "IdentitiesOnly=yes",
            "-i", str(live.keys[user]), "-p", str(live.port), *args]
    proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await communicate(proc, stdin, 60)
    return out.decode()


async def run_ssh_examples(live: Live, blocks: list[Block]) -> None:
    """pycon examples go over ``live.conn`` as exec requests, console ``ssh`` lines through
    OpenSSH; each output is compared with the doc's."""
    failures = []
    parser = doctest.DocTestParser()
    for block in blocks:
        if block.kind == "shell":
            runs = [(command, want, block.line + 1 + n) for n, (command, want) in enumerate(shell_commands(block))]
            for command, want, line in runs:
                prefix, bar, rest = command.rpartition("| ssh ")  # `printf ... | ssh ...`: feed its output
                (words,) = command_segments("ssh " + rest if bar else command)
                assert words[0] == "ssh", f"{block.where}: only ssh commands run against a live service"
                stdin = subprocess.run(["bash", "-c", prefix], capture_output=True, check=True).stdout if bar else b""
                got = without_blank_lines(await _openssh(live, words, stdin))
                if not check_output(want, got):
                    failures.append(f"{block.where}: {command}\n{output_diff(want, got)}")
            continue
        for example in parser.get_examples(block.text):
            result = await live.conn.run(example.source, check=False)
            got = str(result.stdout) + str(result.stderr)
            want = example.want
            if want.startswith("Traceback (most recent call last):"):  # compare the exception line
                want, got = want.rstrip().splitlines()[-1] + "\n", (got.rstrip().splitlines() or [""])[-1] + "\n"
            if not check_output(want, got):
                line = block.line + 1 + example.lineno
                failures.append(f"{block.path.relative_to(ROOT)}:{line}: {example.source.strip()}\n"
                                f"{output_diff(want, got)}")
    assert not failures, "\n".join(failures)


@contextlib.asynccontextmanager
async def example_service(tmp_path: Path) -> AsyncIterator[Live]:
    """What ``shellsvc demo`` runs - a Service hosting (a copy of) examples/plugins with users
    ``admin`` and ``operator`` - with keys instead of one-time passwords."""
    from shellsvc import Runtime, Service

    shutil.copytree(ROOT / "examples" / "plugins", tmp_path / "plugins", ignore=shutil.ignore_patterns("__pycache__"))
    keys = {user: make_key(tmp_path, f"{user}_key")[1] for user in ("admin", "operator")}
    config = {"server": {"port": 0, "state_dir": str(tmp_path / "state")},
              "limits": {"auth_failure_delay": 0.02},
              "users": {user: {"role": user, "authorized_keys": str(tmp_path / f"{user}_key.pub")} for user in keys}}
    runtime = Runtime()
    try:
        await runtime.load(tmp_path / "plugins")
        async with Service(runtime=runtime, config=config) as service:
            known_hosts = tmp_path / "known_hosts"
            known_hosts.write_text(service.known_hosts_line())
            known = asyncssh.import_known_hosts(service.known_hosts_line())
            async with asyncssh.connect("127.0.0.1", service.port, username="admin", client_keys=[keys["admin"]],
                                        known_hosts=known, agent_path=None, config=None) as conn:
                yield Live(conn, service.port, known_hosts, {user: tmp_path / f"{user}_key" for user in keys})
    finally:
        await runtime.aclose()


SERVICE_FILES = sorted({block.path for block in SSH_BLOCKS["service"]})


@pytest.mark.parametrize("path", SERVICE_FILES, ids=[str(p.relative_to(ROOT)) for p in SERVICE_FILES])
async def test_demo_transcripts(path: Path, tmp_path: Path) -> None:
    """``ssh service`` transcripts: what users of the demo see, example by example, over real SSH."""
    async with example_service(tmp_path) as live:
        await run_ssh_examples(live, [b for b in SSH_BLOCKS["service"] if b.path == path])


# -- getting started: the documented app and `shellsvc serve`, run as documented ---------------

def scenario_block(name: str) -> Block:
    matches = [b for b in ALL_BLOCKS if b.path == GETTING_STARTED and b.arg("file") == name]
    assert len(matches) == 1, f"docs/getting-started.md needs exactly one `file {name}` block"
    return matches[0]


def write_doc_files(path: Path, directory: Path, *, free_port: bool = False) -> None:
    """Write the ``file NAME`` blocks of doc ``path`` into ``directory``."""
    for block in ALL_BLOCKS:
        name = block.arg("file")
        if block.path != path or name is None:
            continue
        text = block.text
        if free_port and name.endswith(".toml"):  # the doc's fixed port may be taken: ask for a free one
            text = re.sub(r"(?m)^port\s*=\s*\d+", "port = 0", text)
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(text)


def replay_run_blocks(path: Path, directory: Path, before: Block | None = None) -> None:
    """The doc's ``run`` shell blocks before ``before`` (all without it), in order, in ``directory``:
    the state the doc has built up by then (keys made with ssh-keygen, directories ...)."""
    for block in ALL_BLOCKS:
        if block == before:
            return
        if block.path == path and block.kind == "shell" and "run" in block.words:
            for command, _ in shell_commands(block):
                run_command(command, directory)


async def read_until(stream: asyncio.StreamReader, pattern: str, timeout: float = 60.0) -> re.Match[str]:
    seen = ""
    deadline = time.monotonic() + timeout
    while True:
        line = (await asyncio.wait_for(stream.readline(), max(0.1, deadline - time.monotonic()))).decode()
        if not line:
            raise AssertionError(f"the process ended before printing {pattern!r}; it printed:\n{seen}")
        seen += line
        match = re.search(pattern, line)
        if match:
            return match


@contextlib.asynccontextmanager
async def documented_process(argv: list[str], directory: Path, config_name: str) -> AsyncIterator[Live]:
    """Start ``argv`` in ``directory``, wait for its listening line, connect as alice with the key
    the config names; on exit, Ctrl-C it and require a clean, quick shutdown."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "HOME": str(directory),
           "PYTHONUNBUFFERED": "1"}
    proc = await asyncio.create_subprocess_exec(*argv, cwd=directory, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    try:
        assert proc.stdout is not None
        port = int((await read_until(proc.stdout, r"listening on [\w.:\[\]]*?:(\d+)\b"))[1])
        rest = asyncio.ensure_future(proc.stdout.read())  # keep the pipe drained
        config = load_config(directory / config_name)
        keys = {name: Path(str(user.authorized_keys_path).removesuffix(".pub")) for name, user in config.users.items()
                if user.authorized_keys_path is not None}
        host_key = config.server.host_key_path.with_name(config.server.host_key_path.name + ".pub").read_text()
        known_hosts = directory / "known_hosts.test"
        known_hosts.write_text(f"[127.0.0.1]:{port} {host_key}")
        async with asyncssh.connect("127.0.0.1", port, username="alice", client_keys=[str(keys["alice"])],
                                    known_hosts=asyncssh.import_known_hosts(known_hosts.read_text()),
                                    agent_path=None, config=None) as conn:
            yield Live(conn, port, known_hosts, keys)
        proc.send_signal(signal.SIGINT)
        output = (await asyncio.wait_for(rest, 15)).decode()
        assert await asyncio.wait_for(proc.wait(), 15) == 0, f"exit status {proc.returncode}:\n{output}"
        events = [json.loads(line)["event"] for line in config.server.audit_log_path.read_text().splitlines()]
        assert events[-1] == "service_stop", events[-5:]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_getting_started_embedded_app(tmp_path: Path) -> None:
    """The getting-started app, its config and key, run as the doc says; Ctrl-C stops it cleanly."""
    write_doc_files(GETTING_STARTED, tmp_path, free_port=True)
    replay_run_blocks(GETTING_STARTED, tmp_path)
    async with documented_process([PYTHON, "app.py"], tmp_path, "shellsvc.toml") as live:
        await run_ssh_examples(live, SSH_BLOCKS["app"])


async def test_getting_started_serve(tmp_path: Path) -> None:
    """`shellsvc serve --config serve.toml` over the doc's plugin, as the doc says."""
    write_doc_files(GETTING_STARTED, tmp_path, free_port=True)
    replay_run_blocks(GETTING_STARTED, tmp_path)
    serve = [words for block in ALL_BLOCKS if block.path == GETTING_STARTED and block.kind == "shell"
             for command, _ in shell_commands(block) for words in command_segments(command)
             if words[:2] == ["shellsvc", "serve"]]
    assert serve, "docs/getting-started.md shows no `shellsvc serve` command"
    async with documented_process([str(BIN / "shellsvc"), *serve[0][1:]], tmp_path, "serve.toml") as live:
        await run_ssh_examples(live, SSH_BLOCKS["serve"])


# -- toml: the config loader ----------------------------------------------------------------------

def accepted_keys() -> dict[str, set[str]]:
    """The keys the loader accepts, per table, read from its own "unknown key" errors."""
    def allowed(data: dict[str, Any]) -> set[str]:
        with pytest.raises(ConfigError) as info:
            parse_config(data, base_dir=ROOT)
        match = re.search(r"\(allowed: (.*)\)$", str(info.value))
        assert match, f"unexpected error for an unknown key: {info.value}"
        return set(match[1].split(", "))

    unknown = {"zzzzzzzzzzzz": 1}
    keys = {"": allowed(unknown), "server": allowed({"server": unknown}), "limits": allowed({"limits": unknown}),
            "users.NAME": allowed({"users": {"someone": unknown}})}
    assert keys["server"] == {f.name for f in dataclasses.fields(ServerConfig)}
    assert keys["limits"] == {f.name for f in dataclasses.fields(LimitsConfig)}
    return keys


def all_config_keys() -> set[str]:
    keys = accepted_keys()
    return {f"{table}.{key}" for table in ("server", "limits", "users.NAME") for key in keys[table]}


def prepare_key_files(text: str, directory: Path) -> None:
    """Create the authorized_keys files a config names (a fresh key each) if they are missing."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return
    users = data.get("users", {})
    for user in users.values() if isinstance(users, dict) else ():
        value = user.get("authorized_keys") if isinstance(user, dict) else None
        if isinstance(value, str) and value:
            path = Path(value).expanduser()
            assert not path.is_absolute() or path.exists(), \
                f"use a relative authorized_keys path in doc examples (or one that exists): {value}"
            path = directory / path
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                key = asyncssh.generate_private_key("ssh-ed25519")
                path.write_bytes(key.export_public_key())


@pytest.mark.parametrize("block", blocks_of("toml"), ids=ids)
def test_toml_blocks_load(block: Block, tmp_path: Path) -> None:
    path = tmp_path / (block.arg("file") or "shellsvc.toml")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(block.text)
    prepare_key_files(block.text, path.parent)
    expected = block.arg("invalid")
    if expected is not None:
        with pytest.raises(ConfigError) as info:
            load_config(path)
        assert expected in str(info.value), f"{block.where}: expected an error containing {expected!r}, got {info.value}"
        return
    load_config(path)
    if "all-keys" in block.words:
        data = tomllib.loads(block.text)
        present = {f"{table}.{key}" for table in ("server", "limits") for key in data.get(table, {})}
        present |= {f"users.NAME.{key}" for user in data.get("users", {}).values() for key in user}
        assert all_config_keys() <= present, f"{block.where} lacks {sorted(all_config_keys() - present)}"


CONFIG_ROW = re.compile(r"^\|\s*`(?P<key>(?:server|limits|users\.NAME)\.[a-z_]+)`\s*\|(?P<type>[^|]*)\|"
                        r"(?P<default>[^|]*)\|(?P<meaning>.*)\|\s*$")


def _expected_type_word(annotation: str) -> str:
    for needle, word in (("tuple[Path", "list of paths"), ("tuple[str", "list of"), ("Path", "path"),
                         ("float", "number"), ("int", "integer"), ("str", "string")):
        if needle in annotation:
            return word
    raise AssertionError(f"no type word for {annotation!r}")


def test_configuration_reference_documents_every_key() -> None:
    """docs/configuration.md has one row per key the loader accepts (and no other), with the
    code's type and default: a new key without docs fails here."""
    rows = {m["key"]: m for m in map(CONFIG_ROW.match, (ROOT / "docs/configuration.md").read_text().splitlines()) if m}
    keys = all_config_keys()
    assert not keys - rows.keys(), f"undocumented config keys: {sorted(keys - rows.keys())}"
    assert not rows.keys() - keys, f"documented keys the loader refuses: {sorted(rows.keys() - keys)}"
    fields = {f"server.{f.name}": f for f in dataclasses.fields(ServerConfig)}
    fields |= {f"limits.{f.name}": f for f in dataclasses.fields(LimitsConfig)}
    defaults = {**{f"server.{k}": v for k, v in vars(ServerConfig()).items()},
                **{f"limits.{k}": v for k, v in vars(LimitsConfig()).items()}}
    problems = []
    for key, row in rows.items():
        if not row["meaning"].strip():
            problems.append(f"{key}: no meaning given")
        if key not in fields:
            continue
        word = _expected_type_word(str(fields[key].type))
        if word not in row["type"].lower():
            problems.append(f"{key}: type column {row['type'].strip()!r} should say {word!r} ({fields[key].type})")
        cell = row["default"].strip()
        literal = re.fullmatch(r"`([^`]*)`", cell)
        try:
            documented = tomllib.loads(f"x = {literal[1]}")["x"] if literal else None
        except tomllib.TOMLDecodeError:
            documented = None
        actual = defaults[key]
        if documented is None:
            if actual is not None:
                problems.append(f"{key}: default column {cell!r} is not the TOML value of {actual!r}")
            continue
        normal = [str(v) for v in actual] if isinstance(actual, tuple) else str(actual) if isinstance(actual, Path) \
            else actual
        if documented != normal:
            problems.append(f"{key}: documented default {documented!r}, the code's is {actual!r}")
    assert not problems, "\n".join(problems)


# -- shell blocks: commands and flags that exist -------------------------------------------------

def shell_commands(block: Block) -> list[tuple[str, str]]:
    """(command, the output shown after it) for each command of a shell block."""
    commands: list[tuple[str, str]] = []
    lines = block.text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        if block.lang == "console":
            if not line.startswith("$ "):
                if line.strip():
                    assert commands, f"{block.where}: output before the first `$ ` command"
                    commands[-1] = (commands[-1][0], commands[-1][1] + line + "\n")
                continue
            line = line[2:]
        elif not line.strip() or line.lstrip().startswith("#"):
            continue
        while line.endswith("\\") and index < len(lines):
            line = line[:-1] + " " + lines[index].strip()
            index += 1
        commands.append((line.strip(), ""))
    return commands


_SEPARATORS = {"|", "||", "&&", ";", "&"}
_REDIRECTS = {"<", ">", ">>", ">&", "<<", "&>"}


def command_segments(command: str) -> list[list[str]]:
    """The simple commands of a shell line: words, without redirections and env assignments."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    segments: list[list[str]] = [[]]
    tokens = list(lexer)
    index = 0
    while index < len(tokens):
        token = tokens[index]
        index += 1
        if token in _SEPARATORS:
            segments.append([])
        elif token in _REDIRECTS:
            index += 1
            if segments[-1] and segments[-1][-1].isdigit():  # 2>file
                segments[-1].pop()
        elif not segments[-1] and re.fullmatch(r"[A-Za-z_]\w*=.*", token):
            continue
        else:
            segments[-1].append(token)
    return [segment for segment in segments if segment]


def _parse(parse: Any, argv: list[str]) -> str | None:
    """None when argparse accepts ``argv``, else its error."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            parse(argv)
    except SystemExit as exc:
        if exc.code not in (0, None):
            return err.getvalue().strip() or f"exit status {exc.code}"
    return None


def shellsvc_parser() -> argparse.ArgumentParser:
    from shellsvc.cli import build_parser

    return build_parser()


def client_parser() -> argparse.ArgumentParser:
    """The parser ``clients.cli.parse_args`` builds (it has no builder of its own)."""
    from clients import cli

    captured: list[argparse.ArgumentParser] = []

    class Got(Exception):
        pass

    def grab(self: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> Any:
        captured.append(self)
        raise Got

    with mock.patch.object(argparse.ArgumentParser, "parse_args", grab), contextlib.suppress(Got):
        cli.parse_args([])
    return captured[0]


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return set(parser._option_string_actions)


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


OPTION = re.compile(r"(?<![\w@/.=-])(--?[A-Za-z][\w-]*)")
_script_help: dict[Path, str] = {}


def _script_flags_problem(script: Path, args: list[str]) -> str | None:
    if not script.exists():
        return f"{script.relative_to(ROOT)} does not exist"
    flags = [a.split("=", 1)[0] for a in args if a.startswith("-")]
    if not flags:
        return None
    if script not in _script_help:
        proc = subprocess.run([PYTHON, str(script), "--help"], capture_output=True, text=True, timeout=120, cwd=ROOT)
        _script_help[script] = proc.stdout + proc.stderr
    missing = [f for f in flags if not re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", _script_help[script])]
    return f"{script.relative_to(ROOT)} --help lists no {', '.join(missing)}" if missing else None


def check_segment(words: list[str], synopsis: bool) -> str | None:
    """What is wrong with one simple command of a doc, or None."""
    program = os.path.basename(words[0])
    args = words[1:]
    if program in ("python", "python3"):
        if args[:1] == ["-m"]:
            module = args[1] if len(args) > 1 else ""
            if module == "shellsvc":
                program, args = "shellsvc", args[2:]
            elif module == "clients":
                program, args = "shellsvc-client", args[2:]
            elif module in ("pytest", "venv", "pip"):
                return None
            else:
                return f"unknown module in `python -m {module}`"
        elif args and args[0].endswith(".py"):
            script = (ROOT / args[0]).resolve()
            if args[0].split("/")[0] in ("benchmarks", "examples", "tests", "clients", "shellsvc", "patches"):
                return _script_flags_problem(script, args[1:])
            return None  # the reader's own script (app.py)
        else:
            return None if not args or args[0] == "-c" else f"cannot check `python {' '.join(args)}`"
    if program in ("shellsvc", "shellsvc-client"):
        if synopsis:
            parser = shellsvc_parser() if program == "shellsvc" else client_parser()
            options = _options(parser)
            if program == "shellsvc":
                positional = [a for a in args if not a.startswith("-")]
                sub = _subparsers(parser).get(positional[0]) if positional else None
                options |= _options(sub) if sub else set()
            unknown = sorted({f for a in args for f in OPTION.findall(a)} - options)
            return f"{program} has no option {', '.join(unknown)}" if unknown else None
        if program == "shellsvc":
            error = _parse(shellsvc_parser().parse_args, args)
        else:
            from clients.cli import parse_args

            error = _parse(parse_args, args)
        return f"`{program} {' '.join(args)}` is refused by its parser: {error}" if error else None
    if program == "ssh":
        if synopsis or not shutil.which("ssh"):
            return None
        with tempfile.TemporaryDirectory() as home:
            proc = subprocess.run(["ssh", "-G", "-F", "/dev/null", *args], capture_output=True, text=True,
                                  timeout=30, env={**os.environ, "HOME": home})
        return f"`ssh {' '.join(args)}`: {proc.stderr.strip()}" if proc.returncode else None
    if program in KNOWN_PROGRAMS or program in ("python3", ".venv/bin/python"):
        return None
    return f"unknown program {program!r} (a typo? else add it to KNOWN_PROGRAMS in tests/test_docs.py)"


def run_command(command: str, directory: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "HOME": str(directory),
           "COLUMNS": "100", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(["bash", "-c", command], cwd=directory, env=env, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)


@pytest.mark.parametrize("block", blocks_of("shell"), ids=ids)
def test_shell_blocks(block: Block, tmp_path: Path) -> None:
    commands = shell_commands(block)
    assert commands, f"{block.where}: a shell block without commands"
    if "synopsis" in block.words:  # usage lines: `[-p PORT]`, `A | B` alternatives, trailing prose
        problems = [f"{block.where}: {problem}" for command, _ in commands
                    if (problem := check_segment(command.split(), True))]
    else:
        problems = [f"{block.where}: {problem}" for command, _ in commands for words in command_segments(command)
                    if (problem := check_segment(words, False))]
    assert not problems, "\n".join(problems)
    if "run" in block.words:
        write_doc_files(block.path, tmp_path)
        replay_run_blocks(block.path, tmp_path, before=block)
        for command, want in commands:
            proc = run_command(command, tmp_path)
            if want:  # the doc shows what it prints (an error message, say): that is the claim
                got = without_blank_lines(proc.stdout)
                assert check_output(want, got), f"{block.where}: `{command}`\n{output_diff(want, got)}"
            else:
                assert proc.returncode == 0, f"{block.where}: `{command}` exited {proc.returncode}:\n{proc.stdout}"


def test_the_shell_checks_catch_wrong_commands() -> None:
    """The checker itself: a flag that does not exist fails, in each kind of command."""
    assert check_segment(["shellsvc", "serve", "--config", "x.toml"], False) is None
    assert check_segment(["shellsvc", "serve", "--conf1g", "x.toml"], False)
    assert check_segment(["shellsvc-client", "admin@host", "-c", "1"], False) is None
    assert check_segment(["shellsvc-client", "admin@host", "--colour"], False)
    assert check_segment(["shellsvc-client", "[--batch]", "[--nope]", "user@host"], True)
    assert check_segment(["shellsvc", "demo", "[--port", "PORT]"], True) is None
    assert check_segment(["shellsvc", "demo", "[--prot", "PORT]"], True)
    assert check_segment(["sshh", "host"], False)
    assert check_segment(["python", "benchmarks/no_such_bench.py"], False)
    if shutil.which("ssh"):
        assert check_segment(["ssh", "-p", "8022", "admin@127.0.0.1"], False) is None
        assert check_segment(["ssh", "-Z", "admin@127.0.0.1"], False)
    assert command_segments("echo 'pw' | FOO=1 shellsvc passwd > hash.txt 2>/dev/null") == \
        [["echo", "pw"], ["shellsvc", "passwd"]]


# -- json: protocol frames ------------------------------------------------------------------------

SERVER_FRAME_FIELDS = {
    "hello": {"type", "protocol", "version", "server", "user", "role", "session", "pid", "python", "requests",
              "topics"},
    "reply": None,  # ok, id, error or the request's result fields
    "output": {"type", "id", "stream", "data"},
    "input_request": {"type", "id", "prompt_id", "prompt"},
    "event": {"type", "topic", "event"},
}


def validate_frame(frame: Any) -> None:
    """A frame as docs/client.md shows it must be one shellsvc.protocol defines."""
    from shellsvc.patching.events import EVENT_KINDS as PATCH_KINDS
    from shellsvc.runtime.events import EVENT_KINDS as RUNTIME_KINDS

    assert isinstance(frame, dict) and isinstance(frame.get("type"), str), f"not a frame: {frame!r}"
    kind = frame["type"]
    if kind in protocol.REQUEST_FIELDS and not (kind == "hello" and "protocol" in frame):
        protocol.check_request(frame)  # raises RequestError naming the field
        extra = set(frame) - set(protocol.REQUEST_FIELDS[kind]) - {"type", "id"}
        assert not extra, f"{kind} has no field(s) {sorted(extra)}"
        for topic in frame.get("topics", []):
            assert topic in protocol.TOPICS, f"no topic {topic!r}"
        return
    assert kind in SERVER_FRAME_FIELDS, f"no frame type {kind!r}"
    fields = SERVER_FRAME_FIELDS[kind]
    if fields is not None:
        assert set(frame) <= fields, f"{kind} has no field(s) {sorted(set(frame) - fields)}"
    if kind == "hello":
        assert frame["protocol"] == protocol.PROTOCOL and frame["version"] == protocol.VERSION
        assert set(frame["requests"]) <= protocol.ADMIN_REQUESTS and set(frame["topics"]) <= set(protocol.TOPICS)
        assert frame["role"] in ("admin", "operator")
    elif kind == "reply":
        assert frame["id"] is None or isinstance(frame["id"], int)
        assert isinstance(frame["ok"], bool)
        if not frame["ok"]:
            assert frame["error"]["code"] in protocol.ERROR_CODES, f"no error code {frame['error']['code']!r}"
            assert isinstance(frame["error"]["message"], str)
    elif kind == "output":
        assert frame["stream"] in ("stdout", "stderr") and isinstance(frame["data"], str)
    elif kind == "input_request":
        assert isinstance(frame["prompt_id"], int) and isinstance(frame["id"], int)
    elif kind == "event":
        assert frame["topic"] in protocol.TOPICS
        kinds = RUNTIME_KINDS if frame["topic"] == "runtime" else PATCH_KINDS
        assert frame["event"]["kind"] in kinds, f"no {frame['topic']} event kind {frame['event']['kind']!r}"


@pytest.mark.parametrize("block", blocks_of("json"), ids=ids)
def test_json_blocks_are_protocol_frames(block: Block) -> None:
    for number, line in enumerate(block.text.splitlines(), start=block.line + 1):
        if line.strip():
            try:
                validate_frame(json.loads(line))
            except (ValueError, AssertionError, KeyError, TypeError, protocol.RequestError) as exc:
                raise AssertionError(f"{block.path.relative_to(ROOT)}:{number}: {exc!r}\n{line}") from None


def test_inline_protocol_frames_are_valid() -> None:
    """`{"type": ...}` spans in the prose of docs/client.md are frames too."""
    text = (ROOT / "docs/client.md").read_text()
    spans = re.findall(r'`(\{"type".*?\})`', text)
    assert len(spans) >= 5
    for span in spans:
        try:
            validate_frame(json.loads(span))
        except (ValueError, AssertionError, KeyError, TypeError, protocol.RequestError) as exc:
            raise AssertionError(f"docs/client.md: {exc!r}\n{span}") from None


def test_the_frame_check_catches_wrong_frames() -> None:
    for bad in ({"type": "eval", "id": 1}, {"type": "eval", "id": 1, "code": "1", "colour": 1},
                {"type": "reply", "id": 1, "ok": False, "error": {"code": "nope", "message": ""}},
                {"type": "event", "topic": "runtime", "event": {"kind": "exploded"}}, {"type": "hug"}):
        with pytest.raises((AssertionError, protocol.RequestError, KeyError)):
            validate_frame(bad)


# -- the public API: every name of shellsvc.__all__ is documented -------------------------------

def _default_text(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 and "<" not in text else "..."


def simple_signature(obj: Any) -> str | None:
    """``(a, b=1, *, c=None)``: names, kinds and defaults, no annotations; None without one."""
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    parts: list[str] = []
    star = positional_only = False
    for parameter in signature.parameters.values():
        if parameter.name.startswith("_"):
            continue
        if parameter.kind is parameter.POSITIONAL_ONLY:
            positional_only = True
        elif positional_only:
            parts.append("/")
            positional_only = False
        if parameter.kind is parameter.VAR_POSITIONAL:
            parts.append("*" + parameter.name)
            star = True
            continue
        if parameter.kind is parameter.VAR_KEYWORD:
            parts.append("**" + parameter.name)
            continue
        if parameter.kind is parameter.KEYWORD_ONLY and not star:
            parts.append("*")
            star = True
        text = parameter.name
        if parameter.default is not parameter.empty:
            text += "=" + _default_text(parameter.default)
        parts.append(text)
    if positional_only:
        parts.append("/")
    return "(" + ", ".join(parts) + ")"


API_ROW = re.compile(r"^\|\s*`(?P<name>[A-Za-z_]\w*)(?P<signature>\(.*?\))?`\s*\|(?P<rest>.*)\|\s*$")


def test_every_public_name_is_documented() -> None:
    """docs/api.md has a row for each name in ``shellsvc.__all__`` (and no other), with the real
    signature, linking to a page that explains it."""
    rows = {m["name"]: m for m in map(API_ROW.match, (ROOT / "docs/api.md").read_text().splitlines()) if m}
    names = set(shellsvc.__all__)
    assert not names - rows.keys(), f"exported but not in docs/api.md: {sorted(names - rows.keys())}"
    assert not rows.keys() - names, f"in docs/api.md but not exported: {sorted(rows.keys() - names)}"
    problems = []
    for name, row in rows.items():
        obj = getattr(shellsvc, name)
        expected = simple_signature(obj) if callable(obj) else None
        if (row["signature"] or None) != expected:
            problems.append(f"{name}: docs/api.md shows {row['signature']!r}, the code's signature is {expected!r}")
        links = re.findall(r"\]\(([\w-]+\.md)(?:#[\w-]+)?\)", row["rest"])
        if not links:
            problems.append(f"{name}: no link to the page that explains it")
        for link in links:
            page = ROOT / "docs" / link
            if not page.exists() or not re.search(rf"`[^`]*\b{re.escape(name)}\b[^`]*`", page.read_text()):
                problems.append(f"{name}: docs/{link} does not mention `{name}`")
    assert not problems, "\n".join(problems)


# -- links ----------------------------------------------------------------------------------------

def _slug(heading: str) -> str:
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_links_between_docs_resolve() -> None:
    problems = []
    for path in DOC_FILES:
        text = re.sub(r"(?ms)^(```|~~~).*?^\1", "", path.read_text())  # links inside code are not links
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            resolved = (path.parent / file).resolve() if file else path
            if not resolved.exists():
                problems.append(f"{path.relative_to(ROOT)}: link to missing {target}")
            elif anchor and resolved.suffix == ".md":
                slugs = {_slug(h) for h in re.findall(r"(?m)^#+\s+(.*)$", resolved.read_text())}
                if anchor not in slugs:
                    problems.append(f"{path.relative_to(ROOT)}: no heading #{anchor} in {file or path.name}")
    assert not problems, "\n".join(problems)


def test_protocol_tables_match_the_protocol_module() -> None:
    """docs/client.md's request and error-code tables list exactly what shellsvc.protocol defines."""
    text = (ROOT / "docs/client.md").read_text()
    requests = dict(re.findall(r"(?m)^\| `(\w+)` \|[^|]*\| (admin|both) \|", text))
    assert requests.keys() == protocol.REQUEST_FIELDS.keys(), sorted(requests.keys() ^ protocol.REQUEST_FIELDS.keys())
    for name, role in requests.items():
        assert (role == "both") == (name in protocol.OPERATOR_REQUESTS), f"docs/client.md: {name} is for {role}"
    codes = set(re.findall(r"(?m)^\| `(\w+)` \| [^|]*\|$", text)) - requests.keys()
    assert codes == set(protocol.ERROR_CODES), sorted(codes ^ set(protocol.ERROR_CODES))
