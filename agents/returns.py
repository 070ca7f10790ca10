"""Advantages and returns over a rollout: pure torch functions on (T, N) tensors.

T is the number of rollout steps, N the number of envs. For step t of env n:

- ``rewards[t]``: the reward of the step;
- ``values[t]``: V(s_t), the value of the observation the action was taken in;
- ``next_values[t]``: V of the TRUE next state of the step. Where the step ended an
  episode, that is the value of its final observation (the agent computes it: with
  ``SAME_STEP`` autoreset the final observation is in ``infos``); elsewhere it equals
  ``values[t + 1]``, and for the last step of the rollout it is the bootstrap value;
- ``terminated[t]``: the episode reached a terminal state; the step does not bootstrap;
- ``episode_end[t]``: terminated or truncated; nothing after it belongs to the episode.

Truncation is not termination: a truncated step still bootstraps from its final
observation's value, but its advantage does not reach back across the boundary.
The functions do not detach: pass values computed under ``torch.no_grad()``.
"""

from __future__ import annotations

import torch

__all__ = ["gae", "n_step_returns"]


def _check(rewards: torch.Tensor, gamma: float, lam: float | None,
           **others: torch.Tensor) -> dict[str, torch.Tensor]:
    """Check shapes and ranges; the tensors in the dtype and device of `rewards`."""
    if not isinstance(rewards, torch.Tensor) or rewards.dim() != 2:
        shape = tuple(rewards.shape) if isinstance(rewards, torch.Tensor) else type(rewards)
        raise ValueError(f"rewards must be a (T, N) tensor (T steps, N envs), got {shape}")
    if rewards.shape[0] == 0:
        raise ValueError("rewards has no steps (T = 0); a rollout needs at least one step")
    if not rewards.is_floating_point():
        raise ValueError(f"rewards must be a floating-point tensor, got {rewards.dtype}")
    for name, tensor in others.items():
        if not isinstance(tensor, torch.Tensor) or tensor.shape != rewards.shape:
            shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor)
            raise ValueError(f"{name} has shape {shape} but rewards has "
                             f"{tuple(rewards.shape)}; all inputs are (T, N)")
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    if lam is not None and not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must be in [0, 1], got {lam}")
    floats = {name: t.to(dtype=rewards.dtype, device=rewards.device) for name, t in others.items()}
    if bool((floats["terminated"] > floats["episode_end"]).any()):
        raise ValueError("a step is terminated but not marked in episode_end; "
                         "episode_end must be terminated | truncated")
    return floats


def gae(rewards: torch.Tensor, values: torch.Tensor, next_values: torch.Tensor,
        terminated: torch.Tensor, episode_end: torch.Tensor, gamma: float,
        lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation (Schulman et al. 2016): ``(advantages, returns)``.

    ``delta[t] = rewards[t] + gamma * (1 - terminated[t]) * next_values[t] - values[t]``
    ``A[t] = delta[t] + gamma * lam * (1 - episode_end[t]) * A[t + 1]``, with A[T] = 0;
    ``returns = advantages + values`` (the value-function targets). `lam` = 0 gives
    one-step TD errors, `lam` = 1 Monte-Carlo returns bootstrapped at the rollout's end.
    """
    t = _check(rewards, gamma, lam, values=values, next_values=next_values,
               terminated=terminated, episode_end=episode_end)
    deltas = rewards + gamma * (1.0 - t["terminated"]) * t["next_values"] - t["values"]
    carry = gamma * lam * (1.0 - t["episode_end"])
    advantages = torch.empty_like(deltas)
    last = torch.zeros_like(deltas[0])
    for step in range(deltas.shape[0] - 1, -1, -1):
        last = deltas[step] + carry[step] * last
        advantages[step] = last
    return advantages, advantages + t["values"]


def n_step_returns(rewards: torch.Tensor, next_values: torch.Tensor, terminated: torch.Tensor,
                   episode_end: torch.Tensor, gamma: float) -> torch.Tensor:
    """A2C's bootstrapped n-step returns over the rollout (the value-function targets).

    ``R[t] = rewards[t] + gamma * R[t + 1]`` within an episode; at an episode's end
    ``R[t] = rewards[t] + gamma * (1 - terminated[t]) * next_values[t]``, and at the last
    step of the rollout ``R[T-1] = rewards[T-1] + gamma * (1 - terminated) * next_values``.
    Only those `next_values` are read (elsewhere they equal ``values[t + 1]``). This is
    ``gae(..., lam=1)[1]``; the advantages are ``returns - values``.
    """
    t = _check(rewards, gamma, None, next_values=next_values, terminated=terminated,
               episode_end=episode_end)
    bootstrap = rewards + gamma * (1.0 - t["terminated"]) * t["next_values"]
    ended = t["episode_end"]
    returns = torch.empty_like(rewards)
    last = bootstrap[-1]
    returns[-1] = last
    for step in range(rewards.shape[0] - 2, -1, -1):
        within = rewards[step] + gamma * last
        last = torch.where(ended[step] > 0, bootstrap[step], within)
        returns[step] = last
    return returns
