"""Wall time of whole processes, run one after another: what a user waits for.

Shared by the benchmarks' `--whole` modes. Each turn starts with a different command, so
that a drift in the machine's load falls on every side alike over the turns."""

from __future__ import annotations

import subprocess
import time


def run_in_turn(commands: dict[str, list[str]], turn: int) -> dict[str, float]:
    """Each command's wall time in seconds, run once each, starting with command number
    `turn` (modulo their count); a command that fails stops the benchmark."""
    names = list(commands)
    start = turn % len(names)
    walls = {}
    for name in names[start:] + names[:start]:
        started = time.perf_counter()
        subprocess.run(commands[name], check=True, stdout=subprocess.DEVNULL)
        walls[name] = time.perf_counter() - started
    return walls
