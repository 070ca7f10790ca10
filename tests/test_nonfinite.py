"""A run that diverges (NaN or infinite loss, evaluation metric or model state) stops as
failed with one line, and never overwrites a checkpoint with that state."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from typer.testing import CliRunner

from toolkit.checkpoint import load_checkpoint
from toolkit.cli import app
from toolkit.config import RunSettings, TrainerConfig, param
from toolkit.errors import NonFiniteError
from toolkit.rundir import RunDir
from toolkit.runner import Runner, nonfinite_entry
from toolkit.trainer import Budget, GenerativeTrainer, TrainerContext


@dataclass
class _Config(TrainerConfig):
    bad_at: int = param(3, "the step whose loss (or weight) goes bad")
    what: str = param("loss", "loss, eval or state")


class _Diverging(GenerativeTrainer):
    """One step per call; at step `bad_at` its loss, its evaluation or its weight is NaN."""

    Config = _Config
    cfg: _Config
    progress_unit = "steps"
    budget_units = ("steps",)
    eval_metric: ClassVar[str] = "eval/loss"

    def __init__(self, cfg: _Config, source: Any, ctx: TrainerContext) -> None:
        super().__init__(cfg, source, ctx)
        self.steps = 0
        self.weight = torch.zeros(2)

    def _bad(self) -> bool:
        return self.steps >= self.cfg.bad_at

    def train_step(self) -> dict[str, float]:
        self.steps += 1
        if self.cfg.what == "state" and self._bad():
            self.weight[1] = math.nan
        else:
            self.weight += 1.0
        return {"losses/loss": math.nan if self.cfg.what == "loss" and self._bad() else 1.0}

    def evaluate(self, episodes: int, seed: int) -> dict[str, float]:
        return {"eval/loss": math.inf if self.cfg.what == "eval" and self._bad() else 1.0}

    def progress(self) -> dict[str, int]:
        return {"steps": self.steps}

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "weight": self.weight.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps, self.weight = state["steps"], state["weight"].clone()


def _runner(tmp_path: Path, what: str, **settings: Any) -> Runner:
    run = RunSettings(steps=6, eval_every=1, checkpoint_every=1, checkpoint_every_s=0,
                      eval_episodes=1, final_eval_episodes=1, **settings)
    trainer = _Diverging(_Config(what=what), None, TrainerContext("cpu", 0, Budget("steps", 6)))
    spec = {"kind": "generative", "plugin": "diverging", "target": "none", "config": {}}
    return Runner(trainer, run, RunDir.create(tmp_path, "diverging", "none", 0), spec, quiet=True)


@pytest.mark.parametrize(("what", "named"), [("loss", "losses/loss is nan after the train_step "
                                                      "at step 3"),
                                             ("eval", "eval/loss is inf after the evaluation "
                                                      "at step 3"),
                                             ("state", "the model's state holds NaN or "
                                                       "infinite values (state['weight']) at "
                                                       "step 3")])
def test_a_run_that_diverges_fails_and_keeps_its_last_finite_checkpoint(
        tmp_path: Path, what: str, named: str) -> None:
    runner = _runner(tmp_path, what)
    with pytest.raises(NonFiniteError) as info:
        runner.run()
    message = str(info.value)
    assert named in message, message
    assert "checkpoints/last.pt holds the last finite state" in message
    assert "stop_on_nonfinite=false" in message
    summary = json.loads(runner.rundir.summary_path.read_text())
    assert summary["status"] == "failed" and summary["error"] == message
    last = load_checkpoint(runner.rundir.checkpoint("last"))["trainer"]
    assert last["steps"] == 2 and bool(torch.isfinite(last["weight"]).all())
    best = load_checkpoint(runner.rundir.checkpoint("best"))["trainer"]
    assert bool(torch.isfinite(best["weight"]).all())


def test_stop_on_nonfinite_false_trains_on(tmp_path: Path) -> None:
    result = _runner(tmp_path, "loss", stop_on_nonfinite=False).run()
    assert result.status == "completed"


def test_nonfinite_entry_names_the_first_bad_tensor() -> None:
    state = {"a": torch.ones(2), "b": [torch.zeros(1), {"c": torch.tensor([1.0, math.inf])}],
             "best": math.inf, "steps": torch.tensor([3])}
    assert nonfinite_entry(state) == "state['b'][1]['c']"
    assert nonfinite_entry({"best": math.nan, "n": torch.tensor([1, 2])}) is None


def test_a_vae_at_a_huge_learning_rate_stops_in_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["run", "generative", "vae", "--set", "lr=1e9",
                                      "--epochs", "3", "--runs-dir", str(tmp_path)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "is nan" in lines[0] and "training diverged" in lines[0]
    assert "completed" not in result.output and "RuntimeWarning" not in result.output
    (run,) = tmp_path.iterdir()
    assert json.loads((run / "summary.json").read_text())["status"] == "failed"
