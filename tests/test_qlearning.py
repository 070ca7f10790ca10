from __future__ import annotations

import gymnasium as gym
import pytest

from agents.qlearning import QLearning, QLearningConfig
from toolkit.environments import EnvSource, resolve_env
from toolkit.errors import IncompatibleEnvError
from toolkit.testing import make_trainer
from toolkit.trainer import Budget, TrainerContext


def _trainer(budget: Budget | None = None, **overrides: object) -> QLearning:
    trainer = make_trainer(QLearning, "frozenlake-deterministic",
                           {"steps_per_call": 1, **overrides}, budget=budget)
    assert isinstance(trainer, QLearning)
    return trainer


def _context(budget: Budget | None = None) -> TrainerContext:
    return TrainerContext("cpu", 0, budget or Budget("steps", 10**6))


def test_q_learning_update_on_a_known_transition() -> None:
    # Deterministic 4x4: from state 14, RIGHT (2) reaches the goal (15) with reward 1.
    # initial_q = 5 fills Q(15, .): bootstrapping from the terminal state would add 0.9 * 5.
    trainer = _trainer(epsilon=0.0, epsilon_min=0.0, alpha=0.5, alpha_min=0.5, gamma=0.9,
                       initial_q=5.0)
    trainer.q[14] = [0.0, 0.0, 0.1, 0.0]  # greedy action RIGHT
    trainer.env.unwrapped.s = 14  # type: ignore[attr-defined]
    trainer.obs = 14
    trainer.train_step()
    assert trainer.q[15] == [5.0] * 4
    assert trainer.q[14][2] == pytest.approx(0.1 + 0.5 * (1.0 - 0.1))  # terminal: no bootstrap


def test_a_truncated_episode_still_bootstraps() -> None:
    # A 1-step time limit truncates every episode after its first step; the target must still
    # bootstrap from the next state, which is not terminal.
    source = EnvSource("fl", "FrozenLake-v1", {"is_slippery": False, "max_episode_steps": 1})
    trainer = QLearning(QLearningConfig(epsilon=0.0, epsilon_min=0.0, alpha=1.0, alpha_min=1.0,
                                        gamma=0.5, steps_per_call=1), source, _context())
    trainer.q[0] = [0.0, 0.2, 0.0, 0.0]  # greedy: DOWN, to state 4
    trainer.q[4] = [0.0, 0.0, 0.6, 0.4]
    trainer.train_step()
    assert trainer.episodes == 1 and trainer.steps == 1
    assert trainer.q[0][1] == pytest.approx(0.5 * 0.6)  # r + gamma * max Q(4, .), not r = 0


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


@pytest.mark.parametrize("decay_every", ["episode", "step"])
def test_epsilon_and_alpha_decay_once_per_episode_or_step(decay_every: str) -> None:
    trainer = _trainer(epsilon=0.9, epsilon_decay=0.9, epsilon_min=0.0, alpha=0.5,
                       alpha_decay=0.95, alpha_min=0.0, decay_every=decay_every,
                       steps_per_call=30)
    trainer.train_step()
    decays = trainer.episodes if decay_every == "episode" else trainer.steps
    assert trainer.episodes != trainer.steps  # so that the two counts tell the modes apart
    assert trainer.epsilon == pytest.approx(0.9 * 0.9 ** decays, rel=1e-12)
    assert trainer.alpha == pytest.approx(0.5 * 0.95 ** decays, rel=1e-12)


def test_decay_stops_at_the_floors() -> None:
    trainer = _trainer(epsilon=0.3, epsilon_decay=0.5, epsilon_min=0.05, alpha=0.5,
                       alpha_decay=0.5, alpha_min=0.2, decay_every="step", steps_per_call=20)
    trainer.train_step()
    assert (trainer.epsilon, trainer.alpha) == (0.05, 0.2)


def test_linear_schedule_follows_the_budget() -> None:
    trainer = _trainer(Budget("steps", 400), schedule="linear", decay_fraction=0.5,
                       epsilon=0.5, epsilon_min=0.1, alpha=0.4, alpha_min=0.2, steps_per_call=50)
    trainer.train_step()
    fraction = trainer.steps / 400 / 0.5
    assert trainer.epsilon == pytest.approx(0.5 + fraction * (0.1 - 0.5))
    assert trainer.alpha == pytest.approx(0.4 + fraction * (0.2 - 0.4))
    while trainer.budget_left():
        trainer.train_step()
    assert trainer.steps == 400 and (trainer.epsilon, trainer.alpha) == (0.1, 0.2)


def test_linear_schedule_over_an_episode_budget() -> None:
    trainer = _trainer(Budget("episodes", 10), schedule="linear", decay_fraction=1.0,
                       epsilon=1.0, epsilon_min=0.0, steps_per_call=1)
    trainer.train_step()
    assert trainer.episodes == 1 and trainer.epsilon == pytest.approx(0.9)


@pytest.mark.parametrize(("budget", "steps", "episodes"), [
    (Budget("steps", 1), 1, None), (Budget("steps", 1234), 1234, None),
    (Budget("episodes", 3), None, 3)])
def test_the_budget_is_exact(budget: Budget, steps: int | None, episodes: int | None) -> None:
    trainer = make_trainer(QLearning, "frozenlake", {"steps_per_call": 1000}, budget=budget)
    while trainer.budget_left():
        trainer.train_step()
    assert trainer.progress()[budget.unit] == budget.amount


def test_train_step_ends_on_an_episode_boundary() -> None:
    trainer = _trainer(steps_per_call=7)
    trainer.train_step()
    assert trainer.episode_done and trainer.steps >= 7


@pytest.mark.parametrize("env", ["cartpole", "MountainCar-v0", "Blackjack-v1"])
def test_non_discrete_observations_are_refused(env: str) -> None:
    with pytest.raises(IncompatibleEnvError, match="needs Discrete observation and action"):
        QLearning(QLearningConfig(), resolve_env(env)[0], _context())
    space = resolve_env(env)[0].make().observation_space
    assert QLearning.incompatibility(space, gym.spaces.Discrete(2)) is not None


def test_images_and_panels() -> None:
    trainer = _trainer()
    trainer.train_step()
    image = trainer.images()["images/value_function"]
    assert image.shape == (4 * 32, 4 * 32, 3)
    assert trainer.panels()[0][0] == "greedy policy"
    taxi = make_trainer(QLearning, "taxi", {"steps_per_call": 10})
    assert set(taxi.images()) == {"images/q_table"}
