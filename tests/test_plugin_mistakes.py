"""A plugin author's mistakes, seen from the command line: one line, exit 2, nothing that
looks like a finished run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from test_registry import AGENT_MODULE, _fake_entry_points
from typer.testing import CliRunner

from toolkit.cli import app
from toolkit.environments import ENVS, EnvPreset

SMALL = ["--steps", "300", "--set", "eval_every=100", "--set", "final_eval_episodes=5", "-q"]


def invoke(*args: str) -> tuple[int, str]:
    """Exit code, and stderr where the command failed (stdout where it did not)."""
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stderr if result.exit_code else result.output


def _one_error_line(out: str) -> str:
    lines = out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out
    assert "Traceback" not in out and "\x1b" not in out
    return lines[0]


def test_a_state_dict_with_a_numpy_array(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from agents.qlearning import QLearning

    state_dict = QLearning.state_dict
    monkeypatch.setattr(QLearning, "state_dict",
                        lambda self: {**state_dict(self), "q": np.array(self.q)})
    code, out = invoke("run", "agent", "frozenlake", *SMALL, "--runs-dir", str(tmp_path))
    assert code == 2
    line = _one_error_line(out)
    assert "qlearning's state_dict()['q'] holds a numpy.ndarray" in line
    assert "torch.from_numpy(array) or array.tolist()" in line
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


@pytest.mark.parametrize(("value", "type_name"), [
    (torch.tensor(0.5), "torch.Tensor"), (np.float32(0.5), "numpy.float32"),
    (None, "NoneType")])
def test_a_train_step_that_returns_the_wrong_type(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  value: Any, type_name: str) -> None:
    from agents.qlearning import QLearning

    train_step = QLearning.train_step
    monkeypatch.setattr(QLearning, "train_step",
                        lambda self: {**train_step(self), "losses/mine": value})
    code, out = invoke("run", "agent", "frozenlake", *SMALL, "--runs-dir", str(tmp_path))
    assert code == 2
    line = _one_error_line(out)
    assert f"qlearning's train_step returned 'losses/mine' as {type_name}" in line
    (run,) = tmp_path.iterdir()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "failed" and "losses/mine" in summary["error"]


def test_a_name_clash_with_a_builtin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "src").mkdir()
    _fake_entry_points(tmp_path / "src", monkeypatch, {
        "my-plugins": AGENT_MODULE.format(name="qlearning", dist="my-plugins")})
    code, out = invoke("list", "all")
    assert code == 0, out
    flat = " ".join(out.split())
    assert "gymkit:qlearning" in flat and "my-plugins:qlearning" in flat
    code, out = invoke("run", "agent", "frozenlake", *SMALL, "--runs-dir", str(tmp_path / "r"))
    assert code == 2
    line = _one_error_line(out)
    assert "agent 'qlearning' is registered by 2 packages (gymkit, my-plugins)" in line
    code, out = invoke("run", "agent", "frozenlake", "--algo", "gymkit:qlearning", *SMALL,
                       "--runs-dir", str(tmp_path / "r"))
    assert code == 0, out


def test_a_config_that_is_not_a_dataclass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "src").mkdir()
    _fake_entry_points(tmp_path / "src", monkeypatch, {"sloppy": """
        from toolkit.config import TrainerConfig, param
        from toolkit.registry import AGENTS
        from agents.qlearning import QLearning

        class NoDecorator(TrainerConfig):
            rate: float = param(0.1, "a rate")

        class Sloppy(QLearning):
            '''A plugin whose config forgot @dataclass.'''
            Config = NoDecorator

        AGENTS.add("sloppy", Sloppy)
    """})
    code, out = invoke("list", "all")
    assert code == 0, out
    assert "sloppy" in out and "UNUSABLE: agent 'sloppy' from sloppy cannot be used" in " ".join(
        out.split())
    code, out = invoke("list")
    assert code == 0 and "sloppy (UNUSABLE)" in out, out
    code, out = invoke("run", "agent", "frozenlake", "--algo", "sloppy", "--runs-dir",
                       str(tmp_path / "r"))
    assert code == 2
    assert "Config (NoDecorator) is not a dataclass, so its fields (rate) are ignored; put " \
        "@dataclass above" in _one_error_line(out)


def _interrupted_run(tmp_path: Path) -> Path:
    from conftest import train

    def stop(runner: Any) -> None:
        runner.request_stop()

    return train(tmp_path / "runs", on_step=stop).rundir.path


@pytest.mark.parametrize("command", ["resume", "eval"])
def test_a_checkpoint_that_holds_only_its_header(tmp_path: Path, command: str) -> None:
    from toolkit.checkpoint import save_checkpoint

    path = _interrupted_run(tmp_path)
    save_checkpoint(path / "checkpoints" / "last.pt", {})
    code, out = invoke(command, str(path))
    assert code == 2
    assert "last.pt is incomplete (no " in _one_error_line(out) and "'trainer'" in out


@pytest.mark.parametrize("command", ["resume", "eval"])
def test_a_config_json_without_its_env(tmp_path: Path, command: str) -> None:
    path = _interrupted_run(tmp_path)
    config = json.loads((path / "config.json").read_text())
    del config["env"]
    (path / "config.json").write_text(json.dumps(config))
    code, out = invoke(command, str(path))
    assert code == 2
    assert "config.json has no 'env'; it was not written by gymkit" in _one_error_line(out)


def test_only_agents_that_fit_the_env_are_suggested() -> None:
    ENVS.add("pole-by-nobody", EnvPreset("pole-by-nobody", "CartPole-v1", algo="no-such-agent"))
    try:
        code, out = invoke("run", "agent", "pole-by-nobody")
    finally:
        ENVS.remove("pole-by-nobody")
    assert code == 2
    line = _one_error_line(out)
    assert "default agent 'no-such-agent' is not available" in line
    # qlearning needs Discrete observations
    assert ("pass --algo (one of: a2c, a2c-lstm, dqn, ppo, ppo-lstm, sb3-a2c, sb3-dqn, "
            "sb3-ppo)") in line
    code, out = invoke("run", "agent", "Taxi-v4")
    assert ("pass --algo (one of: a2c, a2c-lstm, dqn, ppo, ppo-lstm, qlearning, sb3-a2c, "
            "sb3-dqn, sb3-ppo)") in _one_error_line(out)


def test_a_folder_that_shadows_a_builtin_package_is_named(tmp_path: Path) -> None:
    import subprocess
    import sys

    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "__init__.py").write_text("")
    # `python -m` searches the working directory first, so ./agents hides gymkit's agents
    done = subprocess.run([sys.executable, "-m", "toolkit", "run", "agent", "frozenlake"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 2
    line = _one_error_line(done.stderr)
    assert "the folder ./agents in the working directory shadows the package 'agents' of " \
           "gymkit" in line
    assert "rename the folder or run gymkit from another directory" in line
