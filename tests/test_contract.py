"""Every registered plugin passes `check_plugin`; a broken one is caught."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from toy_generative import ToyGaussian, toy_dataset

from toolkit import launch
from toolkit.data import DATASETS
from toolkit.environments import ENVS
from toolkit.registry import AGENTS, GENERATIVE
from toolkit.testing import PluginContractError, check_plugin


def _env_for(agent: str) -> str:
    return next((e.name for e in ENVS.entries() if e.obj.algo == agent), "frozenlake")


@pytest.fixture
def toy_registered() -> Iterator[None]:
    GENERATIVE.add("toy-gaussian", ToyGaussian)
    DATASETS.add("toy-points", toy_dataset)
    yield
    GENERATIVE.remove("toy-gaussian")
    DATASETS.remove("toy-points")


@pytest.mark.parametrize("name", AGENTS.names())
def test_every_agent_passes_the_contract(name: str) -> None:
    check_plugin(AGENTS.get(name), _env_for(name), overrides={"steps_per_call": 200})


def test_every_generative_trainer_passes_the_contract() -> None:
    for name in GENERATIVE.names():
        cls = GENERATIVE.get(name)
        check_plugin(cls, cls.default_dataset)


def test_toy_generative_trainer_passes_and_learns(toy_registered: None, tmp_path: Path) -> None:
    check_plugin(ToyGaussian, "toy-points")
    prepared = launch.prepare("generative", None, "toy-gaussian", flags={"epochs": 30},
                              assignments=["eval_every=5"])
    result = launch.start(prepared, tmp_path, quiet=True).run()
    assert result.status == "completed"
    # The entropy of N(., 0.5^2) per dimension is 0.5*log(2*pi*e*0.25) = 0.726; two dims: 1.45.
    assert result.summary["final_eval"]["eval/loss"] < 1.6
    assert (result.rundir.path / "checkpoints" / "best.pt").is_file()


def test_check_plugin_catches_a_nondeterministic_trainer(toy_registered: None) -> None:
    class Sloppy(ToyGaussian):
        def train_step(self) -> dict[str, float]:
            metrics = super().train_step()
            metrics["losses/nll"] += random.SystemRandom().random()  # not seedable
            return metrics

    with pytest.raises(PluginContractError, match="not deterministic"):
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

    with pytest.raises(PluginContractError, match="resumed from a checkpoint"):
        check_plugin(Forgetful, "toy-points")
