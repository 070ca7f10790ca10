"""The agent and the env preset: gymkit's contract, short runs, learning, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
from toolkit import launch
from toolkit.environments import ENVS
from toolkit.errors import ConfigError, IncompatibleEnvError
from toolkit.registry import AGENTS
from toolkit.testing import check_plugin

AGENT = "template-sarsa"
ENV = "template-chain"
DISTRIBUTION = "gymkit-plugin-template"


def test_the_agent_keeps_the_contract() -> None:
    # taxi starts its episodes in random states: a resume that loses env state shows there.
    check_plugin(AGENTS.get(AGENT), "taxi", overrides={"steps_per_call": 200})


def test_the_plugins_come_from_this_package() -> None:
    assert AGENTS.entry(AGENT).source == DISTRIBUTION
    assert ENVS.entry(ENV).source == DISTRIBUTION


def test_the_env_preset_trains_its_default_agent(tmp_path: Path) -> None:
    prepared = launch.prepare("agent", ENV, flags={"steps": 2_000},
                              assignments=["final_eval_episodes=20"])
    assert prepared.spec["plugin"] == AGENT
    runner = launch.start(prepared, tmp_path, quiet=True)
    result = runner.run()
    runner.trainer.close()
    assert result.status == "completed"
    assert (result.rundir.path / "checkpoints" / "last.pt").is_file()


def test_the_agent_learns_frozenlake_deterministic(tmp_path: Path) -> None:
    prepared = launch.prepare("agent", "frozenlake-deterministic", AGENT,
                              flags={"steps": 10_000, "seed": 0},
                              assignments=["eval_every=5000", "final_eval_episodes=20"])
    runner = launch.start(prepared, tmp_path, quiet=True)
    result = runner.run()
    runner.trainer.close()
    assert result.summary["final_eval"]["eval/success_rate"] == 1.0


def test_bad_input_is_refused_before_training() -> None:
    with pytest.raises(ConfigError, match="alpha must be in"):
        launch.prepare("agent", "taxi", AGENT, assignments=["alpha=0"])
    with pytest.raises(IncompatibleEnvError, match="needs Discrete observation"):
        launch.prepare("agent", "CartPole-v1", AGENT)
