"""Unit tests: intervals, run directories, images, value iteration, policy drawing."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from agents.tabular import draw_policy, finite_horizon_optimum, grid_shape
from toolkit.environments import EnvSource, resolve_env
from toolkit.errors import RegistryError
from toolkit.evaluation import EpisodeResults, wilson_interval
from toolkit.images import heatmap
from toolkit.rundir import RunDir


def test_wilson_interval_matches_textbook_values() -> None:
    low, high = wilson_interval(74, 100)
    assert low == pytest.approx(0.6463, abs=1e-4)
    assert high == pytest.approx(0.8160, abs=1e-4)
    assert wilson_interval(0, 10)[0] == pytest.approx(0.0)
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0)


def test_episode_results_metrics() -> None:
    results = EpisodeResults(returns=[1.0, 0.0, 1.0, 1.0], lengths=[5, 7, 5, 3],
                             successes=[True, False, True, True])
    m = results.metrics()
    assert m["eval/mean_return"] == 0.75
    assert m["eval/success_rate"] == 0.75
    assert m["eval/mean_length"] == 5.0
    assert m["eval/success_rate_ci_low"] < 0.75 < m["eval/success_rate_ci_high"]
    assert m["eval/return_ci95"] == pytest.approx(1.96 * 0.5 / 2, rel=1e-3)


def test_run_directories_are_never_reused(tmp_path: Path) -> None:
    first = RunDir.create(tmp_path, "qlearning", "gymkit/Env-v0", 3)
    second = RunDir.create(tmp_path, "qlearning", "gymkit/Env-v0", 3)
    assert first.path != second.path
    assert first.path.name.endswith("-qlearning-gymkit_Env-v0-s3")
    assert first.path.parent == tmp_path


def test_heatmap_shape_and_range() -> None:
    image = heatmap(np.array([[0.0, 1.0], [0.5, 0.25]]), cell=4)
    assert image.shape == (8, 8, 3) and image.dtype == np.uint8
    assert not np.array_equal(image[0, 0], image[0, 4])


def test_value_iteration_matches_known_optima() -> None:
    deterministic = gym.make("FrozenLake-v1", is_slippery=False)
    assert finite_horizon_optimum(deterministic, 100) == pytest.approx(1.0)
    assert finite_horizon_optimum(deterministic, 5) == pytest.approx(0.0)  # goal is 6 steps away
    assert finite_horizon_optimum(deterministic, 6) == pytest.approx(1.0)
    slippery = gym.make("FrozenLake-v1")
    # The well-known optimum of slippery 4x4 FrozenLake under its 100-step limit is about 0.74;
    # more steps can only help, and never beyond certainty.
    assert finite_horizon_optimum(slippery, 100) == pytest.approx(0.744, abs=0.002)
    assert finite_horizon_optimum(slippery, 50) < finite_horizon_optimum(slippery, 100)
    assert finite_horizon_optimum(slippery, 100) < finite_horizon_optimum(slippery, 1000) <= 1.0


@pytest.mark.parametrize(("env_id", "max_steps", "success", "optimum"), [
    ("FrozenLake-v1", 100, True, 0.7442),     # frozenlake: 4x4, slippery
    ("FrozenLake8x8-v1", 200, True, 0.9132),  # frozenlake8x8
    ("Taxi-v4", 200, False, 7.93),            # taxi: mean return, not success rate
])
def test_optima_of_the_registered_envs(env_id: str, max_steps: int, success: bool,
                                        optimum: float) -> None:
    # The figures quoted in the README, the presets and tests/test_learning.py, computed as the
    # runs compute them: the env as gymnasium registers it, under its own time limit. A change
    # of env version, map or horizon fails here first.
    env = gym.make(env_id)
    assert env.spec is not None and env.spec.max_episode_steps == max_steps
    value = finite_horizon_optimum(env, max_steps, success=success)
    assert value == pytest.approx(optimum, abs=1e-4)


def test_policy_drawing_marks_holes_and_goal() -> None:
    env = gym.make("FrozenLake-v1")
    assert grid_shape(env) == (4, 4)
    q = np.zeros((16, 4))
    q[:, 2] = 1.0  # always right
    drawing = draw_policy(env, q, ("←", "↓", "→", "↑"))
    assert drawing is not None
    assert drawing.splitlines() == ["→ → → →", "→ H → H", "→ → → H", "H → → G"]
    assert draw_policy(gym.make("Taxi-v4"), np.zeros((500, 6)), ("a",) * 6) is None


def test_resolve_env_short_names_ids_and_typos() -> None:
    source, preset = resolve_env("frozenlake-deterministic")
    assert source.id == "FrozenLake-v1" and source.kwargs["is_slippery"] is False
    assert preset is not None and preset.algo == "qlearning"
    source, preset = resolve_env("CliffWalking-v1")
    assert preset is None and source.id == "CliffWalking-v1"
    with pytest.raises(RegistryError, match="did you mean: frozenlake"):
        resolve_env("frozenlak")


def test_envs_without_a_time_limit_get_one() -> None:
    from toolkit.environments import DEFAULT_MAX_EPISODE_STEPS

    env = EnvSource("cliff", "CliffWalking-v1").make(record_stats=False)
    env.reset(seed=0)
    steps, truncated = 0, False
    while not truncated and steps <= DEFAULT_MAX_EPISODE_STEPS:
        _, _, terminated, truncated, _ = env.step(0)  # always up: never reaches the goal
        assert not terminated
        steps += 1
    assert truncated and steps == DEFAULT_MAX_EPISODE_STEPS
    preset = EnvSource("cliff", "CliffWalking-v1", {"max_episode_steps": 200}).make()
    assert preset.spec is not None and preset.spec.max_episode_steps == 200


def test_success_rules() -> None:
    source = EnvSource("x", "FrozenLake-v1", success="terminal_reward")
    assert source.is_success(True, False, 1.0, {})
    assert not source.is_success(True, False, 0.0, {})
    assert not source.is_success(False, True, 0.0, {})
    assert source.is_success(False, True, 0.0, {"is_success": True})
    assert EnvSource("x", "CartPole-v1", success="truncated").is_success(False, True, 1.0, {})
