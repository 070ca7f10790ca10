"""The runner: determinism, interruption and resume, logs, statuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import metrics_lines, q_table, train
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from toolkit import launch
from toolkit.errors import GymkitError
from toolkit.runner import Runner


def test_same_seed_gives_identical_metrics_and_q_table(runs_dir: Path) -> None:
    a = train(runs_dir, seed=0).rundir.path
    b = train(runs_dir, seed=0).rundir.path
    c = train(runs_dir, seed=1).rundir.path
    assert a != b
    assert (a / "metrics.jsonl").read_bytes() == (b / "metrics.jsonl").read_bytes()
    assert torch.equal(q_table(a), q_table(b))
    assert metrics_lines(a) != metrics_lines(c)
    assert not torch.equal(q_table(a), q_table(c))


def _stop_at(step: int):
    def on_step(runner: Runner) -> None:
        if runner.trainer.progress()["steps"] >= step:
            runner.request_stop()
    return on_step


@pytest.mark.parametrize("stop_at", [1, 2500, 4100])
def test_interrupt_then_resume_equals_uninterrupted(runs_dir: Path, stop_at: int) -> None:
    full = train(runs_dir, seed=4).rundir.path
    interrupted = train(runs_dir, seed=4, on_step=_stop_at(stop_at))
    assert interrupted.status == "interrupted"
    path = interrupted.rundir.path
    assert json.loads((path / "summary.json").read_text())["status"] == "interrupted"
    assert q_table(path).shape == (16, 4)

    runner, checkpoint = launch.resume(path, quiet=True)
    result = runner.run(checkpoint)
    assert result.status == "completed"
    assert metrics_lines(path) == metrics_lines(full)
    assert torch.equal(q_table(path), q_table(full))


def test_resume_drops_metrics_written_after_the_checkpoint(runs_dir: Path) -> None:
    full = train(runs_dir, seed=5).rundir.path
    path = train(runs_dir, seed=5, on_step=_stop_at(2000)).rundir.path
    with (path / "metrics.jsonl").open("a") as f:  # as if the process died after writing these
        f.write('{"step": 999999, "charts/epsilon": 0.5}\n')
    runner, checkpoint = launch.resume(path, quiet=True)
    runner.run(checkpoint)
    assert metrics_lines(path) == metrics_lines(full)


def test_a_run_in_use_cannot_be_resumed_twice(runs_dir: Path) -> None:
    result = train(runs_dir, on_step=_stop_at(1))
    runner, checkpoint = launch.resume(result.rundir.path, quiet=True)
    lines_before = metrics_lines(result.rundir.path)
    with result.rundir.lock(), pytest.raises(GymkitError, match="in use by another"):
        runner.run(checkpoint)
    assert metrics_lines(result.rundir.path) == lines_before  # nothing touched
    assert runner.run(checkpoint).status == "completed"  # free again


def test_tensorboard_events_hold_the_documented_tags(runs_dir: Path) -> None:
    path = train(runs_dir).rundir.path
    events = EventAccumulator(str(path), size_guidance={"tensors": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    for tag in ("charts/episodic_return", "charts/episodic_length", "charts/epsilon",
                "charts/learning_rate", "losses/td_error", "eval/success_rate",
                "eval/mean_return", "time/SPS"):
        assert tag in tags["scalars"], tag
    assert "images/value_function" in tags["images"]
    assert "hyperparameters/text_summary" in tags["tensors"]
    steps = [e.step for e in events.Scalars("eval/mean_return")]
    assert steps == sorted(steps) and steps[-1] >= 6000


def test_run_directory_contents(runs_dir: Path) -> None:
    path = train(runs_dir, seed=2).rundir.path
    assert path.name.endswith("-qlearning-frozenlake-s2")
    config = json.loads((path / "config.json").read_text())
    assert config["plugin"] == "qlearning" and config["env"]["id"] == "FrozenLake-v1"
    assert config["config"]["gamma"] == 0.99 and config["run"]["seed"] == 2
    assert {"gymnasium", "torch", "python"} <= set(config["versions"])
    assert "git_commit" in config
    summary = json.loads((path / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["final_eval"]["eval/episodes"] == 50
    assert summary["optimal_success_rate"] == pytest.approx(0.744, abs=0.002)
    assert (path / "checkpoints" / "last.pt").is_file()
    assert (path / "checkpoints" / "best.pt").is_file()
    assert all(not p.name.endswith(".tmp") for p in (path / "checkpoints").iterdir())


def test_a_crashing_trainer_marks_the_run_failed(runs_dir: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(self: object) -> dict:
        raise RuntimeError("exploded")

    monkeypatch.setattr("agents.qlearning.QLearning.train_step", boom)
    with pytest.raises(RuntimeError, match="exploded"):
        train(runs_dir)
    (path,) = runs_dir.iterdir()
    summary = json.loads((path / "summary.json").read_text())
    assert summary["status"] == "failed" and "exploded" in summary["error"]


def test_episode_budget(runs_dir: Path) -> None:
    prepared = launch.prepare("agent", "frozenlake", flags={"episodes": 300})
    result = launch.start(prepared, runs_dir, quiet=True).run()
    assert 300 <= result.summary["progress"]["episodes"] < 300 + 200
