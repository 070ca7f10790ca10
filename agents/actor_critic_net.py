"""The actor-critic network: encoders (feed-forward or LSTM), a policy head, a value head.

The actor and the critic each have an encoder, or share one (``shared_encoder``). With
``lstm``, each encoder is a `RecurrentEncoder` and the recurrent state is a list with one
``(h, c)`` pair per distinct encoder; a feed-forward network's state is the empty list.

The agent's hot paths (`flat_features`, `head_value`, `act`, `critic_value`, and
`RolloutActor` for a rollout's steps) run a plain MLP encoder as a chain of functional calls
(``F.linear``, ``torch.tanh``; `toolkit.nets.fast_mlp`) instead of calling each module: the
same operations on the same weights, so the same numbers, without nn.Module's per-call
overhead, which is most of the cost of a forward pass on a rollout step's small batch.
Module hooks do not see those calls; `forward`, `features` and `value` call the modules.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import torch
from torch import nn
from torch.nn import functional as F

from agents.action_heads import ActionHead, action_head_for
from toolkit.nets import make_encoder, resolve_kind
from toolkit.nets.fast_mlp import (
    LinearChain,
    Plan,
    linear_params,
    mlp_plan,
    preprocess_batch,
    run_encoder,
)
from toolkit.nets.lstm import RecurrentEncoder, State
from toolkit.nets.mlp import layer_init

RecurrentState = list[State]


class RolloutActor:
    """`ActorCritic.act` for the steps of one rollout of a feed-forward network whose
    encoders are plain MLPs: during a rollout the parameters do not change, so the
    transposes of the weights are made once, and each Linear layer is ``torch.addmm`` with
    one (what ``F.linear`` computes, less a transpose and a dispatch per layer and step;
    `LinearChain`). Made by `ActorCritic.rollout_actor`; not valid after the parameters
    change."""

    def __init__(self, net: ActorCritic, actor: Plan, critic: Plan | None,
                 head_layer: nn.Linear) -> None:
        self.net, self.head = net, net.action_head
        self.actor_plan, self.critic_plan = actor, critic
        self.actor = LinearChain(actor.layers)
        self.critic = None if critic is None else LinearChain(critic.layers)
        self.head_weight, self.head_bias = head_layer.weight.t(), head_layer.bias
        self.value_weight, self.value_bias = net.value_head.weight.t(), net.value_head.bias

    def __call__(self, obs: torch.Tensor, state: RecurrentState, episode_start: torch.Tensor,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor,
                                                      torch.Tensor, RecurrentState]:
        x = preprocess_batch(self.net.actor_encoder, self.actor_plan, obs)
        actor = self.actor(x)
        critic = actor if self.critic is None else self.critic(x)
        actions, log_probs = self.head.sample_from_output(
            torch.addmm(self.head_bias, actor, self.head_weight), generator)
        values = torch.addmm(self.value_bias, critic, self.value_weight).squeeze(-1)
        return actions, log_probs, values, state


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
        self.shared = self.critic_encoder is self.actor_encoder
        self._value_params = linear_params(self.value_head)
        self._actor_plan = mlp_plan(self.actor_encoder)
        self._critic_plan = mlp_plan(self.critic_encoder)
        # Two plain MLP encoders of one space preprocess a batch alike (a Preprocessor has
        # no parameters): the critic's takes the actor's preprocessed batch.
        self._one_preprocess = (
            not self.shared and self._actor_plan is not None and self._critic_plan is not None
            and repr(self.actor_encoder.preprocess) == repr(self.critic_encoder.preprocess))

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
                 episode_start: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor,
                                                       RecurrentState]:
        """One step for a batch ``(B, ...)``: actor features, critic features, new state."""
        if not self.recurrent:
            actor = self.actor_encoder(obs)
            critic = actor if len(self.encoders()) == 1 else self.critic_encoder(obs)
            return actor, critic, []
        outputs, new_state = [], []
        for encoder, encoder_state in zip(self.encoders(), state, strict=True):
            out, next_state = encoder(obs, encoder_state, episode_start)
            outputs.append(out)
            new_state.append(next_state)
        return outputs[0], outputs[-1], new_state

    def _recurrent_step(self, obs: torch.Tensor, state: RecurrentState,
                        episode_start: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor,
                                                              RecurrentState]:
        """`features` of a recurrent network through `RecurrentEncoder.step`."""
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

    def value(self, critic_features: torch.Tensor) -> torch.Tensor:
        return self.value_head(critic_features).squeeze(-1)

    def head_value(self, critic_features: torch.Tensor) -> torch.Tensor:
        """`value` without calling the module."""
        head = self._value_params
        return F.linear(critic_features, head["weight"], head["bias"]).squeeze(-1)

    def flat_features(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A feed-forward network's actor and critic features of a batch ``(B, ...)``."""
        if self._one_preprocess:
            assert self._actor_plan is not None
            x = preprocess_batch(self.actor_encoder, self._actor_plan, obs)
            return (run_encoder(self.actor_encoder, self._actor_plan, obs, x),
                    run_encoder(self.critic_encoder, self._critic_plan, obs, x))
        actor = run_encoder(self.actor_encoder, self._actor_plan, obs)
        if self.shared:
            return actor, actor
        return actor, run_encoder(self.critic_encoder, self._critic_plan, obs)

    def act(self, obs: torch.Tensor, state: RecurrentState, episode_start: torch.Tensor,
            generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                 RecurrentState]:
        """One rollout step for a batch: sampled actions, their log-probabilities, the
        values and the new state."""
        if self.recurrent:
            actor, critic, state = self._recurrent_step(obs, state, episode_start)
        else:
            actor, critic = self.flat_features(obs)
        actions, log_probs = self.action_head.sample_and_log_prob(actor, generator)
        return actions, log_probs, self.head_value(critic), state

    def actor_step(self, obs: torch.Tensor, state: RecurrentState, episode_start: torch.Tensor
                   ) -> tuple[torch.Tensor, RecurrentState]:
        """The actor's features of a batch and the new state (acting, not learning)."""
        if self.recurrent:
            actor, _, state = self._recurrent_step(obs, state, episode_start)
            return actor, state
        return run_encoder(self.actor_encoder, self._actor_plan, obs), state

    def rollout_actor(self) -> Callable[[torch.Tensor, RecurrentState, torch.Tensor,
                                         torch.Generator],
                                        tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                              RecurrentState]]:
        """`act`, for the steps of one rollout (during which the parameters do not change):
        a `RolloutActor` where it applies, else `act` itself."""
        head_layer = self.action_head.output_layer()
        if (self.recurrent or head_layer is None or self._actor_plan is None
                or not (self.shared or self._one_preprocess)):
            return self.act
        return RolloutActor(self, self._actor_plan, None if self.shared else self._critic_plan,
                            head_layer)

    def critic_value(self, obs: torch.Tensor, state: RecurrentState,
                     episode_start: torch.Tensor) -> torch.Tensor:
        """The values of a batch, through the critic's encoder only (the actor's, when it
        is another, would change nothing)."""
        if not self.recurrent:
            return self.head_value(run_encoder(self.critic_encoder, self._critic_plan, obs))
        assert isinstance(self.critic_encoder, RecurrentEncoder)
        critic, _ = self.critic_encoder.step(obs, state[-1], episode_start)
        return self.head_value(critic)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Action-head output and value for a batch, from a zero state (for `--summary`)."""
        batch = obs.shape[0]
        state = self.initial_state(batch, obs.device)
        starts = torch.ones(batch, device=obs.device)
        actor, critic, _ = self.features(obs, state, starts)
        dist = self.action_head.distribution(actor)
        return self.action_head.mode(dist), self.value(critic)
