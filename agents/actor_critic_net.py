"""The actor-critic network: encoders (feed-forward or LSTM), a policy head, a value head.

The actor and the critic each have an encoder, or share one (``shared_encoder``). With
``lstm``, each encoder is a `RecurrentEncoder` and the recurrent state is a list with one
``(h, c)`` pair per distinct encoder; a feed-forward network's state is the empty list.

Defined once: acting, the rollout's values and the updates all call these modules.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch
from torch import nn

from agents.action_heads import ActionHead, action_head_for
from toolkit.nets import make_encoder, resolve_kind
from toolkit.nets.lstm import RecurrentEncoder, State
from toolkit.nets.mlp import layer_init

RecurrentState = list[State]


def build_encoder(observation_space: gym.Space, cfg: Any) -> nn.Module:
    """The encoder that `cfg` (an `ActorCriticConfig`) asks for."""
    kind = resolve_kind(observation_space, cfg.encoder)
    kwargs: dict[str, Any] = {"ortho_init": cfg.ortho_init}
    if kind == "mlp":
        kwargs.update(hidden=tuple(cfg.hidden), activation=cfg.activation)
    if cfg.lstm:
        return make_encoder(observation_space, "lstm", base=kind,
                            hidden_size=cfg.lstm_hidden_size, **kwargs)
    return make_encoder(observation_space, kind, **kwargs)


class ActorCritic(nn.Module):
    def __init__(self, observation_space: gym.Space, action_space: gym.Space, cfg: Any) -> None:
        super().__init__()
        self.actor_encoder = build_encoder(observation_space, cfg)
        self.critic_encoder = (self.actor_encoder if cfg.shared_encoder
                               else build_encoder(observation_space, cfg))
        self.recurrent = bool(cfg.lstm)
        features = self.actor_encoder.output_dim
        assert isinstance(features, int)
        self.action_head: ActionHead = action_head_for(
            action_space, features, log_std_init=cfg.log_std_init, ortho_init=cfg.ortho_init)
        self.value_head = nn.Linear(features, 1)
        if cfg.ortho_init:
            layer_init(self.value_head, gain=1.0)

    def encoders(self) -> list[nn.Module]:
        """The distinct encoders: one when shared, else the actor's and the critic's."""
        if self.critic_encoder is self.actor_encoder:
            return [self.actor_encoder]
        return [self.actor_encoder, self.critic_encoder]

    def initial_state(self, n_envs: int, device: torch.device) -> RecurrentState:
        if not self.recurrent:
            return []
        states = []
        for encoder in self.encoders():
            assert isinstance(encoder, RecurrentEncoder)
            states.append(encoder.initial_state(n_envs, device))
        return states

    def features(self, obs: torch.Tensor, state: RecurrentState,
                 episode_start: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor,
                                                              RecurrentState]:
        """One step for a batch ``(B, ...)``: actor features, critic features, new state
        (a feed-forward network needs no `episode_start`)."""
        if not self.recurrent:
            actor = self.actor_encoder(obs)
            critic = actor if len(self.encoders()) == 1 else self.critic_encoder(obs)
            return actor, critic, []
        assert episode_start is not None
        outputs, new_state = [], []
        for encoder, encoder_state in zip(self.encoders(), state, strict=True):
            assert isinstance(encoder, RecurrentEncoder)
            out, next_state = encoder.step(obs, encoder_state, episode_start)
            outputs.append(out)
            new_state.append(next_state)
        return outputs[0], outputs[-1], new_state

    def sequence_features(self, obs: torch.Tensor, state: RecurrentState,
                          episode_starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A recurrent network over ``(T, B, ...)`` sequences from `state`: actor and critic
        features, flattened to ``(T * B, F)`` in the order of ``obs.flatten(0, 1)``."""
        outputs = []
        for encoder, encoder_state in zip(self.encoders(), state, strict=True):
            assert isinstance(encoder, RecurrentEncoder)
            out = encoder.sequence_outputs(obs, encoder_state, episode_starts)
            outputs.append(out.flatten(0, 1))
        return outputs[0], outputs[-1]

    def actor_step(self, obs: torch.Tensor, state: RecurrentState, episode_start: torch.Tensor
                   ) -> tuple[torch.Tensor, RecurrentState]:
        """The actor's features of a batch and the new state (acting, not learning)."""
        if not self.recurrent:
            return self.actor_encoder(obs), state
        actor, _, state = self.features(obs, state, episode_start)
        return actor, state

    def value(self, critic_features: torch.Tensor) -> torch.Tensor:
        return self.value_head(critic_features).squeeze(-1)

    def act(self, obs: torch.Tensor, state: RecurrentState, episode_start: torch.Tensor,
            generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                 RecurrentState]:
        """One rollout step for a batch: sampled actions, their log-probabilities, the
        values and the new state."""
        actor, critic, state = self.features(obs, state, episode_start)
        actions, log_probs = self.action_head.sample_and_log_prob(actor, generator)
        return actions, log_probs, self.value(critic), state

    def critic_value(self, obs: torch.Tensor, state: RecurrentState,
                     episode_start: torch.Tensor) -> torch.Tensor:
        """The values of a batch, through the critic's encoder only (the actor's, when it
        is another, would change nothing)."""
        if not self.recurrent:
            return self.value(self.critic_encoder(obs))
        assert isinstance(self.critic_encoder, RecurrentEncoder)
        critic, _ = self.critic_encoder.step(obs, state[-1], episode_start)
        return self.value(critic)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Action-head output and value for a batch, from a zero state (for `--summary`)."""
        batch = obs.shape[0]
        state = self.initial_state(batch, obs.device)
        starts = torch.ones(batch, device=obs.device)
        actor, critic, _ = self.features(obs, state, starts)
        return self.action_head.mode(actor), self.value(critic)
