"""Running a policy for whole episodes, and confidence intervals on what it scored."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym

from toolkit.environments import EnvSource

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


def run_episodes(
    env: gym.Env,
    policy: Callable[[Any], Any],
    episodes: int,
    *,
    seed: int,
    source: EnvSource,
    on_step: Callable[[gym.Env], None] | None = None,
) -> EpisodeResults:
    """Play `episodes` episodes with `policy`; the first reset is seeded, later ones continue."""
    results = EpisodeResults()
    obs, info = env.reset(seed=seed)
    if on_step is not None:
        on_step(env)
    total, length = 0.0, 0
    while len(results.returns) < episodes:
        obs, reward, terminated, truncated, info = env.step(policy(obs))
        total += float(reward)
        length += 1
        if on_step is not None:
            on_step(env)
        if terminated or truncated:
            results.returns.append(total)
            results.lengths.append(length)
            results.successes.append(source.is_success(terminated, truncated, float(reward), info))
            total, length = 0.0, 0
            if len(results.returns) < episodes:
                obs, info = env.reset()
                if on_step is not None:
                    on_step(env)
    return results
