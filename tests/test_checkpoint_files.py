"""What goes where: last.pt with its side files, best.pt with the policy alone (DQN)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from toolkit import launch
from toolkit.checkpoint import load_checkpoint
from toolkit.errors import CheckpointError
from toolkit.runner import EXTRA_PREFIX, Runner

SMALL = ["steps_per_call=100", "learning_starts=50", "batch_size=16", "hidden=[16]",
         "eval_every=200", "eval_episodes=2", "final_eval_episodes=2", "checkpoint_every=200"]


def _start(tmp_path: Path, steps: int = 600, **runner_kwargs: object) -> Runner:
    prepared = launch.prepare("agent", "cartpole", "dqn", flags={"seed": 3, "steps": steps},
                              assignments=SMALL)
    return launch.start(prepared, tmp_path, quiet=True, **runner_kwargs)


def _stop_at(step: int) -> Callable[[Runner], None]:
    def on_step(runner: Runner) -> None:
        if runner.trainer.progress()["steps"] >= step:
            runner.request_stop()
    return on_step


def test_last_pt_names_one_side_folder_and_best_pt_holds_the_policy_alone(
        tmp_path: Path) -> None:
    runner = _start(tmp_path)
    result = runner.run()
    runner.trainer.close()
    folder = result.rundir.path / "checkpoints"
    last = load_checkpoint(folder / "last.pt")
    extras = sorted(p.name for p in folder.iterdir() if p.name.startswith(EXTRA_PREFIX))
    assert extras == [last["extra"]]  # the folders of earlier last.pt files are gone
    assert (folder / last["extra"] / "obs.npy").is_file()
    assert "buffer" in last["trainer"] and "optimizer" in last["trainer"]
    best = load_checkpoint(folder / "best.pt")
    assert set(best["trainer"]) == {"version", "q_net"}
    assert "extra" not in best


def test_a_dqn_run_resumes_with_its_replay_buffer(tmp_path: Path) -> None:
    runner = _start(tmp_path, on_step=_stop_at(300))
    result = runner.run()
    runner.trainer.close()
    assert result.interrupted and len(runner.trainer.buffer) == 300
    seen: list[int] = []
    resumed, checkpoint = launch.resume(result.rundir.path, quiet=True,
                                        on_step=lambda r: seen.append(len(r.trainer.buffer)))
    final = resumed.run(checkpoint)
    resumed.trainer.close()
    assert final.status == "completed" and final.summary["progress"]["steps"] == 600
    assert seen[0] == 400  # the 300 transitions of before, and the 100 of the first call
    original = runner.trainer.buffer.obs[:300]
    assert torch.equal(resumed.trainer.buffer.obs[:300], original)


def test_a_missing_side_folder_is_a_clear_error(tmp_path: Path) -> None:
    runner = _start(tmp_path, on_step=_stop_at(300))
    result = runner.run()
    runner.trainer.close()
    folder = result.rundir.path / "checkpoints"
    name = load_checkpoint(folder / "last.pt")["extra"]
    for item in (folder / name).iterdir():
        item.unlink()
    (folder / name).rmdir()
    resumed, checkpoint = launch.resume(result.rundir.path, quiet=True)
    with pytest.raises(CheckpointError, match=f"refers to checkpoints/{name}, which is missing"):
        resumed.run(checkpoint)
    resumed.trainer.close()


def test_eval_reads_the_policy_from_best_pt(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from toolkit.cli import app

    runner = _start(tmp_path)
    result = runner.run()
    runner.trainer.close()
    out = CliRunner().invoke(app, ["eval", str(result.rundir.path), "--checkpoint", "best",
                                   "--episodes", "2"])
    assert out.exit_code == 0, out.output
    summary = json.loads((result.rundir.path / "summary.json").read_text())
    assert "final_eval_best" in summary
    assert torch.is_tensor(load_checkpoint(result.rundir.checkpoint("best"))["trainer"]
                           ["q_net"]["head.weight"])
