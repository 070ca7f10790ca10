"""Every registered plugin passes `check_plugin`; each kind of broken plugin is caught."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from toy_generative import ToyGaussian, registered

from agents.qlearning import QLearning
from toolkit import launch
from toolkit.environments import ENVS, resolve_env
from toolkit.registry import AGENTS, GENERATIVE
from toolkit.seeding import numpy_rng_state
from toolkit.testing import PluginContractError, check_plugin
from toolkit.trainer import Budget

#: Envs whose episodes start in random states: a trainer that loses env state on resume
#: shows it there, where a fixed start state (FrozenLake) hides it.
RANDOM_START_ENVS = {"qlearning": "taxi", "dqn": "cartpole", "sb3-dqn": "cartpole",
                     "sb3-a2c": "cartpole", "sb3-ppo": "cartpole", "a2c": "cartpole",
                     "ppo": "cartpole", "a2c-lstm": "cartpole-masked",
                     "ppo-lstm": "cartpole-masked"}
#: Settings that make a few train_steps short, and reach the learning updates.
CONTRACT_OVERRIDES: dict[str, dict[str, Any]] = {
    "qlearning": {"steps_per_call": 200},
    "dqn": {"steps_per_call": 64, "learning_starts": 32, "batch_size": 16, "hidden": [16]},
    "sb3-dqn": {"hyperparams": {"learning_starts": 16, "train_freq": 4, "batch_size": 8},
                "steps_per_call": 32, "net_arch": [16]},
    "sb3-a2c": {"hyperparams": {"n_steps": 8}, "steps_per_call": 16, "net_arch": [16]},
    "sb3-ppo": {"hyperparams": {"n_steps": 32, "batch_size": 32, "n_epochs": 1},
                "steps_per_call": 32, "net_arch": [16]},
    "a2c": {"n_envs": 2, "n_steps": 8, "hidden": [16]},
    "ppo": {"n_envs": 2, "n_steps": 8, "hidden": [16], "n_epochs": 2, "batch_size": 8},
    "a2c-lstm": {"n_envs": 2, "n_steps": 8, "hidden": [16], "lstm_hidden_size": 8},
    "ppo-lstm": {"n_envs": 2, "n_steps": 8, "hidden": [16], "n_epochs": 2, "batch_size": 8,
                 "lstm_hidden_size": 8},
}


@pytest.fixture
def toy_registered() -> Iterator[None]:
    with registered("toy-gaussian", ToyGaussian):
        yield


def test_contract_envs_have_random_starts() -> None:
    for agent, env in RANDOM_START_ENVS.items():
        made = resolve_env(env)[0].make()
        starts = {str(made.reset(seed=seed)[0]) for seed in range(20)}
        assert len(starts) > 1, f"{env} starts in one state: it cannot test {agent}'s resume"
    assert set(RANDOM_START_ENVS) == set(AGENTS.names()), "name a random-start env per agent"
    assert all(ENVS.entry(env) for env in RANDOM_START_ENVS.values())


@pytest.mark.parametrize("name", AGENTS.names())
def test_every_agent_passes_the_contract(name: str) -> None:
    check_plugin(AGENTS.get(name), RANDOM_START_ENVS[name], overrides=CONTRACT_OVERRIDES[name])


def test_a_linear_schedule_continues_across_a_resume() -> None:
    # 6 train_steps of >= 200 steps walk a third or more of the way through this budget.
    check_plugin(QLearning, "taxi", budget=Budget("steps", 3000),
                 overrides={"steps_per_call": 200, "schedule": "linear", "decay_fraction": 1.0})


@pytest.mark.parametrize("name", ["toy-gaussian", *GENERATIVE.names()])
def test_every_generative_trainer_passes_the_contract(name: str, toy_registered: None) -> None:
    cls = GENERATIVE.get(name)
    check_plugin(cls, cls.default_dataset)


def test_toy_generative_trainer_learns(toy_registered: None, tmp_path: Path) -> None:
    prepared = launch.prepare("generative", None, "toy-gaussian", flags={"epochs": 30},
                              assignments=["eval_every=5"])
    result = launch.start(prepared, tmp_path, quiet=True).run()
    assert result.status == "completed"
    # The entropy of N(., 0.5^2) per dimension is 0.5*log(2*pi*e*0.25) = 0.726; two dims: 1.45.
    assert result.summary["final_eval"]["eval/loss"] < 1.6
    assert (result.rundir.path / "checkpoints" / "best.pt").is_file()


def test_generative_trainers_evaluate_and_checkpoint_every_epoch(toy_registered: None,
                                                                  tmp_path: Path) -> None:
    prepared = launch.prepare("generative", None, "toy-gaussian", flags={"epochs": 3})
    assert prepared.settings.eval_every == 1 and prepared.settings.checkpoint_every == 1
    agent = launch.prepare("agent", "frozenlake", flags={"steps": 10})
    assert agent.settings.eval_every == 50_000  # the frozenlake preset's own cadence
    assert launch.prepare("agent", "taxi", flags={"steps": 10}).settings.checkpoint_every == 50_000


def test_check_plugin_catches_a_nondeterministic_trainer(toy_registered: None) -> None:
    class Sloppy(ToyGaussian):
        def train_step(self) -> dict[str, float]:
            metrics = super().train_step()
            metrics["losses/nll"] += random.SystemRandom().random()  # not seedable
            return metrics

    with pytest.raises(PluginContractError, match="not deterministic: first at train_step 1"):
        check_plugin(Sloppy, "toy-points")


def test_check_plugin_catches_a_trainer_that_forgets_state(toy_registered: None) -> None:
    class Forgetful(ToyGaussian):
        def state_dict(self) -> dict:
            state = super().state_dict()
            del state["optimizer"]
            return state

        def load_state_dict(self, state: dict) -> None:
            with_optimizer = {**state, "optimizer": self.optimizer.state_dict()}
            super().load_state_dict(with_optimizer)

    with pytest.raises(PluginContractError,
                       match=r"resumed from a checkpoint reported other metrics than an "
                             r"uninterrupted one: first at train_step 4, losses/nll = "):
        check_plugin(Forgetful, "toy-points")


class ResetsAtTheEnd(QLearning):
    """The classic resume bug: resetting the env at the end of train_step instead of lazily
    at the start of the next one. A resumed trainer's fresh env is then not where `obs` says."""

    def train_step(self) -> dict[str, float]:
        metrics = super().train_step()
        self.obs, _ = self.env.reset()
        self.episode_done = False
        return metrics


def test_check_plugin_catches_a_reset_at_the_end_of_train_step() -> None:
    with pytest.raises(PluginContractError, match=r"first at train_step \d, \w+/\w+ = "):
        check_plugin(ResetsAtTheEnd, "taxi", overrides={"steps_per_call": 200})


class FreshEnvsOnResume(ResetsAtTheEnd):
    """The same agent, promising only what it keeps: it saves no env state, and resuming
    starts fresh episodes."""

    exact_resume = False
    ENV_KEYS = ("obs", "episode_done", "env_rng")

    def state_dict(self) -> dict[str, Any]:
        return {k: v for k, v in super().state_dict().items() if k not in self.ENV_KEYS}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        fresh = {"obs": 0, "episode_done": True,
                 "env_rng": numpy_rng_state(self.env.unwrapped.np_random)}
        super().load_state_dict({**state, **fresh})


def test_an_agent_that_resumes_with_fresh_envs_passes_the_weaker_promise() -> None:
    check_plugin(FreshEnvsOnResume, "taxi", overrides={"steps_per_call": 200})


class ForgetsEpsilonOnLoad(FreshEnvsOnResume):
    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.epsilon = self.cfg.epsilon


def test_the_weaker_promise_still_needs_the_state_it_loads() -> None:
    with pytest.raises(PluginContractError, match=r"state_dict\(\) right after "
                                                  r"load_state_dict differs"):
        check_plugin(ForgetsEpsilonOnLoad, "taxi", overrides={"steps_per_call": 200})


class ReseedsOnLoad(FreshEnvsOnResume):
    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.env.reset(seed=random.SystemRandom().randrange(2**31))


def test_the_weaker_promise_still_needs_a_deterministic_resume() -> None:
    with pytest.raises(PluginContractError, match="two trainers resumed from one checkpoint "
                                                  "reported different metrics"):
        check_plugin(ReseedsOnLoad, "taxi", overrides={"steps_per_call": 200})


class NumpyState(QLearning):
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "q": np.array(self.q)}


def test_check_plugin_names_a_state_entry_a_checkpoint_cannot_hold() -> None:
    with pytest.raises(PluginContractError,
                       match=r"checkpoint\['trainer'\]\['q'\] holds a numpy.ndarray.*"
                             r"torch.from_numpy\(array\) or array.tolist\(\)"):
        check_plugin(NumpyState, "taxi", overrides={"steps_per_call": 50})


@pytest.mark.parametrize(("value", "type_name"), [
    (torch.tensor(0.5), "torch.Tensor"),
    (np.float32(0.5), "numpy.float32"),
    (None, "NoneType"),
])
def test_check_plugin_names_a_metric_of_the_wrong_type(value: Any, type_name: str) -> None:
    class WrongType(QLearning):
        def train_step(self) -> dict[str, float]:
            return {**super().train_step(), "losses/extra": value}

    with pytest.raises(PluginContractError,
                       match=rf"returned 'losses/extra' as {type_name}; return a Python float"):
        check_plugin(WrongType, "taxi", overrides={"steps_per_call": 50})


def test_check_plugin_catches_a_train_step_that_overshoots_the_budget() -> None:
    class Overshoots(QLearning):
        def budget_left(self) -> int:
            return 10**9

        def train_step(self) -> dict[str, float]:
            self.ctx = type(self.ctx)(self.ctx.device, self.ctx.seed,
                                      type(self.ctx.budget)("steps", 10**9))
            return super().train_step()

    with pytest.raises(PluginContractError, match="with a budget of 1 steps, one train_step did"):
        check_plugin(Overshoots, "taxi", overrides={"steps_per_call": 50})


def test_check_plugin_applies_the_registration_checks() -> None:
    from dataclasses import dataclass

    from toolkit.config import param

    @dataclass
    class Clashing(QLearning.Config):
        episodes: int = param(3, "episodes per update")

    class Named(QLearning):
        Config = Clashing

    with pytest.raises(PluginContractError, match="field 'episodes' has the name of a run setting"):
        check_plugin(Named, "taxi")


class PolicyStateGoesNowhere(QLearning):
    def load_policy_state_dict(self, state: dict[str, Any]) -> None:
        pass  # best.pt would load as an untrained table


def test_check_plugin_catches_a_policy_state_that_does_not_restore_the_policy() -> None:
    with pytest.raises(PluginContractError, match="through load_policy_state_dict"):
        check_plugin(PolicyStateGoesNowhere, "taxi", overrides={"steps_per_call": 200})
