"""What an agent hands out to act: a policy over a batch of environments.

The toolkit evaluates every agent, and `gymkit eval` watches it, through this
one object, so no plugin writes an evaluation loop. A policy acts for
`n_envs` environments at once and keeps whatever state acting needs between
steps (an LSTM's hidden state); it never learns. ``episode_start[i]`` is true
on the first step of a new episode in env ``i``: a recurrent policy forgets its
state for that row before acting.

This module does not import torch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import numpy as np


class Policy(ABC):
    """Acts for a batch of environments; carries its own recurrent state."""

    def reset(self, n_envs: int, seed: int | None = None) -> None:  # noqa: B027
        """Forget all state; the next `act` gets `n_envs` rows, every one starting an episode.

        A stochastic policy seeds the RNG it samples actions with from `seed` (when given),
        so that an evaluation with one seed replays the same episodes."""

    @abstractmethod
    def act(self, obs: np.ndarray, episode_start: np.ndarray) -> np.ndarray:
        """Actions for a batch of observations (leading dimension: the envs)."""


class FunctionPolicy(Policy):
    """A stateless policy from a function of the observation batch."""

    def __init__(self, act: Callable[[np.ndarray], np.ndarray]) -> None:
        self._act = act

    def act(self, obs: np.ndarray, episode_start: np.ndarray) -> np.ndarray:
        return self._act(obs)


def epsilon_greedy(greedy: Callable[[], np.ndarray], n: int, n_actions: int, epsilon: float,
                   rng: np.random.Generator) -> np.ndarray:
    """For `n` envs: a random action with probability epsilon, else the greedy one.
    `greedy()` (a network's forward pass, say) runs only when some env acts greedily."""
    explore = rng.random(n) < epsilon
    random_actions = rng.integers(n_actions, size=n)
    if explore.all():
        return random_actions
    return np.where(explore, random_actions, greedy())
