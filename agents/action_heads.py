"""Policy heads: features -> an action distribution, for Discrete and Box action spaces.

Actions are sampled with the agent's own `torch.Generator` (torch.distributions only draws
from the global RNG), so that a seed fixes a run whatever else uses the global RNG.

`sample_and_log_prob` (acting in a rollout) and `log_prob_and_entropy` (the update) give
what the `Distribution` methods give. The categorical head computes them as
`torch.distributions.Categorical` does, without building one, which costs a fraction of it
on the small batches of a rollout step.
"""

from __future__ import annotations

import gymnasium as gym
import torch
from torch import nn
from torch.distributions import Categorical, Distribution, Normal
from torch.nn import functional as F

from toolkit.nets.mlp import layer_init


class ActionHead(nn.Module):
    """Features ``(B, F)`` -> a distribution over a batch of actions."""

    def distribution(self, features: torch.Tensor) -> Distribution:
        raise NotImplementedError

    def sample(self, dist: Distribution, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def mode(self, features: torch.Tensor) -> torch.Tensor:
        """The most likely action of each row, from the features without building the
        distribution (what a greedy evaluation asks at every step)."""
        raise NotImplementedError

    def log_prob(self, dist: Distribution, actions: torch.Tensor) -> torch.Tensor:
        """Log-probability of each action of the batch, ``(B,)``."""
        raise NotImplementedError

    def entropy(self, dist: Distribution) -> torch.Tensor:
        raise NotImplementedError

    def sample_and_log_prob(self, features: torch.Tensor, generator: torch.Generator
                            ) -> tuple[torch.Tensor, torch.Tensor]:
        """A sampled action per row and its log-probability: `sample`, then `log_prob`."""
        dist = self.distribution(features)
        actions = self.sample(dist, generator)
        return actions, self.log_prob(dist, actions)

    def log_prob_and_entropy(self, features: torch.Tensor, actions: torch.Tensor
                             ) -> tuple[torch.Tensor, torch.Tensor]:
        """`log_prob` of `actions` and `entropy`, each ``(B,)``."""
        dist = self.distribution(features)
        return self.log_prob(dist, actions), self.entropy(dist)


def _normalized(logits: torch.Tensor) -> torch.Tensor:
    """Log-probabilities from logits, as `Categorical` normalizes them."""
    return logits - logits.logsumexp(dim=-1, keepdim=True)


def categorical_sample(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One action per row of `probs` ``(B, n)``, drawn with `generator`.

    The exponential race: ``argmax_i p_i / q_i`` with ``q_i ~ Exp(1)`` is ``i`` with
    probability ``p_i`` (the Gumbel-max trick, exponentiated). It is how `torch.multinomial`
    draws one sample, from the same numbers of the generator, so the actions are those of
    ``torch.multinomial(probs, 1, generator=generator)``; it skips multinomial's checks of
    `probs`, which a softmax always passes (and which cost more than the draw)."""
    race = torch.empty_like(probs).exponential_(1, generator=generator)
    return (probs / race).argmax(dim=-1)


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
        return categorical_sample(dist.probs, generator)

    def mode(self, features: torch.Tensor) -> torch.Tensor:
        # The argmax of the logits is that of the distribution's normalized ones.
        return self.logits(features).argmax(dim=-1)

    def log_prob(self, dist: Distribution, actions: torch.Tensor) -> torch.Tensor:
        return dist.log_prob(actions.long())

    def entropy(self, dist: Distribution) -> torch.Tensor:
        return dist.entropy()

    # The numbers of `Categorical`, computed as it does, without building one: its logits
    # normalized by logsumexp, its probs (their softmax), its log_prob (a gather) and its
    # entropy, -sum(p log p) with log p clamped at the dtype's smallest value.

    def sample_and_log_prob(self, features: torch.Tensor, generator: torch.Generator
                            ) -> tuple[torch.Tensor, torch.Tensor]:
        log_p = _normalized(self.logits(features))
        actions = categorical_sample(F.softmax(log_p, dim=-1), generator)
        return actions, log_p.gather(-1, actions.unsqueeze(-1)).squeeze(-1)

    def log_prob_and_entropy(self, features: torch.Tensor, actions: torch.Tensor
                             ) -> tuple[torch.Tensor, torch.Tensor]:
        log_p = _normalized(self.logits(features))
        log_prob = log_p.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
        clamped = log_p.clamp(min=torch.finfo(log_p.dtype).min)
        return log_prob, -(clamped * F.softmax(log_p, dim=-1)).sum(-1)


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

    def mode(self, features: torch.Tensor) -> torch.Tensor:
        return self.mean(features)

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

