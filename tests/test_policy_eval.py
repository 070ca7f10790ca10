"""The policy seam and the toolkit's evaluation on a vector env; env sources with wrappers."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from agents.qlearning import QLearning
from toolkit.environments import EnvSource, resolve_env
from toolkit.errors import GymkitError
from toolkit.evaluation import evaluate_policy
from toolkit.policy import FunctionPolicy, Policy
from toolkit.testing import make_trainer


def _trained_frozenlake() -> QLearning:
    agent = make_trainer(QLearning, "frozenlake", {"steps_per_call": 5000})
    for _ in range(4):
        agent.train_step()
    assert isinstance(agent, QLearning)
    return agent


def test_episode_k_is_seeded_seed_plus_k_whichever_env_plays_it() -> None:
    agent = _trained_frozenlake()
    source = agent.source
    policy = agent.policy()
    one = evaluate_policy(policy, source, 40, seed=100, n_envs=1)
    several = evaluate_policy(policy, source, 40, seed=100, n_envs=7)
    assert (one.returns, one.lengths, one.successes) == (
        several.returns, several.lengths, several.successes)
    # The same episodes played one by one, by hand.
    env = source.make()
    q = agent.q_table()
    for k in (0, 13, 39):
        obs, _ = env.reset(seed=100 + k)
        length, total, done = 0, 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(int(q[obs].argmax()))
            total += float(reward)
            length += 1
            done = terminated or truncated
        assert (one.returns[k], one.lengths[k]) == (total, length)
    assert len(set(one.lengths)) > 1  # the episodes do differ: the seeds are not all one


def test_exactly_the_episodes_asked_for_even_with_more_envs() -> None:
    source = EnvSource("cart", "CartPole-v1")
    results = evaluate_policy(FunctionPolicy(lambda obs: np.zeros(len(obs), dtype=np.int64)),
                              source, 3, seed=0, n_envs=8)
    assert len(results.returns) == len(results.lengths) == 3
    # Always pushing left, CartPole falls within a dozen steps; returns equal lengths.
    assert results.returns == [float(n) for n in results.lengths]
    assert all(n < 20 for n in results.lengths)


class _EpisodeClock(Policy):
    """Counts the steps of each env's episode, trusting only episode_start."""

    def __init__(self) -> None:
        self.clock = np.zeros(0, dtype=np.int64)
        self.seen: list[np.ndarray] = []

    def reset(self, n_envs: int, seed: int | None = None) -> None:
        self.clock = np.full(n_envs, -99, dtype=np.int64)

    def act(self, obs: np.ndarray, episode_start: np.ndarray) -> np.ndarray:
        self.clock = np.where(episode_start, 0, self.clock + 1)
        self.seen.append(self.clock.copy())
        return np.zeros(len(obs), dtype=np.int64)


def test_a_recurrent_policy_is_told_where_each_episode_starts() -> None:
    clock = _EpisodeClock()
    results = evaluate_policy(clock, EnvSource("cart", "CartPole-v1"), 5, seed=3, n_envs=2)
    steps = np.stack(clock.seen)
    assert (steps >= 0).all()  # the first act of every env had episode_start set
    # Each finished episode's length shows up as a clock reading of length - 1 before a restart.
    for length in results.lengths:
        assert (steps == length - 1).any()
    restarts = int((steps[1:] == 0).sum())
    assert restarts >= len(results.lengths) - 2  # every env that ended was restarted


def test_success_comes_from_the_vector_infos() -> None:
    source = resolve_env("frozenlake-deterministic")[0]
    # Right, right, down, down, down, right reaches the goal of the 4x4 map.
    plan = [2, 2, 1, 1, 1, 2]

    class Plan(Policy):
        def reset(self, n_envs: int, seed: int | None = None) -> None:
            self.t = 0

        def act(self, obs: np.ndarray, episode_start: np.ndarray) -> np.ndarray:
            self.t = 0 if episode_start.all() else self.t + 1
            return np.full(len(obs), plan[self.t])

    results = evaluate_policy(Plan(), source, 2, seed=0, n_envs=1)
    assert results.successes == [True, True]
    assert results.metrics()["eval/success_rate"] == 1.0


def test_evaluation_without_episode_statistics_is_refused() -> None:
    source = EnvSource("cart", "CartPole-v1")
    with pytest.raises(GymkitError, match="RecordEpisodeStatistics"):
        evaluate_policy(FunctionPolicy(lambda obs: np.zeros(len(obs), dtype=np.int64)), source,
                        1, seed=0, make_env=lambda: source.make(record_stats=False))


def test_the_exploring_policy_is_reproducible_and_explores() -> None:
    agent = _trained_frozenlake()
    obs = np.zeros(64, dtype=np.int64)
    starting = np.ones(64, dtype=bool)
    draws = []
    for seed in (5, 5, 6):
        policy = agent.policy(deterministic=False)
        policy.reset(64, seed=seed)
        draws.append(policy.act(obs, starting))
    assert np.array_equal(draws[0], draws[1])
    assert not np.array_equal(draws[0], draws[2])
    greedy = agent.policy().act(obs, starting)
    assert len(set(draws[0].tolist())) > 1 and len(set(greedy.tolist())) == 1
    # An evaluation seeds the policy too: the same seed replays the same exploring episodes.
    runs = [evaluate_policy(agent.policy(deterministic=False), agent.source, 30, seed=seed)
            for seed in (1, 1)]
    assert runs[0].lengths == runs[1].lengths


def test_the_greedy_policy_is_a_snapshot_taking_the_first_best_action() -> None:
    agent = make_trainer(QLearning, "frozenlake")
    assert isinstance(agent, QLearning)
    agent.q[0] = [0.0, 1.0, 1.0, 0.5]
    policy = agent.policy()
    agent.q[0] = [9.0, 0.0, 0.0, 0.0]
    assert policy.act(np.array([0]), np.array([True])).tolist() == [1]


# -- env sources ------------------------------------------------------------------------


def test_preset_wrappers_apply_in_order_over_the_episode_statistics() -> None:
    source = EnvSource("cart", "CartPole-v1", wrappers=(
        ("FrameStackObservation", {"stack_size": 3}),
        ("TransformReward", {"func": float}),
    ))
    env = source.make()
    assert env.observation_space.shape == (3, 4)
    assert isinstance(env, gym.wrappers.TransformReward)
    assert isinstance(env.env.env, gym.wrappers.RecordEpisodeStatistics)


def test_wrappers_round_trip_through_config_json() -> None:
    source = EnvSource("cart", "CartPole-v1", {"max_episode_steps": 50},
                       wrappers=(("FrameStackObservation", {"stack_size": 2}),),
                       setup=("gymnasium.envs",), channel_first=True)
    assert EnvSource.from_dict(source.to_dict()) == source


def test_an_unknown_wrapper_or_setup_module_is_one_clear_error() -> None:
    bad = EnvSource("cart", "CartPole-v1", wrappers=(("FrameStack", {}),))
    with pytest.raises(GymkitError, match=r"no wrapper 'FrameStack' in gymnasium\.wrappers"):
        bad.make()
    missing = EnvSource("x", "CartPole-v1", setup=("no_such_env_package",))
    with pytest.raises(GymkitError, match="pip install no_such_env_package"):
        missing.make()


def test_channel_first_transposes_image_observations() -> None:
    gym.register("gymkit-test/Image-v0", entry_point=_ImageEnv, max_episode_steps=5)
    try:
        env = EnvSource("img", "gymkit-test/Image-v0", channel_first=True).make()
        obs, _ = env.reset(seed=0)
        assert env.observation_space.shape == obs.shape == (3, 6, 5)
        raw, _ = _ImageEnv().reset(seed=0)
        assert np.array_equal(obs, raw.transpose(2, 0, 1))
        assert obs.flags["C_CONTIGUOUS"]
    finally:
        gym.registry.pop("gymkit-test/Image-v0")


def test_vector_envs_are_seeded_per_env_and_reset_in_the_same_step() -> None:
    envs = EnvSource("cart", "CartPole-v1").make_vector(3)
    obs, _ = envs.reset(seed=10)
    single = [EnvSource("cart", "CartPole-v1").make().reset(seed=10 + i)[0] for i in range(3)]
    assert np.array_equal(obs, np.stack(single))
    ended = False
    for _ in range(100):
        obs, _, terminated, truncated, infos = envs.step(np.zeros(3, dtype=np.int64))
        if (terminated | truncated).any():
            ended = True
            i = int(np.flatnonzero(terminated | truncated)[0])
            assert infos["_final_obs"][i]  # SAME_STEP: the final observation is kept aside
            assert not np.array_equal(infos["final_obs"][i], obs[i])
            break
    assert ended
    envs.close()
    with pytest.raises(GymkitError, match="n_envs must be at least 1"):
        EnvSource("cart", "CartPole-v1").make_vector(0)


class _ImageEnv(gym.Env):
    observation_space = gym.spaces.Box(0, 255, (6, 5, 3), np.uint8)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed: int | None = None, options: dict | None = None
              ) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        return self.np_random.integers(0, 256, (6, 5, 3), dtype=np.uint8), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        return self.np_random.integers(0, 256, (6, 5, 3), dtype=np.uint8), 0.0, False, False, {}


# -- --device auto for agents -------------------------------------------------------------


def test_auto_keeps_agents_on_vector_observations_on_the_cpu() -> None:
    from toolkit.launch import auto_agent_device

    device, note = auto_agent_device("cuda", EnvSource("cart", "CartPole-v1"))
    assert device == "cpu"
    assert note is not None and "chose the CPU over cuda" in note and "--device cuda" in note
    assert auto_agent_device("cpu", EnvSource("cart", "CartPole-v1")) == ("cpu", None)
    gym.register("gymkit-test/Image-v0", entry_point=_ImageEnv, max_episode_steps=5)
    try:
        assert auto_agent_device("cuda:1", EnvSource("img", "gymkit-test/Image-v0")) == (
            "cuda:1", None)
    finally:
        gym.registry.pop("gymkit-test/Image-v0")


def test_the_summary_says_why_auto_chose_the_cpu(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from toolkit import launch

    monkeypatch.setattr(launch, "resolve_device", lambda name, uses_torch=True: "cuda")
    prepared = launch.prepare("agent", "cartpole", "dqn", flags={"steps": 200},
                              assignments=["gradient_steps=0", "final_eval_episodes=1",
                                           "hidden=[8]"])
    assert prepared.trainer.ctx.device == "cpu"
    runner = launch.start(prepared, tmp_path, quiet=True)
    summary = runner.run().summary
    runner.trainer.close()
    assert "chose the CPU over cuda" in summary["device_note"]
    import io

    from rich.console import Console

    from toolkit.report import render_summary

    out = io.StringIO()
    render_summary(Console(file=out, width=200), summary, runner.trainer)
    assert "device" in out.getvalue() and "chose the CPU over cuda" in out.getvalue()
