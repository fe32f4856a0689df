"""scripts/gpu_candidates.sh's wiring, with a stand-in for python3 (a GPU call is minutes; its plumbing is not).

The stand-in records each call and makes the folders train_for.py would, so the test
checks what the shell script asks for: held-out twins that take their length
from the run on all images, second phases, scores of the held-out runs only, and
which folders come back."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAKE = '''#!{python}
import json, os, sys
from pathlib import Path
args = sys.argv[1:]
with open(os.environ["CALLS"], "a") as calls:
    calls.write(json.dumps(args) + "\\n")
if args and args[0] == "scripts/train_for.py":
    out = Path(args[args.index("--out") + 1])
    for folder in [out] + ([Path(str(out) + "-then")] if "--then-epochs" in args else []):
        folder.mkdir(parents=True)
        (folder / "checkpoint.pt").write_text("weights")
        (folder / "metrics.json").write_text("{{}}")
elif args and args[0] == "scripts/score_runs.py":
    print(json.dumps({{"run": args[1]}}))
elif args[:1] == ["-c"]:
    sys.exit(1)  # no CUDA provider: no benchmark
'''


def run_candidates(tmp_path: Path, candidates: str, **env: str) -> tuple[subprocess.CompletedProcess, list[list[str]]]:
    bin_dir, out = tmp_path / "bin", tmp_path / "out"
    bin_dir.mkdir()
    out.mkdir()
    fake = bin_dir / "python3"
    fake.write_text(FAKE.format(python=sys.executable))
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    calls = tmp_path / "calls.jsonl"
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_candidates.sh")], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120,
                          env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CALLS": str(calls),
                               "OUT": str(out), "BUDGET": "30", "CANDIDATES": candidates, **env})
    lines = calls.read_text().splitlines() if calls.exists() else []
    return proc, [json.loads(line) for line in lines]


def option(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


def test_twins_hold_out_score_and_come_back(tmp_path):
    proc, calls = run_candidates(tmp_path, "plain 16 64 1e-3 100 -\nshifted 8 64 1e-3 100 - 1 8:1e-4:7 3",
                                 HOLDOUT="10000", TWINS="1")
    assert proc.returncode == 0, proc.stderr
    trains = {option(c, "--out"): c for c in calls if c[0] == "scripts/train_for.py"}
    assert set(trains) == {"models/plain", "models/plain-holdout", "models/shifted", "models/shifted-holdout"}
    # the runs on all images fit their length; the held-out ones take it from them
    assert option(trains["models/plain"], "--holdout") is None and option(trains["models/plain"], "--epochs-from") is None
    assert option(trains["models/plain-holdout"], "--holdout") == "10000"
    assert option(trains["models/plain-holdout"], "--epochs-from") == "models/plain"
    for run in ("models/shifted", "models/shifted-holdout"):
        assert [option(trains[run], k) for k in ("--shift", "--then-epochs", "--then-lr", "--then-average", "--seed")] \
            == ["1", "8", "1e-4", "7", "3"]
    assert option(trains["models/plain"], "--then-epochs") is None
    assert [option(trains["models/plain"], k) for k in ("--shift", "--seed")] == ["0", "0"]
    scored = [c[1] for c in calls if c[0] == "scripts/score_runs.py"]
    assert sorted(scored) == ["models/plain-holdout", "models/shifted-holdout", "models/shifted-holdout-then"]
    out = tmp_path / "out"
    assert sorted(json.loads(line)["run"] for line in (out / "scores.jsonl").read_text().splitlines()) == sorted(scored)
    with tarfile.open(out / "shifted.tar") as tar:  # the twin on all images comes back whole, with its second phase
        assert {"shifted/checkpoint.pt", "shifted-then/checkpoint.pt"} <= set(tar.getnames())
    with tarfile.open(out / "heldout.tar") as tar:  # the held-out runs' histories only
        assert set(tar.getnames()) == {f"{run[len('models/'):]}/metrics.json" for run in scored}
    assert len(list(out.iterdir())) <= 8  # what a device call brings back


def test_twins_need_a_holdout(tmp_path):
    proc, calls = run_candidates(tmp_path, "plain 16 64 1e-3 100 -", TWINS="1")
    assert proc.returncode == 2 and "set HOLDOUT" in proc.stderr and calls == []
