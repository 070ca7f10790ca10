"""Wall time of short gymkit commands, as a user types them, against their goals.

Each command runs as a fresh process several times, alternating, and the
median is reported next to `python -c pass` (the interpreter alone) and
`python -c "import torch"` (what a tabular run no longer pays for).

    python benchmarks/startup.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time

GYMKIT = [sys.executable, "-m", "toolkit"]


def commands(runs_dir: str) -> list[tuple[str, list[str], float | None]]:
    """(label, argv, goal in seconds or None)."""
    return [
        ("python -c pass", [sys.executable, "-c", "pass"], None),
        ('python -c "import torch"', [sys.executable, "-c", "import torch"], None),
        ("gymkit list", [*GYMKIT, "list"], 0.5),
        ("gymkit run agent nosuchenv (error)", [*GYMKIT, "run", "agent", "nosuchenv"], 0.5),
        ("gymkit run agent frozenlake --set gama=1 (error)",
         [*GYMKIT, "run", "agent", "frozenlake", "--set", "gama=1"], 0.5),
        ("gymkit run agent frozenlake --steps 1000",
         [*GYMKIT, "run", "agent", "frozenlake", "--steps", "1000", "-q", "--runs-dir",
          runs_dir], 1.5),
    ]


def wall_time(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as runs_dir:
        table = commands(runs_dir)
        times: dict[str, list[float]] = {label: [] for label, _, _ in table}
        for _ in range(args.rounds):
            for label, argv, _ in table:
                times[label].append(wall_time(argv))
    print(f"wall time, median of {args.rounds} fresh processes each")
    for label, _, goal in table:
        median = statistics.median(times[label])
        verdict = "" if goal is None else f"goal < {goal:.1f} s: " + (
            "met" if median < goal else "MISSED")
        print(f"{label:<50} {median:6.2f} s  {verdict}")


if __name__ == "__main__":
    main()
