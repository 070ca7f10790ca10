"""A2C and PPO, feed-forward or recurrent, on vectorized envs: one module, one rollout.

A train_step collects a rollout of `n_steps` steps from each of `n_envs` envs, computes
advantages by GAE (`agents.returns.gae`; ``gae_lambda = 1`` gives A2C's n-step returns),
and updates the network:

- A2C (Mnih et al. 2016): one gradient step on the whole rollout,
  ``loss = -mean(A * log pi(a|s)) + vf_coef * mse(V, R) - ent_coef * entropy``.
- PPO (Schulman et al. 2017): `n_epochs` passes over shuffled minibatches of the rollout,
  with the clipped surrogate ``-mean(min(r A, clip(r, 1 - eps, 1 + eps) A))``, r the
  probability ratio to the rollout's policy, and optionally a clipped value loss.

A time-limit truncation is not terminal: the step bootstraps from the value of the
episode's final observation (SAME_STEP autoreset keeps it in ``infos["final_obs"]``).
Continuous actions come from a state-independent diagonal Gaussian, clipped to the action
space's bounds when they are sent to the env. The learning rate and PPO's clip range can
fall linearly to 0 over the budget, as rl-zoo's ``lin_`` schedules do.

With ``lstm`` (the ``a2c-lstm`` and ``ppo-lstm`` agents) the encoders end in an LSTM whose
state is carried from step to step and reset where an episode starts. PPO's minibatches
are then groups of whole env sequences of the rollout, replayed from the state the
rollout started with, so every step sees exactly the history it was acted on.

Resuming restores the network, the optimizer, the RNGs and the counters; the envs start
fresh episodes (``exact_resume = False``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from agents.actor_critic_config import (
    A2CConfig,
    ActorCriticConfig,
    PPOConfig,
    RecurrentA2CConfig,
    RecurrentPPOConfig,
)
from agents.actor_critic_net import ActorCritic, RecurrentState
from agents.returns import gae
from toolkit.config import TrainerConfig
from toolkit.environments import EnvSource
from toolkit.errors import CheckpointError, IncompatibleEnvError
from toolkit.policy import Policy
from toolkit.seeding import numpy_rng_state, set_numpy_rng_state
from toolkit.trainer import Agent, TrainerContext
from toolkit.vector import finished_episodes

STATE_VERSION = 1


@dataclass
class Rollout:
    """One rollout, (T, N, ...) tensors on the agent's device."""

    obs: torch.Tensor
    actions: torch.Tensor
    log_probs: torch.Tensor
    values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    episode_starts: torch.Tensor
    initial_state: RecurrentState


def clipped_surrogate_loss(ratio: torch.Tensor, advantages: torch.Tensor,
                           clip: float) -> torch.Tensor:
    """PPO's policy loss: ``-mean(min(r A, clip(r, 1 - clip, 1 + clip) A))``."""
    return -torch.min(advantages * ratio, advantages * ratio.clamp(1 - clip, 1 + clip)).mean()


def clipped_values(values: torch.Tensor, old_values: torch.Tensor,
                   clip: float) -> torch.Tensor:
    """New value predictions kept within `clip` of the rollout's (PPO's value clipping)."""
    return old_values + (values - old_values).clamp(-clip, clip)


def normalized(advantages: torch.Tensor) -> torch.Tensor:
    """Zero mean and unit std over the minibatch (unchanged for a single element)."""
    if len(advantages) < 2:
        return advantages
    return (advantages - advantages.mean()) / (advantages.std() + 1e-8)


class ActorCriticPolicy(Policy):
    """The network's mode action (deterministic) or a sample; carries the LSTM state."""

    def __init__(self, net: ActorCritic, device: torch.device, action_space: gym.Space,
                 deterministic: bool) -> None:
        self.net, self.device, self.deterministic = net, device, deterministic
        self.action_space = action_space
        self.generator = torch.Generator(device=device)
        self.state: RecurrentState = []

    def reset(self, n_envs: int, seed: int | None = None) -> None:
        self.state = self.net.initial_state(n_envs, self.device)
        if seed is not None:
            self.generator.manual_seed(seed)

    def act(self, obs: np.ndarray, episode_start: np.ndarray) -> np.ndarray:
        if self.net.recurrent and not self.state:
            self.reset(len(obs))
        with torch.no_grad():
            starts = torch.as_tensor(episode_start, device=self.device)
            actor, _, self.state = self.net.features(torch.as_tensor(obs, device=self.device),
                                                     self.state, starts)
            head = self.net.action_head
            dist = head.distribution(actor)
            actions = head.mode(dist) if self.deterministic else head.sample(dist,
                                                                            self.generator)
        return env_actions(actions, self.action_space)


def env_actions(actions: torch.Tensor, space: gym.Space) -> np.ndarray:
    """What the env is sent: continuous actions clipped to the space's bounds."""
    out = actions.cpu().numpy()
    if isinstance(space, gym.spaces.Box):
        return np.clip(out, space.low, space.high)
    return out


class ActorCriticAgent(Agent):
    """What A2C and PPO share: the network, the rollout, advantages, checkpoints."""

    Config: ClassVar[type[TrainerConfig]] = ActorCriticConfig
    cfg: ActorCriticConfig
    source: EnvSource
    budget_units = ("steps",)
    exact_resume = False
    #: The registry name, for messages.
    algo: ClassVar[str] = ""

    @classmethod
    def incompatibility(cls, observation_space: Any, action_space: Any) -> str | None:
        if isinstance(action_space, gym.spaces.Discrete):
            return None
        if isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
            return None
        return "needs Discrete actions or a one-dimensional Box of continuous actions"

    @classmethod
    def budget_multiple(cls, cfg: ActorCriticConfig) -> int:
        return cfg.n_envs

    def __init__(self, cfg: ActorCriticConfig, source: EnvSource, ctx: TrainerContext) -> None:
        super().__init__(cfg, source, ctx)
        self.device = torch.device(ctx.device)
        self.envs = source.make_vector(cfg.n_envs)
        obs_space = self.envs.single_observation_space
        self.action_space = self.envs.single_action_space
        problem = self.incompatibility(obs_space, self.action_space)
        if problem is not None:
            self.envs.close()
            raise IncompatibleEnvError(f"{self.algo} {problem}, but {source.id} has actions "
                                       f"{self.action_space}; pick another agent with --algo")
        self.net = ActorCritic(obs_space, self.action_space, cfg).to(self.device)
        params = self.net.parameters()
        fused = self.device.type in ("cpu", "cuda")
        if cfg.optimizer == "rmsprop":
            # SB3's A2C: RMSprop with alpha 0.99 and eps 1e-5 (torch's default eps is 1e-8).
            self.optimizer: torch.optim.Optimizer = torch.optim.RMSprop(
                params, lr=cfg.learning_rate, alpha=0.99, eps=1e-5)
        else:
            # The fused kernel updates all parameters in one call, where torch's default on
            # the CPU loops over them in Python.
            self.optimizer = torch.optim.Adam(params, lr=cfg.learning_rate, eps=1e-5,
                                              fused=fused)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(ctx.seed)
        self.rng = np.random.default_rng(ctx.seed)
        self.steps = self.episodes = self.updates = 0
        self._start_episodes(ctx.seed)

    def _start_episodes(self, seed: int) -> None:
        self.envs.action_space.seed(seed)
        obs, _ = self.envs.reset(seed=seed)
        self.obs = torch.as_tensor(obs, device=self.device)
        self.episode_start = torch.ones(self.cfg.n_envs, device=self.device)
        self.state = self.net.initial_state(self.cfg.n_envs, self.device)

    # -- acting ---------------------------------------------------------------------

    def policy(self, deterministic: bool = True) -> Policy:
        """The live network (it shares the agent's weights), its mode or a sample."""
        return ActorCriticPolicy(self.net, self.device, self.action_space, deterministic)

    # -- the rollout ----------------------------------------------------------------

    def _collect(self, n_steps: int) -> tuple[Rollout, list[float], list[int]]:
        cfg, net, head = self.cfg, self.net, self.net.action_head
        n = cfg.n_envs
        shape = (n_steps, n)
        obs = torch.empty(shape + tuple(self.obs.shape[1:]), dtype=self.obs.dtype,
                          device=self.device)
        values = torch.empty(shape, device=self.device)
        next_values = torch.empty(shape, device=self.device)
        log_probs = torch.empty(shape, device=self.device)
        rewards = torch.empty(shape, device=self.device)
        terminated = torch.empty(shape, device=self.device)
        episode_end = torch.empty(shape, device=self.device)
        starts = torch.empty(shape, device=self.device)
        actions: list[torch.Tensor] = []
        initial_state = [(h.clone(), c.clone()) for h, c in self.state]
        returns: list[float] = []
        lengths: list[int] = []
        with torch.no_grad():
            for t in range(n_steps):
                actor, critic, self.state = net.features(self.obs, self.state,
                                                         self.episode_start)
                dist = head.distribution(actor)
                action = head.sample(dist, self.generator)
                obs[t] = self.obs
                starts[t] = self.episode_start
                values[t] = net.value(critic)
                log_probs[t] = head.log_prob(dist, action)
                actions.append(action)
                next_obs, reward, term, trunc, infos = self.envs.step(
                    env_actions(action, self.action_space))
                rewards[t] = torch.as_tensor(reward, dtype=torch.float32)
                terminated[t] = torch.as_tensor(term, dtype=torch.float32)
                ended = np.logical_or(term, trunc)
                episode_end[t] = torch.as_tensor(ended, dtype=torch.float32)
                self.obs = torch.as_tensor(next_obs, device=self.device)
                self.episode_start = episode_end[t].clone()
                # V of the next state: the next step's value, but for a truncated episode
                # the value of its final observation, with the state it would have seen.
                truncated_only = np.flatnonzero(np.logical_and(trunc, np.logical_not(term)))
                if len(truncated_only):
                    final = torch.as_tensor(np.stack([infos["final_obs"][i]
                                                      for i in truncated_only]),
                                            device=self.device)
                    rows = torch.as_tensor(truncated_only, device=self.device)
                    sub_state = [(h[:, rows], c[:, rows]) for h, c in self.state]
                    _, final_critic, _ = net.features(final, sub_state,
                                                      torch.zeros(len(rows), device=self.device))
                    final_values = torch.zeros(n, device=self.device)
                    final_values[rows] = net.value(final_critic)
                    next_values[t] = final_values
                else:
                    next_values[t] = 0.0
                ended_returns, ended_lengths = finished_episodes(infos)
                returns += ended_returns
                lengths += ended_lengths
            _, critic, _ = net.features(self.obs, self.state, self.episode_start)
            bootstrap = net.value(critic)
            following = torch.cat([values[1:], bootstrap.unsqueeze(0)])
            # Only a truncated step reads next_values at an episode's end; a terminated one
            # multiplies it by 0.
            next_values = torch.where(episode_end > 0, next_values, following)
            advantages, value_targets = gae(rewards, values, next_values, terminated,
                                            episode_end, cfg.gamma, cfg.gae_lambda)
        self.steps += n_steps * n
        self.episodes += len(returns)
        rollout = Rollout(obs, torch.stack(actions), log_probs, values, advantages,
                          value_targets, starts, initial_state)
        return rollout, returns, lengths

    def train_step(self) -> dict[str, float]:
        n_steps = min(self.cfg.n_steps, self.budget_left() // self.cfg.n_envs)
        rollout, returns, lengths = self._collect(n_steps)
        fraction_left = 1.0 - self.budget_fraction()
        if self.cfg.lr_schedule == "linear":
            for group in self.optimizer.param_groups:
                group["lr"] = self.cfg.learning_rate * fraction_left
        metrics = self._update(rollout, fraction_left)
        metrics["charts/learning_rate"] = float(self.optimizer.param_groups[0]["lr"])
        if returns:
            metrics["charts/episodic_return"] = float(np.mean(returns))
            metrics["charts/episodic_length"] = float(np.mean(lengths))
        return metrics

    def _update(self, rollout: Rollout, fraction_left: float) -> dict[str, float]:
        raise NotImplementedError

    # -- shared by the updates ------------------------------------------------------

    def _evaluate_actions(self, rollout: Rollout, envs: torch.Tensor | None,
                          flat_index: torch.Tensor | None
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Log-probabilities, entropies and values of the rollout's actions under the
        current network: for the steps `flat_index` of the flattened rollout
        (feed-forward), or for the whole sequences of the envs `envs` (recurrent)."""
        net, head = self.net, self.net.action_head
        if net.recurrent:
            assert envs is not None
            state = [(h[:, envs], c[:, envs]) for h, c in rollout.initial_state]
            actor, critic = net.sequence_features(rollout.obs[:, envs], state,
                                                  rollout.episode_starts[:, envs])
            actions = rollout.actions[:, envs].flatten(0, 1)
        else:
            assert flat_index is not None
            obs = rollout.obs.flatten(0, 1)[flat_index]
            starts = rollout.episode_starts.flatten(0, 1)[flat_index]
            actor, critic, _ = net.features(obs, [], starts)
            actions = rollout.actions.flatten(0, 1)[flat_index]
        dist = head.distribution(actor)
        return head.log_prob(dist, actions), head.entropy(dist), net.value(critic)

    def _select(self, tensor: torch.Tensor, envs: torch.Tensor | None,
                flat_index: torch.Tensor | None) -> torch.Tensor:
        """`tensor` (T, N) at the same steps as `_evaluate_actions`, flattened."""
        if envs is not None:
            return tensor[:, envs].flatten(0, 1)
        assert flat_index is not None
        return tensor.flatten(0, 1)[flat_index]

    def _gradient_step(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.max_grad_norm > 0:
            nn.utils.clip_grad_norm_(self.net.parameters(), self.cfg.max_grad_norm)
        self.optimizer.step()
        self.updates += 1

    def progress(self) -> dict[str, int]:
        return {"steps": self.steps, "episodes": self.episodes}

    def networks(self) -> dict[str, tuple[Any, tuple[Any, ...]]]:
        return {"actor_critic": (self.net, (self.obs[:1],))}

    # -- checkpoints ----------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "net": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "steps": self.steps,
            "episodes": self.episodes,
            "updates": self.updates,
            "rng": numpy_rng_state(self.rng),
            "generator": self.generator.get_state(),
        }

    def policy_state_dict(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, "net": self.net.state_dict()}

    def load_policy_state_dict(self, state: dict[str, Any]) -> None:
        version = state.get("version")
        if version != STATE_VERSION:
            raise CheckpointError(f"this checkpoint holds {self.algo} state version {version}, "
                                  f"and this gymkit reads version {STATE_VERSION}; use it with "
                                  "the gymkit that wrote it")
        self.net.load_state_dict(state["net"])

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.load_policy_state_dict(state)
        self.optimizer.load_state_dict(state["optimizer"])
        self.steps, self.episodes = int(state["steps"]), int(state["episodes"])
        self.updates = int(state["updates"])
        set_numpy_rng_state(self.rng, state["rng"])
        self.generator.set_state(state["generator"].cpu())
        # Fresh episodes, seeded from the run's seed and the step: two resumes of one
        # checkpoint play the same episodes.
        self._start_episodes(int(np.random.SeedSequence([self.seed, self.steps])
                                 .generate_state(1)[0]))

    def close(self) -> None:
        self.envs.close()


class A2C(ActorCriticAgent):
    """Advantage actor-critic: one gradient step per rollout (synchronous A3C)."""

    Config = A2CConfig
    algo = "a2c"

    def _update(self, rollout: Rollout, fraction_left: float) -> dict[str, float]:
        cfg = self.cfg
        n = cfg.n_envs
        everything = torch.arange(rollout.actions.shape[0] * n, device=self.device)
        all_envs = torch.arange(n, device=self.device)
        envs, index = (all_envs, None) if self.net.recurrent else (None, everything)
        log_probs, entropy, values = self._evaluate_actions(rollout, envs, index)
        advantages = self._select(rollout.advantages, envs, index)
        if cfg.normalize_advantage:
            advantages = normalized(advantages)
        returns = self._select(rollout.returns, envs, index)
        policy_loss = -(advantages * log_probs).mean()
        value_loss = F.mse_loss(values, returns)
        entropy_loss = -entropy.mean()
        self._gradient_step(policy_loss + cfg.vf_coef * value_loss + cfg.ent_coef * entropy_loss)
        return {"losses/policy_loss": float(policy_loss.detach()),
                "losses/value_loss": float(value_loss.detach()),
                "losses/entropy": float(-entropy_loss.detach())}


class PPO(ActorCriticAgent):
    """Proximal policy optimization with the clipped surrogate objective."""

    Config = PPOConfig
    cfg: PPOConfig
    algo = "ppo"

    def _update(self, rollout: Rollout, fraction_left: float) -> dict[str, float]:
        cfg = self.cfg
        steps, n = rollout.actions.shape[:2]
        clip = cfg.clip_range * (fraction_left if cfg.clip_range_schedule == "linear" else 1.0)
        sums: dict[str, list[float]] = {key: [] for key in (
            "losses/policy_loss", "losses/value_loss", "losses/entropy", "losses/approx_kl",
            "losses/clip_fraction")}
        stop = False
        for _ in range(cfg.n_epochs):
            for envs, index in self._minibatches(steps, n):
                log_probs, entropy, values = self._evaluate_actions(rollout, envs, index)
                advantages = self._select(rollout.advantages, envs, index)
                if cfg.normalize_advantage:
                    advantages = normalized(advantages)
                log_ratio = log_probs - self._select(rollout.log_probs, envs, index)
                ratio = log_ratio.exp()
                policy_loss = clipped_surrogate_loss(ratio, advantages, clip)
                returns = self._select(rollout.returns, envs, index)
                if cfg.clip_range_vf > 0:
                    values = clipped_values(values, self._select(rollout.values, envs, index),
                                            cfg.clip_range_vf)
                value_loss = F.mse_loss(values, returns)
                entropy_loss = -entropy.mean()
                self._gradient_step(policy_loss + cfg.vf_coef * value_loss
                                    + cfg.ent_coef * entropy_loss)
                with torch.no_grad():
                    approx_kl = float(((ratio - 1) - log_ratio).mean())
                    clipped = float(((ratio - 1).abs() > clip).float().mean())
                for key, value in (("losses/policy_loss", float(policy_loss.detach())),
                                   ("losses/value_loss", float(value_loss.detach())),
                                   ("losses/entropy", float(-entropy_loss.detach())),
                                   ("losses/approx_kl", approx_kl),
                                   ("losses/clip_fraction", clipped)):
                    sums[key].append(value)
                if cfg.target_kl > 0 and approx_kl > 1.5 * cfg.target_kl:
                    stop = True
                    break
            if stop:
                break
        metrics = {key: float(np.mean(values)) for key, values in sums.items()}
        metrics["charts/clip_range"] = clip
        return metrics

    def _minibatches(self, steps: int, n: int
                     ) -> list[tuple[torch.Tensor | None, torch.Tensor | None]]:
        """Shuffled minibatches: of steps (feed-forward), or of whole env sequences
        (recurrent), about `batch_size` steps each."""
        if self.net.recurrent:
            per_batch = max(1, self.cfg.batch_size // steps)
            order = torch.as_tensor(self.rng.permutation(n), device=self.device)
            return [(order[i:i + per_batch], None) for i in range(0, n, per_batch)]
        order = torch.as_tensor(self.rng.permutation(steps * n), device=self.device)
        size = self.cfg.batch_size
        return [(None, order[i:i + size]) for i in range(0, steps * n, size)]


class RecurrentA2C(A2C):
    """A2C with an LSTM policy and value function."""

    Config = RecurrentA2CConfig
    algo = "a2c-lstm"


class RecurrentPPO(PPO):
    """PPO with an LSTM policy and value function, trained on whole sequences."""

    Config = RecurrentPPOConfig
    algo = "ppo-lstm"

