"""Stable-Baselines3's algorithms as gymkit agents: the contract, schedules over the budget,
checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agents.sb3 import SB3A2C, SB3DQN, SB3PPO, SB3Agent
from toolkit import launch
from toolkit.errors import ConfigError
from toolkit.testing import check_plugin, make_trainer
from toolkit.trainer import Budget

SMALL: dict[type[SB3Agent], dict[str, Any]] = {
    SB3PPO: {"hyperparams": {"n_steps": 32, "batch_size": 32, "n_epochs": 1},
             "steps_per_call": 32, "net_arch": [16]},
    SB3A2C: {"hyperparams": {"n_steps": 8}, "steps_per_call": 16, "n_envs": 2,
             "net_arch": [16]},
    SB3DQN: {"hyperparams": {"learning_starts": 16, "train_freq": 4, "batch_size": 8},
             "steps_per_call": 32, "net_arch": [16]},
}


@pytest.mark.parametrize("cls", [SB3PPO, SB3A2C, SB3DQN])
def test_sb3_agents_pass_the_plugin_contract(cls: type[SB3Agent]) -> None:
    check_plugin(cls, "cartpole", overrides=SMALL[cls])


def test_the_exploration_schedule_runs_over_the_whole_budget() -> None:
    # SB3 alone would measure progress against each learn() call and reach the final
    # epsilon at the end of the first one.
    agent = make_trainer(SB3DQN, "cartpole", {
        "hyperparams": {"learning_starts": 1000, "train_freq": 4, "exploration_fraction": 0.5,
                        "exploration_initial_eps": 1.0, "exploration_final_eps": 0.1},
        "steps_per_call": 100, "net_arch": [16]}, budget=Budget("steps", 400))
    metrics = agent.train_step()
    assert agent.progress()["steps"] == 100
    # 100 of 400 steps: half-way through the first half of the budget.
    assert metrics["charts/epsilon"] == pytest.approx(1.0 - 0.9 * 0.5)
    agent.close()


def test_linear_schedules_fall_over_the_whole_budget() -> None:
    agent = make_trainer(SB3PPO, "cartpole", {
        "hyperparams": {"n_steps": 32, "batch_size": 32, "n_epochs": 1,
                        "learning_rate": "lin_0.001", "clip_range": "lin_0.2"},
        "steps_per_call": 32, "net_arch": [16]}, budget=Budget("steps", 128))
    agent.train_step()
    agent.train_step()
    # SB3 sets the learning rate from the progress after the rollout: 64 of 128 steps.
    assert agent.model.policy.optimizer.param_groups[0]["lr"] == pytest.approx(0.0005)
    assert agent.model.clip_range(agent.model._current_progress_remaining) == \
        pytest.approx(0.1)
    agent.close()
    with pytest.raises(ConfigError, match="cannot read the schedule 'lin_fast'"):
        launch.prepare("agent", "cartpole", "sb3-ppo", flags={"steps": 2048},
                       assignments=["hyperparams={learning_rate: lin_fast}"])


def test_a_budget_must_be_whole_rollouts() -> None:
    with pytest.raises(ConfigError, match="multiple of 64; use --steps 1024"):
        launch.prepare("agent", "cartpole", "sb3-ppo", flags={"steps": 1000},
                       assignments=["hyperparams={n_steps: 32}", "n_envs=2"])


def test_gymkit_owns_the_seed_and_the_device() -> None:
    with pytest.raises(ConfigError, match="hyperparams must not set 'seed'"):
        launch.prepare("agent", "cartpole", "sb3-ppo", flags={"steps": 2048},
                       assignments=["hyperparams={seed: 3}"])


def test_the_dqn_replay_buffer_goes_to_side_files_and_back(tmp_path: Path) -> None:
    agent = make_trainer(SB3DQN, "cartpole", SMALL[SB3DQN])
    agent.train_step()
    agent.save_extra(tmp_path)
    fresh = make_trainer(SB3DQN, "cartpole", SMALL[SB3DQN], seed=1)
    fresh.load_state_dict(agent.state_dict())
    fresh.load_extra(tmp_path)
    assert isinstance(agent, SB3DQN) and isinstance(fresh, SB3DQN)
    a, b = agent.model.replay_buffer, fresh.model.replay_buffer
    assert (a.pos, a.full) == (b.pos, b.full) == (32, False)
    assert np.array_equal(a.observations, b.observations)
    assert np.array_equal(a.timeouts, b.timeouts)
    agent.close()
    fresh.close()


def test_sb3s_losses_are_logged_and_no_temp_folder_is_left(monkeypatch: pytest.MonkeyPatch,
                                                           tmp_path: Path) -> None:
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # SB3's default logger's home
    agent = make_trainer(SB3PPO, "cartpole", {"hyperparams": {"n_steps": 64}},
                         budget=Budget("steps", 1024))
    metrics = agent.train_step()
    agent.close()
    assert "losses/value_loss" in metrics and "losses/approx_kl" in metrics
    assert not list(tmp_path.glob("SB3-*"))
