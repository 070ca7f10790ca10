from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from toolkit import launch
from toolkit.checkpoint import load_checkpoint
from toolkit.runner import RunResult


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """One torch thread, as gymkit's runs use by default (``threads=1``), restored after: on
    a shared 2-core machine two threads per small matrix product wait for each other and
    run many times slower (the textbook DBN classifier took 79 s instead of 4). A module
    opts in with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    return tmp_path / "runs"


@pytest.fixture(scope="module")
def frozenlake_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small completed run of frozenlake-deterministic's default agent, made through the
    CLI; tests that edit it work on a copy."""
    from typer.testing import CliRunner

    from toolkit.cli import app

    runs = tmp_path_factory.mktemp("runs")
    result = CliRunner().invoke(app, ["run", "agent", "frozenlake-deterministic", "--runs-dir",
                                      str(runs), "--steps", "2000", "--set", "eval_every=1000",
                                      "--set", "eval_episodes=5", "--set",
                                      "final_eval_episodes=5", "-q"])
    assert result.exit_code == 0, result.output
    (path,) = runs.iterdir()
    return path


def train(runs_dir: Path, target: str = "frozenlake", *, seed: int = 0, steps: int = 6000,
          sets: list[str] | None = None, **runner_kwargs: Any) -> RunResult:
    """A quiet, small run of the env's default agent."""
    prepared = launch.prepare("agent", target, assignments=["eval_every=2000",
                              "checkpoint_every=3000", "eval_episodes=20",
                              "final_eval_episodes=50", *(sets or [])],
                              flags={"seed": seed, "steps": steps})
    runner = launch.start(prepared, runs_dir, quiet=True, **runner_kwargs)
    try:
        return runner.run()
    finally:
        runner.trainer.close()


def metrics_lines(run_path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_path / "metrics.jsonl").read_text().splitlines()]


def q_table(run_path: Path, which: str = "last") -> list[list[float]]:
    return load_checkpoint(run_path / "checkpoints" / f"{which}.pt")["trainer"]["q"]
