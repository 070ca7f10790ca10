"""Evaluating a policy on whole episodes, and confidence intervals on what it scored."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from toolkit import progress
from toolkit.environments import EnvSource
from toolkit.errors import GymkitError
from toolkit.policy import Policy

Z95 = 1.959963984540054


@dataclass
class EpisodeResults:
    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    successes: list[bool] = field(default_factory=list)

    def metrics(self, prefix: str = "eval/", *, with_success: bool = True) -> dict[str, float]:
        n = len(self.returns)
        mean = sum(self.returns) / n
        var = sum((r - mean) ** 2 for r in self.returns) / (n - 1) if n > 1 else 0.0
        out = {
            f"{prefix}mean_return": mean,
            f"{prefix}return_ci95": Z95 * math.sqrt(var / n),
            f"{prefix}mean_length": sum(self.lengths) / n,
            f"{prefix}episodes": float(n),
        }
        if with_success:
            low, high = wilson_interval(sum(self.successes), n)
            out[f"{prefix}success_rate"] = sum(self.successes) / n
            out[f"{prefix}success_rate_ci_low"] = low
            out[f"{prefix}success_rate_ci_high"] = high
        return out


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (sound near 0 and 1, unlike p ± z·se)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def evaluate_policy(
    policy: Policy,
    source: EnvSource,
    episodes: int,
    *,
    seed: int,
    n_envs: int = 8,
    make_env: Callable[[], gym.Env] | None = None,
    on_step: Callable[[SyncVectorEnv], None] | None = None,
) -> EpisodeResults:
    """Play `episodes` whole episodes with `policy` on a vector env of up to `n_envs` envs.

    Episode ``k`` starts from ``reset(seed=seed + k)`` whichever env plays it, so with a
    deterministic policy the results do not depend on `n_envs`, and every periodic
    evaluation with one seed replays the same episodes. Returns and lengths come from
    gymnasium's `RecordEpisodeStatistics` (`make_env` must keep it, as `EnvSource.make`
    does), so reward-shaping wrappers outside it do not change the score.
    """
    if episodes < 1:
        raise ValueError(f"evaluation needs at least one episode, got {episodes}")
    n_envs = max(1, min(n_envs, episodes))
    # Autoreset is off: the loop resets each finished env itself, with that episode's seed.
    envs = SyncVectorEnv([make_env or source.make] * n_envs, autoreset_mode=AutoresetMode.DISABLED)
    try:
        with progress.task(None, episodes, "episodes") as bar:
            return _play(envs, policy, source, episodes, seed, on_step, bar)
    finally:
        envs.close()


def _play(envs: SyncVectorEnv, policy: Policy, source: EnvSource, episodes: int, seed: int,
          on_step: Callable[[SyncVectorEnv], None] | None, bar: progress.Task
          ) -> EpisodeResults:
    n = envs.num_envs
    playing = np.arange(n)  # the episode each env plays; -1 once no episode is left for it
    next_episode = n
    found: dict[int, tuple[float, int, bool]] = {}
    obs, _ = envs.reset(seed=[seed + k for k in range(n)])
    policy.reset(n, seed=seed)
    starting = np.ones(n, dtype=bool)
    if on_step is not None:
        on_step(envs)
    while (playing >= 0).any():
        obs, rewards, terminated, truncated, infos = envs.step(policy.act(obs, starting))
        if on_step is not None:
            on_step(envs)
        ended = terminated | truncated
        starting = ended
        if not ended.any():
            continue
        seeds: list[int | None] = [None] * n
        for i in np.flatnonzero(ended):
            if playing[i] >= 0:
                found[int(playing[i])] = _outcome(source, infos, int(i), bool(terminated[i]),
                                                  bool(truncated[i]), float(rewards[i]))
                bar.advance()
            if next_episode < episodes:
                playing[i], seeds[i] = next_episode, seed + next_episode
                next_episode += 1
            else:  # a vector env steps every env: an idle one plays on, and is not counted
                playing[i], seeds[i] = -1, seed
        if (playing >= 0).any():
            obs, _ = envs.reset(seed=seeds, options={"reset_mask": ended})
    results = EpisodeResults()
    for k in range(episodes):
        episode_return, length, success = found[k]
        results.returns.append(episode_return)
        results.lengths.append(length)
        results.successes.append(success)
    return results


def _outcome(source: EnvSource, infos: dict[str, Any], i: int, terminated: bool,
             truncated: bool, reward: float) -> tuple[float, int, bool]:
    """(return, length, success) of the episode env `i` just ended."""
    if "episode" not in infos or not infos["_episode"][i]:
        raise GymkitError(f"evaluation of {source.id} found no episode statistics: the env "
                          "must be wrapped in gymnasium's RecordEpisodeStatistics")
    # A vector env's infos hold one array per key, and a mask "_key" of the envs that set it.
    info = {key: value[i] for key, value in infos.items()
            if not isinstance(value, dict) and infos.get(f"_{key}", np.zeros(i + 1, bool))[i]}
    success = source.is_success(terminated, truncated, reward, info)
    return float(infos["episode"]["r"][i]), int(infos["episode"]["l"][i]), success
