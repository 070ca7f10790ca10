"""A 2-worker local sweep of 4 Q-learning runs against the same 4 runs one after another.

Both train qlearning on frozenlake (4x4, slippery) with seeds 0-3 and the same settings;
the sequential side runs them in this process, one after another (its imports are
done already, so it pays nothing to start), the sweep in a pool of 2 worker processes
(`gymkit sweep agent frozenlake --algo qlearning --seeds 0-3 --workers 2`). Prints both
wall times, their ratio and the machine's core count; the goal is a ratio <= 0.6.

    python benchmarks/sweep.py [--steps 400000] [--rounds 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

# `python benchmarks/sweep.py` puts benchmarks/ first on sys.path, where generative.py would
# shadow the generative plugin package (and import torch) in every process: drop it.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from toolkit import launch  # noqa: E402
from toolkit.rundir import RunDir  # noqa: E402
from toolkit.sweep import SweepDefinition, run_sweep  # noqa: E402

SEEDS = [0, 1, 2, 3]
SETS = ["final_eval_episodes=100"]


def sequential(steps: int, runs: Path) -> float:
    start = time.perf_counter()
    for seed in SEEDS:
        prepared = launch.prepare("agent", "frozenlake", "qlearning", assignments=SETS,
                                  flags={"seed": seed, "steps": steps})
        runner = launch.start(prepared, runs, quiet=True)
        try:
            assert runner.run().status == "completed"
        finally:
            runner.trainer.close()
    return time.perf_counter() - start


def swept(steps: int, runs: Path, workers: int) -> tuple[float, float]:
    """The sweep's wall time and its runs' median training time (summary.json's
    wall_time_s): that one above the sequential runs' means the cores were shared."""
    definition = SweepDefinition("agent", "frozenlake", "qlearning", SEEDS, {},
                                 assignments=SETS, flags={"steps": steps})
    start = time.perf_counter()
    result = run_sweep(definition, runs, workers=workers)
    elapsed = time.perf_counter() - start
    assert result.ran == len(SEEDS) and not result.failed, result.trials
    walls = [RunDir(t.run_dir).read_summary()["wall_time_s"] for t in result.trials if t.run_dir]
    return elapsed, statistics.median(walls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400_000, help="steps per run")
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    one, pool, per_run = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            one.append(sequential(args.steps, Path(tmp) / f"seq{r}"))
            elapsed, run_wall = swept(args.steps, Path(tmp) / f"sweep{r}", args.workers)
            pool.append(elapsed)
            per_run.append(run_wall)
    a, b = statistics.median(one), statistics.median(pool)
    print(f"cores (os.cpu_count): {os.cpu_count()}")
    print(f"4 qlearning runs of {args.steps:,} steps on frozenlake, median of {args.rounds}")
    print(f"  one after another:        {a:6.2f} s  ({a / len(SEEDS):.2f} s per run)")
    print(f"  local sweep, {args.workers} workers:   {b:6.2f} s  (a run inside it trained for "
          f"{statistics.median(per_run):.2f} s)")
    print(f"  ratio sweep / sequential: {b / a:.2f}  (goal <= 0.6)")


if __name__ == "__main__":
    main()
