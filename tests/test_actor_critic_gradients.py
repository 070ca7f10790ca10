"""A2C's and PPO's losses and gradients without autograd (`agents.actor_critic_gradients`):
the same bits as autograd's, and used exactly where they apply."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.nn import functional as F

from agents.actor_critic import (
    A2C,
    PPO,
    ActorCriticAgent,
    RecurrentPPO,
    clipped_surrogate_loss,
    normalized,
)
from agents.actor_critic_gradients import CategoricalLossGradients
from toolkit.testing import make_trainer
from toolkit.trainer import Budget


def _agent(cls: type[ActorCriticAgent], target: str = "cartpole", **overrides: Any
           ) -> ActorCriticAgent:
    # PPO's minibatches come from the rollout: one of its 40 steps at most.
    batch = {"batch_size": 40} if issubclass(cls, PPO) else {}
    cfg = {"n_envs": 4, "n_steps": 10, "hidden": [16, 16], **batch, **overrides}
    agent = make_trainer(cls, target, cfg, budget=Budget("steps", 10**9))
    assert isinstance(agent, ActorCriticAgent)
    return agent


def _minibatch(agent: ActorCriticAgent, size: int) -> dict[str, torch.Tensor]:
    """A rollout's minibatch of `size` steps, after the network has moved away from the
    rollout's policy (so that PPO's ratios leave the clip range on both sides)."""
    rollout, _, _ = agent._collect(agent.cfg.n_steps)
    with torch.no_grad():
        for param in agent.net.parameters():
            param.add_(torch.randn_like(param), alpha=0.5)
    index = torch.randperm(len(rollout.flat_actions))[:size]
    return {"obs": rollout.flat_obs[index], "actions": rollout.flat_actions[index],
            "advantages": normalized(rollout.advantages.flatten()[index]),
            "old_log_probs": rollout.log_probs.flatten()[index],
            "returns": rollout.returns.flatten()[index]}


def _autograd(agent: ActorCriticAgent, batch: dict[str, torch.Tensor], clip: float | None,
              vf_coef: float) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """The policy loss, value loss and parameter gradients as the agents' autograd path
    computes them (PPO's with a clip range, else A2C's)."""
    net = agent.net
    actor, critic = net.flat_features(batch["obs"])
    log_probs, _ = net.action_head.log_prob_and_entropy(actor, batch["actions"], False)
    if clip is None:
        policy_loss = -(batch["advantages"] * log_probs).mean()
    else:
        ratio = (log_probs - batch["old_log_probs"]).exp()
        policy_loss = clipped_surrogate_loss(ratio, batch["advantages"], clip)
    value_loss = F.mse_loss(net.head_value(critic), batch["returns"])
    grads = torch.autograd.grad(policy_loss + vf_coef * value_loss, list(net.parameters()))
    return policy_loss, value_loss, list(grads)


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
@pytest.mark.parametrize("size, activation, vf_coef", [(40, "tanh", 0.5), (37, "relu", 0.25),
                                                       (1, "tanh", 1.0)])
def test_the_gradients_are_autograds_to_the_last_bit(algo: str, size: int, activation: str,
                                                      vf_coef: float) -> None:
    agent = _agent(PPO if algo == "ppo" else A2C, activation=activation)
    batch = _minibatch(agent, size)
    gradients = CategoricalLossGradients.for_net(agent.net, ent_coef=0.0)
    assert gradients is not None
    clip = 0.1 if algo == "ppo" else None
    policy_loss, value_loss, expected = _autograd(agent, batch, clip, vf_coef)
    if clip is None:
        losses = gradients.a2c(batch["obs"], batch["actions"], batch["advantages"],
                               batch["returns"], vf_coef)
    else:
        losses = gradients.ppo(batch["obs"], batch["actions"], batch["advantages"],
                               batch["old_log_probs"], batch["returns"], clip, vf_coef)
        assert losses.ratio is not None
        if size > 1:  # the minibatch has ratios on both sides of the clip range
            assert bool((losses.ratio > 1 + clip).any()) and bool((losses.ratio < 1 - clip).any())
    assert torch.equal(losses.policy_loss, policy_loss)
    assert torch.equal(losses.value_loss, value_loss)
    got = {id(param): grad for param, grad in zip(losses.params, losses.grads, strict=True)}
    params = list(agent.net.parameters())
    assert set(got) == {id(param) for param in params}
    for param, grad in zip(params, expected, strict=True):
        assert torch.equal(got[id(param)], grad), tuple(param.shape)


@pytest.mark.parametrize("cls, target, overrides", [
    (PPO, "cartpole", {"shared_encoder": True}),
    (PPO, "cartpole", {"ent_coef": 0.01}),
    (PPO, "cartpole", {"clip_range_vf": 0.2}),
    (A2C, "cartpole", {"ent_coef": 0.01}),
    (RecurrentPPO, "cartpole", {"lstm_hidden_size": 8}),
    (PPO, "pendulum", {}),  # a Gaussian head
])
def test_they_are_not_used_where_they_do_not_apply(cls: type[ActorCriticAgent], target: str,
                                                   overrides: dict[str, Any]) -> None:
    agent = _agent(cls, target, **overrides)
    assert CategoricalLossGradients.for_net(
        agent.net, ent_coef=agent.cfg.ent_coef,
        clip_range_vf=getattr(agent.cfg, "clip_range_vf", 0.0)) is None
    agent.train_step()
    agent.train_step()
    assert agent._loss_gradients() is None


@pytest.mark.parametrize("cls, overrides", [
    (PPO, {"n_epochs": 3, "batch_size": 16}),
    (PPO, {"n_epochs": 4, "batch_size": 20, "normalize_advantage": False, "target_kl": 1e-5,
              "learning_rate": 0.01}),
    (A2C, {"max_grad_norm": 0.05}),
    (A2C, {"normalize_advantage": True, "optimizer": "adam"}),
])
def test_training_with_them_is_training_with_autograd(cls: type[ActorCriticAgent],
                                                      overrides: dict[str, Any],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Whole updates (minibatches, advantage normalization, target_kl's early stop, the
    metrics) give the same bits with the gradients computed by hand as with autograd."""
    fast, reference = _agent(cls, **overrides), _agent(cls, **overrides)
    monkeypatch.setattr(reference, "_loss_gradients", lambda: None)
    runs = [[agent.train_step() for _ in range(6)] for agent in (fast, reference)]
    assert fast._loss_gradients() is not None
    assert runs[0] == runs[1]
    if overrides.get("target_kl"):  # it stopped some updates early
        assert fast.updates < 6 * overrides["n_epochs"] * 2
    for mine, theirs in zip(fast.net.parameters(), reference.net.parameters(), strict=True):
        assert torch.equal(mine, theirs)
