"""A2C's and PPO's losses and their gradients without autograd, for the common case of a
feed-forward network whose actor and critic are two plain MLPs on vectors, with a
categorical policy head, and a loss without an entropy term or value clipping (rl-zoo's
CartPole settings, for instance).

On such small networks (CartPole's 64x64 MLPs, minibatches of a few hundred steps)
recording a graph and running autograd's engine cost more than the arithmetic: a third
of a PPO update's time went to autograd's backward pass (cProfile, CartPole's rl-zoo
settings), and PPO trains 1.28x faster without it, A2C 1.09x (30k and 60k CartPole
steps, timed with the two paths alternated). `CategoricalLossGradients` computes each
gradient with the operation autograd's backward runs for it (derivatives.yaml: ``neg``,
``mean``'s expand and divide, ``where``, ``mul``, ``exp``, ``gather``'s scatter-add,
``logsumexp_backward``'s ``grad * exp(x - result)``, ``mse_loss_backward``, and
`LinearChain.backward` for the layers), on the same operands, so the gradients (and so
the run) have the same bits as with autograd; tests compare the two bit for bit.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch.nn import functional as F

from agents.action_heads import CategoricalHead
from agents.actor_critic_net import ActorCritic
from toolkit.nets.fast_mlp import LinearChain, linear_params


class Losses(NamedTuple):
    """What an update reads of a minibatch's losses, and the gradients of their sum."""

    policy_loss: torch.Tensor
    value_loss: torch.Tensor
    #: The normalized logits: the entropies' input (`CategoricalHead.entropy_from`).
    log_p: torch.Tensor
    log_ratio: torch.Tensor | None  # PPO's
    ratio: torch.Tensor | None  # PPO's
    params: list[torch.Tensor]
    grads: list[torch.Tensor]


class CategoricalLossGradients:
    """The losses of a minibatch and their gradients for `net`, from the parameters' values
    at the call. Made by `for_net` where it applies."""

    def __init__(self, net: ActorCritic) -> None:
        assert net._actor_plan is not None and net._critic_plan is not None
        head = net.action_head
        assert isinstance(head, CategoricalHead)
        self.head = head
        self.actor = LinearChain([*net._actor_plan.layers, linear_params(head.logits)])
        self.critic = LinearChain([*net._critic_plan.layers, net._value_params])

    @classmethod
    def for_net(cls, net: ActorCritic, *, ent_coef: float, clip_range_vf: float = 0.0
                ) -> CategoricalLossGradients | None:
        """The gradients for `net` if it and the loss are of the kind this computes: two
        plain MLP encoders (not shared) on float32 vectors on the CPU, a categorical head,
        and neither an entropy term nor value clipping in the loss; else None."""
        actor, critic = net._actor_plan, net._critic_plan
        if (net.recurrent or net.shared or actor is None or critic is None
                or not (actor.float_vectors and critic.float_vectors)
                or not isinstance(net.action_head, CategoricalHead)
                or ent_coef != 0 or clip_range_vf != 0):
            return None
        params = list(net.parameters())
        if any(p.device.type != "cpu" or p.dtype != torch.float32 for p in params):
            return None
        gradients = cls(net)
        covered = {id(p) for chain in (gradients.actor, gradients.critic)
                   for p in chain.parameters()}
        if covered != {id(p) for p in params if p.requires_grad} or len(covered) != len(params):
            return None
        return gradients

    def _forward(self, obs: torch.Tensor, actions: torch.Tensor
                 ) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor, torch.Tensor,
                            torch.Tensor, torch.Tensor]:
        """Both chains' outputs, the logits' logsumexp, the normalized logits, the log
        probabilities of `actions` and the values, as `ActorCriticAgent._evaluate_actions`
        computes them."""
        actor = self.actor.forward_keeping(obs)
        critic = self.critic.forward_keeping(obs)
        logits = actor[-1]
        lse = logits.logsumexp(dim=-1, keepdim=True)
        log_p = logits - lse
        log_prob = log_p.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
        return actor, critic, lse, log_p, log_prob, critic[-1].squeeze(-1)

    def _backward(self, actor: list[torch.Tensor], critic: list[torch.Tensor],
                  log_p: torch.Tensor, actions: torch.Tensor, grad_log_prob: torch.Tensor,
                  value_loss_grad: torch.Tensor, values: torch.Tensor,
                  returns: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The parameters and their gradients from the gradient of the log probabilities
        and of the value loss (``vf_coef``, a 0-d tensor)."""
        # gather's backward, then the subtraction of the logsumexp and its backward.
        grad_log_p = torch.zeros_like(log_p).scatter_add_(
            -1, actions.long().unsqueeze(-1), grad_log_prob.unsqueeze(-1))
        grad_lse = (-grad_log_p).sum(-1, keepdim=True)
        grad_logits = grad_log_p + grad_lse * log_p.exp()
        params, grads = self.actor.backward(actor, grad_logits)
        grad_values = torch.ops.aten.mse_loss_backward(value_loss_grad, values, returns, 1)
        critic_params, critic_grads = self.critic.backward(critic, grad_values.unsqueeze(-1))
        return params + critic_params, grads + critic_grads

    def ppo(self, obs: torch.Tensor, actions: torch.Tensor, advantages: torch.Tensor,
            old_log_probs: torch.Tensor, returns: torch.Tensor, clip: float, vf_coef: float
            ) -> Losses:
        """PPO's clipped surrogate and value loss (`agents.actor_critic.PPO._update`)."""
        with torch.no_grad():
            actor, critic, _, log_p, log_prob, values = self._forward(obs, actions)
            log_ratio = log_prob - old_log_probs
            ratio = log_ratio.exp()
            unclipped = advantages * ratio
            clipped = advantages * ratio.clamp(1 - clip, 1 + clip)
            smaller = unclipped <= clipped
            policy_loss = -torch.where(smaller, unclipped, clipped).mean()
            value_loss = F.mse_loss(values, returns)
            # loss = policy_loss + vf_coef * value_loss, backward from 1.
            grad_terms = _mean_backward(-torch.ones(()), len(ratio))
            grad_unclipped = torch.where(smaller, grad_terms, 0)
            grad_log_prob = grad_unclipped * advantages * ratio
            params, grads = self._backward(actor, critic, log_p, actions, grad_log_prob,
                                           _scaled_one(vf_coef), values, returns)
        return Losses(policy_loss, value_loss, log_p, log_ratio, ratio, params, grads)

    def a2c(self, obs: torch.Tensor, actions: torch.Tensor, advantages: torch.Tensor,
            returns: torch.Tensor, vf_coef: float) -> Losses:
        """A2C's policy-gradient and value loss (`agents.actor_critic.A2C._update`)."""
        with torch.no_grad():
            actor, critic, _, log_p, log_prob, values = self._forward(obs, actions)
            policy_loss = -(advantages * log_prob).mean()
            value_loss = F.mse_loss(values, returns)
            grad_log_prob = _mean_backward(-torch.ones(()), len(log_prob)) * advantages
            params, grads = self._backward(actor, critic, log_p, actions, grad_log_prob,
                                           _scaled_one(vf_coef), values, returns)
        return Losses(policy_loss, value_loss, log_p, None, None, params, grads)


def _mean_backward(grad: torch.Tensor, n: int) -> torch.Tensor:
    """The backward of a mean over `n` elements: the gradient spread and divided by `n`."""
    return grad.expand(n) / n


def _scaled_one(coef: float) -> torch.Tensor:
    """The gradient that ``coef * term`` passes to `term` from 1: ``1 * coef`` in float32."""
    return torch.ones(()) * coef
