"""Policy heads: features -> an action distribution, for Discrete and Box action spaces.

Actions are sampled with the agent's own `torch.Generator` (torch.distributions only draws
from the global RNG), so that a seed fixes a run whatever else uses the global RNG.
"""

from __future__ import annotations

import gymnasium as gym
import torch
from torch import nn
from torch.distributions import Categorical, Distribution, Normal

from toolkit.nets.mlp import layer_init


class ActionHead(nn.Module):
    """Features ``(B, F)`` -> a distribution over a batch of actions."""

    def distribution(self, features: torch.Tensor) -> Distribution:
        raise NotImplementedError

    def sample(self, dist: Distribution, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def mode(self, dist: Distribution) -> torch.Tensor:
        raise NotImplementedError

    def log_prob(self, dist: Distribution, actions: torch.Tensor) -> torch.Tensor:
        """Log-probability of each action of the batch, ``(B,)``."""
        raise NotImplementedError

    def entropy(self, dist: Distribution) -> torch.Tensor:
        raise NotImplementedError


class CategoricalHead(ActionHead):
    """Logits of a categorical distribution over `n` actions."""

    def __init__(self, features: int, n: int, *, ortho_init: bool) -> None:
        super().__init__()
        self.logits = nn.Linear(features, n)
        if ortho_init:
            layer_init(self.logits, gain=0.01)

    def distribution(self, features: torch.Tensor) -> Categorical:
        return Categorical(logits=self.logits(features), validate_args=False)

    def sample(self, dist: Distribution, generator: torch.Generator) -> torch.Tensor:
        assert isinstance(dist, Categorical)
        return torch.multinomial(dist.probs, 1, generator=generator).squeeze(1)

    def mode(self, dist: Distribution) -> torch.Tensor:
        assert isinstance(dist, Categorical)
        return dist.logits.argmax(dim=1)

    def log_prob(self, dist: Distribution, actions: torch.Tensor) -> torch.Tensor:
        return dist.log_prob(actions.long())

    def entropy(self, dist: Distribution) -> torch.Tensor:
        return dist.entropy()


class GaussianHead(ActionHead):
    """A diagonal Gaussian: the mean from the features, one learned log std per action
    dimension that does not depend on the state (as in Stable-Baselines3 and CleanRL).

    Samples are not squashed: the agent clips them to the action space's bounds before
    stepping the env and learns from the unclipped ones."""

    def __init__(self, features: int, action_dim: int, *, log_std_init: float,
                 ortho_init: bool) -> None:
        super().__init__()
        self.mean = nn.Linear(features, action_dim)
        if ortho_init:
            layer_init(self.mean, gain=0.01)
        self.log_std = nn.Parameter(torch.full((action_dim,), float(log_std_init)))

    def distribution(self, features: torch.Tensor) -> Normal:
        mean = self.mean(features)
        return Normal(mean, self.log_std.exp().expand_as(mean), validate_args=False)

    def sample(self, dist: Distribution, generator: torch.Generator) -> torch.Tensor:
        assert isinstance(dist, Normal)
        noise = torch.randn(dist.mean.shape, generator=generator, device=dist.mean.device,
                            dtype=dist.mean.dtype)
        return dist.mean + dist.stddev * noise

    def mode(self, dist: Distribution) -> torch.Tensor:
        assert isinstance(dist, Normal)
        return dist.mean

    def log_prob(self, dist: Distribution, actions: torch.Tensor) -> torch.Tensor:
        return dist.log_prob(actions).sum(dim=1)

    def entropy(self, dist: Distribution) -> torch.Tensor:
        return dist.entropy().sum(dim=1)


def action_head_for(space: gym.Space, features: int, *, log_std_init: float,
                    ortho_init: bool) -> ActionHead:
    """The head for a Discrete or a one-dimensional Box action space."""
    if isinstance(space, gym.spaces.Discrete):
        return CategoricalHead(features, int(space.n), ortho_init=ortho_init)
    if isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
        return GaussianHead(features, space.shape[0], log_std_init=log_std_init,
                            ortho_init=ortho_init)
    raise ValueError(f"no action head for {space}: Discrete and 1-D Box spaces are supported")

