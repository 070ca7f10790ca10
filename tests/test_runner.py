"""The runner: determinism, interruption and resume, logs, statuses."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import shutil
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import metrics_lines, q_table, train
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from toy_generative import ToyConfig, ToyGaussian, registered

from toolkit import launch
from toolkit.errors import CheckpointError, GymkitError, PluginError
from toolkit.runner import FINAL_EVAL_SEED, PERIODIC_EVAL_SEED, Runner


def test_same_seed_gives_identical_metrics_and_q_table(runs_dir: Path) -> None:
    a = train(runs_dir, seed=0).rundir.path
    b = train(runs_dir, seed=0).rundir.path
    c = train(runs_dir, seed=1).rundir.path
    assert a != b
    assert (a / "metrics.jsonl").read_bytes() == (b / "metrics.jsonl").read_bytes()
    assert q_table(a) == q_table(b)
    assert metrics_lines(a) != metrics_lines(c)
    assert q_table(a) != q_table(c)


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
    assert len(q_table(path)) == 16

    runner, checkpoint = launch.resume(path, quiet=True)
    result = runner.run(checkpoint)
    assert result.status == "completed"
    assert metrics_lines(path) == metrics_lines(full)
    assert q_table(path) == q_table(full)


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


@pytest.mark.parametrize(("flags", "unit", "amount"), [
    ({"episodes": 3}, "episodes", 3), ({"steps": 1}, "steps", 1),
    ({"steps": 2500}, "steps", 2500)])
def test_budgets_are_exact(runs_dir: Path, flags: dict, unit: str, amount: int) -> None:
    prepared = launch.prepare("agent", "frozenlake", flags=flags,
                              assignments=["final_eval_episodes=10"])
    result = launch.start(prepared, runs_dir, quiet=True).run()
    assert result.summary["progress"][unit] == amount


# -- a hard kill, simulated: the run directory as it is on disk at some instant ---------------

def _tensorboard_scalars(path: Path) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(path), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)]
            for tag in events.Tags()["scalars"] if not tag.startswith("time/")}


def _snapshot_after(step: int, into: Path, *, flush: bool) -> Any:
    """An on_step hook that copies the run directory once `step` is reached: what a SIGKILL
    at that instant would leave behind (`flush`: as if the OS had written every event)."""
    def on_step(runner: Runner) -> None:
        if runner.trainer.progress()["steps"] >= step and not into.exists():
            if flush:
                runner.logger.flush()
            shutil.copytree(runner.rundir.path, into)
    return on_step


def _resume(path: Path) -> None:
    (path / ".lock").unlink(missing_ok=True)
    runner, checkpoint = launch.resume(path, quiet=True)
    assert runner.run(checkpoint).status == "completed"


@pytest.fixture
def events_held_until_flushed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Event records reach the file only on flush(), as buffered I/O may have it."""
    from tensorboard.summary.writer.record_writer import RecordWriter

    write, flush = RecordWriter.write, RecordWriter.flush
    pending: dict[int, list[bytes]] = {}

    def held_write(self: RecordWriter, data: bytes) -> None:
        pending.setdefault(id(self), []).append(data)

    def flush_all(self: RecordWriter) -> None:
        for data in pending.pop(id(self), []):
            write(self, data)
        flush(self)

    monkeypatch.setattr(RecordWriter, "write", held_write)
    monkeypatch.setattr(RecordWriter, "flush", flush_all)


def test_a_hard_kill_right_after_a_checkpoint_resumes_exactly(
        runs_dir: Path, tmp_path: Path, events_held_until_flushed: None) -> None:
    # checkpoint_every=3000 and steps_per_call=1000: the first on_step at >= 3000 steps comes
    # right after last.pt is written, so everything before it must already be on disk.
    full = train(runs_dir, seed=6, sets=["steps_per_call=1000"]).rundir.path
    killed = tmp_path / "killed"
    train(runs_dir, seed=6, sets=["steps_per_call=1000"],
          on_step=_snapshot_after(3000, killed, flush=False))
    _resume(killed)
    assert metrics_lines(killed) == metrics_lines(full)
    assert _tensorboard_scalars(killed) == _tensorboard_scalars(full)


def test_a_hard_kill_between_checkpoints_drops_what_came_after(runs_dir: Path,
                                                               tmp_path: Path) -> None:
    full = train(runs_dir, seed=7, sets=["steps_per_call=500"]).rundir.path
    killed = tmp_path / "killed"
    train(runs_dir, seed=7, sets=["steps_per_call=500"],
          on_step=_snapshot_after(5000, killed, flush=True))
    assert len(metrics_lines(killed)) > len(metrics_lines(full)) // 2  # events past 3000
    _resume(killed)
    assert metrics_lines(killed) == metrics_lines(full)
    assert _tensorboard_scalars(killed) == _tensorboard_scalars(full)


# -- global RNG states --------------------------------------------------------------------

@dataclass
class DrawsConfig(ToyConfig):
    pass


class GlobalDraws(ToyGaussian):
    """Reports one draw from each global RNG per epoch: python's, numpy's and torch's."""

    Config = DrawsConfig

    def train_step(self) -> dict[str, float]:
        metrics = super().train_step()
        return {**metrics, "losses/python": random.random(),
                "losses/numpy": float(np.random.rand()), "losses/torch": torch.rand(1).item()}


@pytest.fixture
def global_draws() -> Iterator[None]:
    with registered("global-draws", GlobalDraws):
        yield


def test_resume_restores_the_global_rng_states(global_draws: None, runs_dir: Path) -> None:
    def run(**kwargs: Any) -> Any:
        prepared = launch.prepare("generative", "toy-points", "global-draws",
                                  flags={"epochs": 6, "seed": 3})
        return launch.start(prepared, runs_dir, quiet=True, **kwargs).run()

    full = run().rundir.path

    def stop_at_3(runner: Runner) -> None:
        if runner.trainer.progress()["epochs"] >= 3:
            runner.request_stop()

    path = run(on_step=stop_at_3).rundir.path
    random.seed(99), np.random.seed(99), torch.manual_seed(99)  # what a new process would have
    _resume(path)
    assert metrics_lines(path) == metrics_lines(full)


# -- evaluation seeds, best.pt and last.pt --------------------------------------------------

def test_final_evaluation_scores_last_and_best_on_fresh_episodes(
        runs_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from agents.qlearning import QLearning

    seeds: list[tuple[int, int]] = []
    evaluate = QLearning.evaluate

    def recording(self: QLearning, episodes: int, seed: int) -> dict[str, float]:
        seeds.append((episodes, seed))
        return evaluate(self, episodes, seed)

    monkeypatch.setattr(QLearning, "evaluate", recording)
    result = train(runs_dir, seed=2)
    # At 2000, 4000 and 6000 steps: the final model competes for best.pt like the others.
    assert seeds[:3] == [(20, 2 + PERIODIC_EVAL_SEED)] * 3
    assert seeds[3:] == [(50, 2 + FINAL_EVAL_SEED)] * 2  # last.pt, then best.pt
    summary = result.summary
    assert summary["final_eval"]["eval/episodes"] == 50
    assert summary["final_eval_best"]["eval/episodes"] == 50
    last, best = (summary[k]["eval/mean_return"] for k in ("final_eval", "final_eval_best"))
    assert summary["better_checkpoint"] == ("equal" if last == best else
                                            "last" if last > best else "best")


def test_the_final_report_has_its_own_tags_and_the_eval_curve_ends_at_the_last_step(
        runs_dir: Path) -> None:
    result = train(runs_dir, seed=2, steps=5000)  # eval_every 2,000 does not divide it
    records = metrics_lines(result.rundir.path)
    final = records[-1]
    assert final["step"] == 5000 and "final/mean_return" in final
    assert final["final/episodes"] == 50.0 and not any(k.startswith("eval/") for k in final)
    periodic = [r for r in records if "eval/mean_return" in r]
    steps = [r["step"] for r in periodic]  # the first counts past 2,000 and 4,000, then 5,000
    assert len(steps) == 3 and steps[-1] == 5000 and 2000 <= steps[0] < 4000 <= steps[1] < 5000
    assert all(r["eval/episodes"] == 20.0 for r in periodic)  # the same episodes each time
    assert result.summary["final_eval"]["eval/mean_return"] == final["final/mean_return"]


def test_evaluating_best_restores_the_last_state(runs_dir: Path) -> None:
    prepared = launch.prepare("agent", "frozenlake", flags={"seed": 1, "steps": 6000},
                              assignments=["eval_every=2000", "final_eval_episodes=20"])
    runner = launch.start(prepared, runs_dir, quiet=True)
    result = runner.run()
    last, best = q_table(result.rundir.path), q_table(result.rundir.path, "best")
    assert best != last  # so that a skipped restore would show
    assert runner.trainer.state_dict()["q"] == last  # what the summary and panels describe


# -- signals ------------------------------------------------------------------------------

@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_the_final_evaluation_stops_and_saves(
        runs_dir: Path, monkeypatch: pytest.MonkeyPatch, signum: int) -> None:
    from agents.qlearning import QLearning

    evaluate = QLearning.evaluate
    calls: list[int] = []

    def interrupted(self: QLearning, episodes: int, seed: int) -> dict[str, float]:
        calls.append(episodes)
        if episodes == 50:  # the final evaluation
            with contextlib.suppress(Exception):  # a plugin's broad except must not swallow it
                os.kill(os.getpid(), signum)
            raise AssertionError("the signal should have stopped the evaluation")
        return evaluate(self, episodes, seed)

    monkeypatch.setattr(QLearning, "evaluate", interrupted)
    result = train(runs_dir, seed=3)
    assert result.status == "interrupted" and result.signal == signum
    assert json.loads((result.rundir.path / "summary.json").read_text())["status"] == \
        "interrupted"
    monkeypatch.setattr(QLearning, "evaluate", evaluate)
    runner, checkpoint = launch.resume(result.rundir.path, quiet=True)
    resumed = runner.run(checkpoint)
    assert resumed.status == "completed"
    assert resumed.summary["progress"]["steps"] == 6000


@pytest.mark.parametrize("episodes", [20, 50])  # a periodic evaluation, then the final one
def test_a_stop_during_an_evaluation_resumes_to_an_uninterrupted_runs_metrics(
        runs_dir: Path, monkeypatch: pytest.MonkeyPatch, episodes: int) -> None:
    """The evaluation is abandoned, the global RNG put back to where it was before it, and
    the resumed run evaluates there again: its metrics are an uninterrupted run's."""
    import random

    from agents.qlearning import QLearning

    evaluate = QLearning.evaluate

    def drawing(self: QLearning, count: int, seed: int) -> dict[str, float]:
        return {**evaluate(self, count, seed), "eval/draw": random.random()}

    monkeypatch.setattr(QLearning, "evaluate", drawing)
    full = train(runs_dir / "full", seed=3)
    stopped: list[int] = []

    def interrupted(self: QLearning, count: int, seed: int) -> dict[str, float]:
        if count == episodes and not stopped:
            stopped.append(self.steps)
            random.random()  # drawn before the signal came: the resumed run must not miss it
            os.kill(os.getpid(), signal.SIGINT)
            raise AssertionError("the signal should have stopped the evaluation")
        return drawing(self, count, seed)

    monkeypatch.setattr(QLearning, "evaluate", interrupted)
    result = train(runs_dir / "stopped", seed=3)
    assert result.interrupted and stopped
    runner, checkpoint = launch.resume(result.rundir.path, quiet=True)
    assert runner.run(checkpoint).status == "completed"
    assert metrics_lines(result.rundir.path) == metrics_lines(full.rundir.path)


def test_an_interrupt_before_the_first_checkpoint_leaves_a_resumable_run(runs_dir: Path) -> None:
    result = train(runs_dir, on_step=_stop_at(1))
    assert result.status == "interrupted"
    assert (result.rundir.path / "checkpoints" / "last.pt").is_file()


# -- a plugin's mistakes and the machine's failures ------------------------------------------

@pytest.mark.parametrize(("value", "type_name"), [
    (torch.tensor(1.0), "torch.Tensor"), (np.float32(1.0), "numpy.float32"), (None, "NoneType")])
def test_a_metric_of_the_wrong_type_fails_the_run_with_its_name(
        runs_dir: Path, monkeypatch: pytest.MonkeyPatch, value: Any, type_name: str) -> None:
    from agents.qlearning import QLearning

    train_step = QLearning.train_step
    monkeypatch.setattr(QLearning, "train_step",
                        lambda self: {**train_step(self), "losses/extra": value})
    with pytest.raises(PluginError, match=f"returned 'losses/extra' as {type_name}"):
        train(runs_dir)
    (path,) = runs_dir.iterdir()
    assert json.loads((path / "summary.json").read_text())["status"] == "failed"


def test_a_state_dict_a_checkpoint_cannot_hold_fails_before_the_run_starts(
        runs_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from agents.qlearning import QLearning

    state_dict = QLearning.state_dict
    monkeypatch.setattr(QLearning, "state_dict",
                        lambda self: {**state_dict(self), "q": np.array(self.q)})
    with pytest.raises(CheckpointError, match=r"\['q'\] holds a numpy.ndarray"):
        train(runs_dir)
    assert not runs_dir.exists() or not any(runs_dir.iterdir())


def test_a_full_disk_fails_the_run_with_one_clear_line(runs_dir: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    def full(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("toolkit.runner.save_checkpoint", full)
    with pytest.raises(GymkitError, match="no space left on the device while writing"):
        train(runs_dir)
    (path,) = runs_dir.iterdir()
    summary = json.loads((path / "summary.json").read_text())
    assert summary["status"] == "failed" and "gymkit resume" in summary["error"]


def test_an_unexpected_error_leaves_its_traceback_in_the_run_directory(
        runs_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(self: object) -> dict:
        raise ZeroDivisionError("deep inside")

    monkeypatch.setattr("agents.qlearning.QLearning.train_step", boom)
    with pytest.raises(ZeroDivisionError) as info:
        train(runs_dir)
    (path,) = runs_dir.iterdir()
    assert info.value.gymkit_traceback == str(path / "traceback.txt")  # type: ignore[attr-defined]
    assert "deep inside" in (path / "traceback.txt").read_text()


def test_checkpoints_are_also_written_by_wall_clock(runs_dir: Path) -> None:
    written: list[int] = []

    def watch(runner: Runner) -> None:
        last = runner.rundir.checkpoint("last")
        if last.is_file():
            written.append(last.stat().st_mtime_ns)

    train(runs_dir, sets=["checkpoint_every=1000000", "checkpoint_every_s=1e-9"], on_step=watch)
    assert len(set(written)) > 3


def test_resume_warns_when_the_plugin_package_changed_version(
        runs_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from toolkit import __version__

    result = train(runs_dir, on_step=_stop_at(1))
    config_path = result.rundir.path / "config.json"
    config = json.loads(config_path.read_text())
    assert config["plugin_package"] == {"name": "gymkit", "version": __version__}
    launch.resume(result.rundir.path, quiet=True)
    assert "warning" not in capsys.readouterr().err
    config["plugin_package"]["version"] = "0.0.1"
    config_path.write_text(json.dumps(config))
    launch.resume(result.rundir.path, quiet=True)
    err = " ".join(capsys.readouterr().err.split())
    assert f"qlearning comes from gymkit {__version__} now, but the run was started with " \
           "0.0.1" in err


def test_the_summary_panel_reports_best_against_last(runs_dir: Path) -> None:
    from rich.console import Console

    from toolkit.report import render_summary

    prepared = launch.prepare("agent", "frozenlake", flags={"seed": 1, "steps": 6000},
                              assignments=["eval_every=2000", "final_eval_episodes=40"])
    runner = launch.start(prepared, runs_dir, quiet=True)
    summary = runner.run().summary
    console = Console(record=True, width=200)
    render_summary(console, summary, runner.trainer)
    text = " ".join(console.export_text().split())
    best = summary["final_eval_best"]["eval/mean_return"]
    last = summary["final_eval"]["eval/mean_return"]
    assert (f"best.pt mean return {best:.3f} in the same final evaluation "
            f"(last.pt {last:.3f})") in text
    assert {"last": "last.pt is better", "best": "best.pt is better",
            "equal": "the two score the same"}[summary["better_checkpoint"]] in text
