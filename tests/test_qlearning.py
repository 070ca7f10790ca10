from __future__ import annotations

import pytest
import torch

from agents.qlearning import QLearning, QLearningConfig
from toolkit.environments import resolve_env
from toolkit.errors import IncompatibleEnvError
from toolkit.testing import make_trainer


def _trainer(**overrides: object) -> QLearning:
    trainer = make_trainer(QLearning, "frozenlake-deterministic",
                           {"steps_per_call": 1, **overrides})
    assert isinstance(trainer, QLearning)
    return trainer


def test_q_learning_update_on_a_known_transition() -> None:
    # Deterministic 4x4: from state 14, RIGHT (2) reaches the goal (15) with reward 1.
    trainer = _trainer(epsilon=0.0, epsilon_min=0.0, alpha=0.5, alpha_min=0.5, gamma=0.9)
    trainer.q[14] = [0.0, 0.0, 0.0, 0.0]
    trainer.q[10] = [0.0, 0.8, 0.0, 0.0]  # DOWN from 10 leads to 14
    trainer.env.unwrapped.s = 14  # type: ignore[attr-defined]
    trainer.obs = 14
    trainer.q[14][2] = 0.1  # greedy action RIGHT
    trainer.train_step()
    assert trainer.q[14][2] == pytest.approx(0.1 + 0.5 * (1.0 - 0.1))  # terminal: no bootstrap


def test_bootstraps_from_the_next_state() -> None:
    trainer = _trainer(epsilon=0.0, epsilon_min=0.0, alpha=1.0, alpha_min=1.0, gamma=0.5)
    trainer.q[0] = [0.0, 0.2, 0.0, 0.0]  # greedy: DOWN, to state 4
    trainer.q[4] = [0.0, 0.0, 0.6, 0.4]
    trainer.env.unwrapped.s = 0  # type: ignore[attr-defined]
    trainer.obs = 0
    trainer.train_step()
    assert trainer.q[0][1] == pytest.approx(0.5 * 0.6)  # r + gamma * max Q(4, .)


def test_expected_sarsa_averages_under_the_policy() -> None:
    trainer = _trainer(epsilon=0.5, epsilon_min=0.5, epsilon_decay=1.0, alpha=1.0, alpha_min=1.0,
                       gamma=0.5, update="expected_sarsa")
    trainer.q[0] = [0.0, 0.2, 0.0, 0.0]
    trainer.q[4] = [0.0, 0.0, 0.6, 0.4]
    trainer.env.unwrapped.s = 0  # type: ignore[attr-defined]
    trainer.obs = 0
    trainer.rng.random = lambda: 0.9  # type: ignore[method-assign]  # exploit: DOWN
    trainer.train_step()
    expected_next = 0.5 * (1.0 / 4) + 0.5 * 0.6  # eps * mean + (1 - eps) * max
    assert trainer.q[0][1] == pytest.approx(0.5 * expected_next)


def test_epsilon_decays_per_episode_and_per_step() -> None:
    per_episode = _trainer(epsilon=0.3, epsilon_decay=0.5, epsilon_min=0.01, steps_per_call=50)
    per_episode.train_step()
    assert per_episode.epsilon == pytest.approx(max(0.01, 0.3 * 0.5 ** per_episode.episodes))
    per_step = _trainer(epsilon=0.3, epsilon_decay=0.9, epsilon_min=0.0, decay_every="step",
                        steps_per_call=10)
    per_step.train_step()
    assert per_step.epsilon == pytest.approx(0.3 * 0.9 ** per_step.steps)


def test_train_step_ends_on_an_episode_boundary() -> None:
    trainer = _trainer(steps_per_call=7)
    trainer.train_step()
    assert trainer.episode_done and trainer.steps >= 7


@pytest.mark.parametrize("env", ["cartpole", "MountainCar-v0"])
def test_continuous_observations_are_refused(env: str) -> None:
    with pytest.raises(IncompatibleEnvError, match="Discrete observation and action spaces"):
        QLearning(QLearningConfig(), resolve_env(env)[0], torch.device("cpu"), 0)


def test_images_and_panels() -> None:
    trainer = _trainer()
    trainer.train_step()
    image = trainer.images()["images/value_function"]
    assert image.shape == (4 * 32, 4 * 32, 3)
    assert trainer.panels()[0][0] == "greedy policy"
    taxi = make_trainer(QLearning, "taxi", {"steps_per_call": 10})
    assert set(taxi.images()) == {"images/q_table"}
