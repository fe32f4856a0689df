"""Progress in a pipe: plain, flushed lines at 10 % steps once a loop has run a second; nothing when quiet."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from aetool.progress import ProgressLines, progress

ROOT = Path(__file__).resolve().parents[1]
LINE = re.compile(r"^epoch 3/10: (\d+)% \((\d+)/40, (\d+) s\)$")


def _run_loop(n: int, sleep: float, quiet: bool = False, desc: str = "epoch 3/10") -> subprocess.CompletedProcess:
    """Iterate a progress-wrapped loop in a child whose stderr is a pipe (so not a terminal)."""
    code = textwrap.dedent(f"""
        import sys, time
        from aetool.progress import progress
        assert not sys.stderr.isatty()
        total = 0
        for i in progress(range({n}), quiet={quiet}, desc={desc!r}, unit="batch"):
            time.sleep({sleep})
            total += i
        print(total)
    """)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_piped_loop_prints_increasing_percentages():
    r = _run_loop(40, 0.04)  # about 1.6 s
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(sum(range(40)))  # the loop ran over every item, once
    lines = r.stderr.splitlines()
    assert 1 <= len(lines) <= 11, lines
    matches = [LINE.match(line) for line in lines]
    assert all(matches), lines
    percents = [int(m.group(1)) for m in matches]
    assert percents == sorted(set(percents)), percents  # strictly increasing
    assert percents[-1] == 100
    assert all(int(m.group(2)) == int(m.group(1)) * 40 // 100 for m in matches)
    assert all(int(m.group(3)) >= 1 for m in matches)  # nothing in the first second


def test_quiet_prints_nothing():
    r = _run_loop(40, 0.04, quiet=True)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""


def test_fast_loop_prints_nothing():
    r = _run_loop(40, 0.001)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""


def test_line_mode_is_an_iterable_without_set_postfix(capsys):
    bar = progress(range(5), desc="x")  # pytest captures stderr: not a terminal
    assert isinstance(bar, ProgressLines)
    assert not hasattr(bar, "set_postfix")
    assert len(bar) == 5 and list(bar) == list(range(5))
    assert list(progress(iter("abc"))) == ["a", "b", "c"]  # no len: still iterates
    assert progress([1, 2], quiet=True) == [1, 2]
    assert capsys.readouterr().err == ""


def test_unknown_length_prints_every_interval(monkeypatch, capsys):
    import aetool.progress as p

    clock = iter(float(t) for t in range(0, 1000, 10))  # each call 10 s later
    monkeypatch.setattr(p.time, "monotonic", lambda: next(clock))
    assert list(progress(iter(range(7)), desc="scan")) == list(range(7))
    lines = capsys.readouterr().err.splitlines()
    assert lines and all(re.match(r"^scan: \d+ done \(\d+ s\)$", line) for line in lines)
    assert len(lines) == 2  # at 30 s and 60 s of the 70 s


@pytest.mark.parametrize("total", [1, 3, 1000])
def test_never_more_than_eleven_lines(monkeypatch, capsys, total):
    import aetool.progress as p

    clock = iter(float(t) for t in range(10**6))  # a second per item: every boundary is printed
    monkeypatch.setattr(p.time, "monotonic", lambda: next(clock))
    assert sum(1 for _ in progress(range(total))) == total
    lines = capsys.readouterr().err.splitlines()
    assert 1 <= len(lines) <= 11
    assert lines[-1].startswith("100% ")
