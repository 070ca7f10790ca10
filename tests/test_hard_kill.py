"""A real SIGKILL in mid-run, then `gymkit resume`, against an uninterrupted run; and
`gymkit eval --checkpoint` reading the checkpoint it names."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import metrics_lines, q_table, train
from typer.testing import CliRunner

from toolkit.checkpoint import load_checkpoint, save_checkpoint
from toolkit.cli import app

GYMKIT = [sys.executable, "-m", "toolkit"]
ARGS = ["run", "agent", "frozenlake", "--seed", "8", "--steps", "40000", "-q",
        "--set", "eval_every=10000", "--set", "checkpoint_every=5000",
        "--set", "steps_per_call=500", "--set", "final_eval_episodes=100"]


def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    runs = tmp_path / "killed"
    process = subprocess.Popen([*GYMKIT, *ARGS, "--runs-dir", str(runs)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # past the second checkpoint, before the end
        found = list(runs.glob("*/metrics.jsonl"))
        if found and any(json.loads(line)["step"] >= 12000
                         for line in found[0].read_text().splitlines() if line.endswith("}")):
            break
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    (path,) = runs.iterdir()
    assert json.loads((path / "summary.json").read_text())["status"] == "running"
    assert load_checkpoint(path / "checkpoints" / "last.pt")["trainer"]["steps"] < 40000

    resumed = subprocess.run([*GYMKIT, "resume", str(path), "-q"], capture_output=True,
                             text=True, env=env)
    assert resumed.returncode == 0, resumed.stderr
    full = tmp_path / "full"
    done = subprocess.run([*GYMKIT, *ARGS, "--runs-dir", str(full)], capture_output=True,
                          text=True, env=env)
    assert done.returncode == 0, done.stderr
    (full_path,) = full.iterdir()
    assert metrics_lines(path) == metrics_lines(full_path)
    assert q_table(path) == q_table(full_path)


def test_eval_reads_the_checkpoint_it_is_asked_for(tmp_path: Path) -> None:
    result = train(tmp_path, "frozenlake-deterministic", steps=3000)
    path = result.rundir.path
    # best.pt: an untrained table; its greedy policy walks LEFT forever and never succeeds.
    best = load_checkpoint(path / "checkpoints" / "best.pt")
    best["trainer"]["q"] = [[0.0] * 4 for _ in range(16)]
    save_checkpoint(path / "checkpoints" / "best.pt", best)
    cli = CliRunner()
    last_out = cli.invoke(app, ["eval", str(path), "--episodes", "10"]).output
    best_out = cli.invoke(app, ["eval", str(path), "--episodes", "10", "--checkpoint", "best"]
                          ).output
    assert "last.pt" in last_out and "best.pt" in best_out
    assert _success_rate(last_out) == "1.000" and _success_rate(best_out) == "0.000"


def _success_rate(output: str) -> str:
    (line,) = [line for line in output.splitlines() if "success rate" in line]
    return line.split("success rate")[1].split()[1]
