"""Smoke test of benchmarks/compare_peers.py: it runs end to end and tells the peers apart."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "compare_peers.py"


def parse_table(output: str) -> dict[str, dict[str, str]]:
    """The Markdown table as ``{row title: {column label: cell}}``."""
    lines = [line for line in output.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in lines[0].strip("|").split(" | ")]
    table = {}
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip("|").split(" | ")]
        table[cells[0]] = dict(zip(header[1:], cells[1:], strict=True))
    return table


def row(table: dict[str, dict[str, str]], start: str) -> dict[str, str]:
    return next(cells for title, cells in table.items() if title.startswith(start))


def test_compare_peers_quick_runs() -> None:
    pytest.importorskip("ptpython", reason="the bench extra (pip install -e '.[bench]') is not installed")
    # ptpython only: with every peer the quick run takes longer than a smoke test should.
    result = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--peers", "shellsvc,ptpython"],
                            capture_output=True, text=True, timeout=170)
    assert result.returncode == 0, result.stderr[-2000:]
    table = parse_table(result.stdout)
    assert set(row(table, "eval round trip, terminal")) == {"shellsvc", "ptpython run_async"}
    # Figures are printed, with the ratios against the baseline measured in the same run.
    assert "× raw echo" in row(table, "eval round trip, `ssh host")["shellsvc"]
    assert "× shellsvc" in row(table, "eval round trip, terminal")["ptpython run_async"]
    shellsvc = {title: cells["shellsvc"] for title, cells in table.items() if "shellsvc" in cells}
    ptpython = {title: cells["ptpython run_async"] for title, cells in table.items() if "ptpython run_async" in cells}
    # What a user sees: shellsvc interrupts a busy loop and keeps the app running; ptpython, which
    # evaluates on the app's loop, does neither.
    assert shellsvc["Ctrl-C stops `while True: pass`?"].startswith("yes"), result.stdout
    assert shellsvc["session usable after Ctrl-C?"] == "yes", result.stdout
    assert shellsvc["app loop runs during `while True: pass`?"] == "yes", result.stdout
    assert ptpython["Ctrl-C stops `while True: pass`?"].startswith("NO"), result.stdout
    assert ptpython["app loop runs during `while True: pass`?"].startswith("NO"), result.stdout
    # Both embeddings keep two simultaneous users apart (ptpython's when run with run_async).
    for cells in (shellsvc, ptpython):
        assert cells["two users: B sees A's variable?"] == "no (separate)", result.stdout
        assert cells["two users typing at once: keystrokes cross-wired?"] == "no", result.stdout
        assert cells["two users: where print() goes"] == "own terminal", result.stdout
