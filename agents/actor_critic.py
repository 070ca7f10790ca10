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

Each update is `toolkit.nets.update`'s: the losses are written once, as the network's
forward pass and torch operations; gradients, clipping and the optimizer's step come from
torch, compiled into one graph per minibatch step for a long feed-forward run (recurrent
networks run eagerly).

Resuming restores the network, the optimizer, the RNGs and the counters; the envs start
fresh episodes (``exact_resume = False``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import gymnasium as gym
import numpy as np
import torch
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
from toolkit.checkpoint import check_state_version
from toolkit.config import TrainerConfig
from toolkit.environments import EnvSource
from toolkit.errors import IncompatibleEnvError
from toolkit.nets.update import Learner, compile_update, resolve_compile
from toolkit.policy import Policy
from toolkit.seeding import memory_left_unfilled, numpy_rng_state, set_numpy_rng_state
from toolkit.trainer import Agent, TrainerContext
from toolkit.vector import finished_episodes

STATE_VERSION = 1
Stats = dict[str, torch.Tensor]


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

    def __post_init__(self) -> None:
        #: The observations and actions of all the steps, ``(T * N, ...)``.
        self.flat_obs = self.obs.flatten(0, 1)
        self.flat_actions = self.actions.flatten(0, 1)

    def columns(self) -> tuple[torch.Tensor, ...]:
        """The per-step numbers a `Batch` takes, (T, N) each, in its field order."""
        return self.advantages, self.log_probs, self.returns, self.values


class Batch(NamedTuple):
    """What one gradient step learns from: steps of a rollout (feed-forward: ``(B, ...)``),
    or whole env sequences (recurrent: ``obs`` ``(T, b, ...)``, the rest flattened)."""

    obs: torch.Tensor
    actions: torch.Tensor
    #: Recurrent: the sequences' episode starts ``(T, b)`` and their initial state.
    starts: torch.Tensor | None
    state: RecurrentState | None
    advantages: torch.Tensor
    old_log_probs: torch.Tensor
    returns: torch.Tensor
    old_values: torch.Tensor


def clipped_surrogate_loss(ratio: torch.Tensor, advantages: torch.Tensor,
                           clip: torch.Tensor | float) -> torch.Tensor:
    """PPO's policy loss: ``-mean(min(r A, clip(r, 1 - clip, 1 + clip) A))``."""
    bound = torch.as_tensor(clip)
    clipped = advantages * torch.clamp(ratio, 1 - bound, 1 + bound)
    return -torch.min(advantages * ratio, clipped).mean()


def approx_kl(ratio: torch.Tensor, log_ratio: torch.Tensor) -> torch.Tensor:
    """The estimate ``mean((r - 1) - log r)`` of KL(old || new) (Schulman's k3), over the
    last dimension."""
    return ((ratio - 1) - log_ratio).mean(dim=-1)


def clip_fraction(ratio: torch.Tensor, clip: torch.Tensor | float) -> torch.Tensor:
    """The fraction of the ratios beyond the clip range, over the last dimension."""
    return ((ratio - 1).abs() > clip).float().mean(dim=-1)


def clipped_values(values: torch.Tensor, old_values: torch.Tensor,
                   clip: torch.Tensor | float) -> torch.Tensor:
    """New value predictions kept within `clip` of the rollout's (PPO's value clipping)."""
    bound = torch.as_tensor(clip)
    return old_values + (values - old_values).clamp(-bound, bound)


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
        with torch.inference_mode():
            starts = torch.as_tensor(episode_start, device=self.device)
            actor, self.state = self.net.actor_step(torch.as_tensor(obs, device=self.device),
                                                    self.state, starts)
            head = self.net.action_head
            actions = (head.mode(actor) if self.deterministic
                       else head.sample(head.distribution(actor), self.generator))
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
        self.envs = source.make_vector(cfg.n_envs, asynchronous=cfg.async_envs)
        obs_space = self.envs.single_observation_space
        self.action_space = self.envs.single_action_space
        problem = self.incompatibility(obs_space, self.action_space)
        if problem is not None:
            self.envs.close()
            raise IncompatibleEnvError(f"{self.algo} {problem}, but {source.id} has actions "
                                       f"{self.action_space}; pick another agent with --algo")
        self.net = ActorCritic(obs_space, self.action_space, cfg).to(self.device)
        params = self.net.parameters()
        if cfg.optimizer == "rmsprop":
            # SB3's A2C: RMSprop with alpha 0.99 and eps 1e-5 (torch's default eps is 1e-8).
            self.optimizer: torch.optim.Optimizer = torch.optim.RMSprop(
                params, lr=cfg.learning_rate, alpha=0.99, eps=1e-5)
        else:
            # The fused kernel (eager updates) updates all parameters in one call, where
            # torch's default on the CPU loops over them in Python.
            self.optimizer = torch.optim.Adam(params, lr=cfg.learning_rate, eps=1e-5,
                                              fused=self.device.type in ("cpu", "cuda"))
        self.learner = Learner({"net": self.net}, self.optimizer, cfg.max_grad_norm)
        rollouts = ctx.budget.amount // (cfg.n_steps * cfg.n_envs)
        compiled = (not self.net.recurrent and resolve_compile(
            ctx.compile, rollouts * self.steps_per_rollout(), self.device))
        self.update = compile_update(self._learn, [self.learner], compiled, self.device)
        #: The batch shape the compiled update was made for: other shapes (the budget's
        #: last, shorter rollout) run eagerly rather than pay for another compilation.
        self._compiled_rows: int | None = None
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(ctx.seed)
        self.rng = np.random.default_rng(ctx.seed)
        self.steps = self.episodes = self.updates = 0
        self._start_episodes(ctx.seed)

    def steps_per_rollout(self) -> int:
        """Gradient steps per rollout."""
        return 1

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

    def _collect(self, n_steps: int) -> tuple[Rollout | None, list[float], list[int]]:
        """A rollout of `n_steps` steps of every env, and the episodes that ended in it; no
        rollout (None) when a stop request cut it short: its steps count, and the partial
        rollout is not learned from."""
        cfg, net, device = self.cfg, self.net, self.device
        n = cfg.n_envs
        # What the envs return is kept in numpy buffers and turned into tensors once for
        # the rollout. Row t of `obs` and `starts` is what step t acts on; row n_steps is
        # where the next rollout starts.
        first = self.obs.cpu().numpy()
        obs = np.empty((n_steps + 1, *first.shape), dtype=first.dtype)
        obs[0] = first
        starts = np.empty((n_steps + 1, n), dtype=np.float32)
        starts[0] = self.episode_start.cpu().numpy()
        rewards = np.empty((n_steps, n), dtype=np.float32)
        terminated = np.empty((n_steps, n), dtype=np.float32)
        next_values = torch.zeros((n_steps, n), device=device)
        actions, log_probs, values = [], [], []
        initial_state = [(h.clone(), c.clone()) for h, c in self.state]
        returns: list[float] = []
        lengths: list[int] = []
        with torch.inference_mode():
            for t in range(n_steps):
                action, log_prob, value, self.state = net.act(self.obs, self.state,
                                                              self.episode_start,
                                                              self.generator)
                actions.append(action)
                log_probs.append(log_prob)
                values.append(value)
                next_obs, reward, term, trunc, infos = self.envs.step(
                    env_actions(action, self.action_space))
                rewards[t] = reward
                terminated[t] = term
                starts[t + 1] = np.logical_or(term, trunc)
                obs[t + 1] = next_obs
                self.obs = (torch.from_numpy(obs[t + 1]) if device.type == "cpu"
                            else torch.as_tensor(obs[t + 1], device=device))
                if net.recurrent:  # a feed-forward network does not read it
                    self.episode_start = torch.as_tensor(starts[t + 1], device=device)
                # V of the next state: the next step's value, but for a truncated episode
                # the value of its final observation, with the state it would have seen.
                if trunc.any():
                    truncated_only = np.flatnonzero(np.logical_and(trunc, np.logical_not(term)))
                    if len(truncated_only):
                        final = torch.as_tensor(np.stack([infos["final_obs"][i]
                                                          for i in truncated_only]),
                                                device=device)
                        rows = torch.as_tensor(truncated_only, device=device)
                        sub_state = [(h[:, rows], c[:, rows]) for h, c in self.state]
                        next_values[t, rows] = net.critic_value(
                            final, sub_state, torch.zeros(len(rows), device=device))
                if "final_info" in infos:
                    ended_returns, ended_lengths = finished_episodes(infos)
                    returns += ended_returns
                    lengths += ended_lengths
                if self.ctx.stop.requested and t + 1 < n_steps:
                    self.episode_start = torch.as_tensor(starts[t + 1], device=device)
                    self.steps += (t + 1) * n
                    self.episodes += len(returns)
                    return None, returns, lengths
            self.episode_start = torch.as_tensor(starts[n_steps], device=device)
            bootstrap = net.critic_value(self.obs, self.state, self.episode_start)
            values_t = torch.stack(values)
            episode_end = torch.as_tensor(starts[1:], device=device)
            following = torch.cat([values_t[1:], bootstrap.unsqueeze(0)])
            # Only a truncated step reads next_values at an episode's end; a terminated one
            # multiplies it by 0.
            next_values = torch.where(episode_end > 0, next_values, following)
            advantages, value_targets = gae(torch.as_tensor(rewards, device=device), values_t,
                                            next_values,
                                            torch.as_tensor(terminated, device=device),
                                            episode_end, cfg.gamma, cfg.gae_lambda)
        self.steps += n_steps * n
        self.episodes += len(returns)
        # Out of inference mode: the update differentiates through nothing of the rollout,
        # but an inference tensor cannot be saved for backward.
        rollout = Rollout(torch.as_tensor(obs[:n_steps], device=device),
                          torch.stack(actions).clone(), torch.stack(log_probs).clone(),
                          values_t.clone(), advantages.clone(), value_targets.clone(),
                          torch.as_tensor(starts[:n_steps], device=device),
                          [(h.clone(), c.clone()) for h, c in initial_state])
        return rollout, returns, lengths

    def train_step(self) -> dict[str, float]:
        n_steps = min(self.cfg.n_steps, self.budget_left() // self.cfg.n_envs)
        with memory_left_unfilled():
            rollout, returns, lengths = self._collect(n_steps)
            fraction_left = 1.0 - self.budget_fraction()
            if self.cfg.lr_schedule == "linear":
                for group in self.optimizer.param_groups:
                    group["lr"] = self.cfg.learning_rate * fraction_left
            metrics = {} if rollout is None else self._update(rollout, fraction_left)
        metrics["charts/learning_rate"] = float(self.optimizer.param_groups[0]["lr"])
        if returns:
            metrics["charts/episodic_return"] = float(np.mean(returns))
            metrics["charts/episodic_length"] = float(np.mean(lengths))
        return metrics

    def _update(self, rollout: Rollout, fraction_left: float) -> dict[str, float]:
        raise NotImplementedError

    # -- the losses -------------------------------------------------------------------

    def _log_probs_entropies_values(self, batch: Batch
                                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Log-probabilities, entropies and values of a batch's actions under the current
        network: its steps (feed-forward), or its whole env sequences (recurrent), replayed
        from the state the rollout started with."""
        net = self.net
        if batch.state is None:
            actor, critic, _ = net.features(batch.obs, [], None)
        else:
            assert batch.starts is not None
            actor, critic = net.sequence_features(batch.obs, batch.state, batch.starts)
        log_probs, entropy = net.action_head.log_prob_and_entropy(actor, batch.actions)
        return log_probs, entropy, net.value(critic)

    def _learn(self, batch: Batch, clip: torch.Tensor) -> tuple[torch.Tensor, Stats]:
        """One optimizer step on the algorithm's loss of `batch` (compiled for a long run)."""
        return self.learner.minimize(self._loss, batch, clip)

    def _loss(self, batch: Batch, clip: torch.Tensor) -> tuple[torch.Tensor, Stats]:
        raise NotImplementedError

    def _step(self, batch: Batch, clip: float = 0.0) -> Stats:
        """`_learn` on `batch`, compiled where its shape is the compiled update's."""
        rows = len(batch.actions)
        if self._compiled_rows is None:
            self._compiled_rows = rows
        clip_tensor = torch.tensor(clip, device=self.device)
        if self.update.compiled and rows != self._compiled_rows:
            _, stats = self.update.fn(batch, clip_tensor)
        else:
            _, stats = self.update(batch, clip_tensor)
        self.updates += 1
        return stats

    def _batch(self, rollout: Rollout, envs: torch.Tensor | None,
               flat_index: torch.Tensor | None) -> Batch:
        """The steps `flat_index` of the flattened rollout (all when None), or the whole
        sequences of the envs `envs` (recurrent)."""
        if self.net.recurrent:
            assert envs is not None
            flat = torch.arange(rollout.actions.shape[0] * rollout.actions.shape[1],
                                device=self.device).view(rollout.actions.shape[:2])
            index = flat[:, envs].flatten()
            return Batch(rollout.obs[:, envs], rollout.flat_actions[index],
                         rollout.episode_starts[:, envs],
                         [(h[:, envs], c[:, envs]) for h, c in rollout.initial_state],
                         *(column.flatten(0, 1)[index] for column in rollout.columns()))
        if flat_index is None:
            return Batch(rollout.flat_obs, rollout.flat_actions, None, None,
                         *(column.flatten(0, 1) for column in rollout.columns()))
        return Batch(rollout.flat_obs[flat_index], rollout.flat_actions[flat_index], None,
                     None, *(column.flatten(0, 1)[flat_index] for column in rollout.columns()))

    def progress(self) -> dict[str, int]:
        return {"steps": self.steps, "episodes": self.episodes}

    def networks(self) -> dict[str, tuple[Any, tuple[Any, ...]]]:
        return {"actor_critic": (self.net, (self.obs[:1],))}

    def summary(self) -> dict[str, Any]:
        return {"update": self.update.mode}

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
        check_state_version(state, self.algo, STATE_VERSION)
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

    def _loss(self, batch: Batch, clip: torch.Tensor) -> tuple[torch.Tensor, Stats]:
        cfg = self.cfg
        log_probs, entropy, values = self._log_probs_entropies_values(batch)
        advantages = normalized(batch.advantages) if cfg.normalize_advantage \
            else batch.advantages
        policy_loss = -(advantages * log_probs).mean()
        value_loss = F.mse_loss(values, batch.returns)
        entropy_mean = entropy.mean()
        loss = policy_loss + cfg.vf_coef * value_loss - cfg.ent_coef * entropy_mean
        return loss, {"losses/policy_loss": policy_loss, "losses/value_loss": value_loss,
                      "losses/entropy": entropy_mean}

    def _update(self, rollout: Rollout, fraction_left: float) -> dict[str, float]:
        envs = torch.arange(self.cfg.n_envs, device=self.device) if self.net.recurrent else None
        stats = self._step(self._batch(rollout, envs, None))
        keys = list(stats)
        return dict(zip(keys, torch.stack([stats[k] for k in keys]).tolist(), strict=True))


class PPO(ActorCriticAgent):
    """Proximal policy optimization with the clipped surrogate objective."""

    Config = PPOConfig
    cfg: PPOConfig
    algo = "ppo"

    def steps_per_rollout(self) -> int:
        cfg = self.cfg
        return cfg.n_epochs * -(-(cfg.n_steps * cfg.n_envs) // cfg.batch_size)

    def _loss(self, batch: Batch, clip: torch.Tensor) -> tuple[torch.Tensor, Stats]:
        cfg = self.cfg
        log_probs, entropy, values = self._log_probs_entropies_values(batch)
        advantages = normalized(batch.advantages) if cfg.normalize_advantage \
            else batch.advantages
        log_ratio = log_probs - batch.old_log_probs
        ratio = log_ratio.exp()
        policy_loss = clipped_surrogate_loss(ratio, advantages, clip)
        if cfg.clip_range_vf > 0:
            values = clipped_values(values, batch.old_values, cfg.clip_range_vf)
        value_loss = F.mse_loss(values, batch.returns)
        entropy_mean = entropy.mean()
        loss = policy_loss + cfg.vf_coef * value_loss - cfg.ent_coef * entropy_mean
        with torch.no_grad():
            stats = {"losses/policy_loss": policy_loss, "losses/value_loss": value_loss,
                     "losses/entropy": entropy_mean,
                     "losses/approx_kl": approx_kl(ratio, log_ratio),
                     "losses/clip_fraction": clip_fraction(ratio, clip)}
        return loss, stats

    def _update(self, rollout: Rollout, fraction_left: float) -> dict[str, float]:
        cfg = self.cfg
        steps, n = rollout.actions.shape[:2]
        clip = cfg.clip_range * (fraction_left if cfg.clip_range_schedule == "linear" else 1.0)
        rows: list[Stats] = []
        stop = False
        for _ in range(cfg.n_epochs):
            for envs, index in self._minibatches(steps, n):
                if self.ctx.stop.requested and rows:
                    stop = True  # the rest of the update is dropped: see docs/reproducibility.md
                    break
                stats = self._step(self._batch(rollout, envs, index), clip)
                rows.append(stats)
                if cfg.target_kl > 0 and float(stats["losses/approx_kl"]) > 1.5 * cfg.target_kl:
                    stop = True
                    break
            if stop:
                break
        keys = list(rows[0])
        table = torch.stack([torch.stack([row[k] for row in rows]) for k in keys])
        metrics = {k: float(np.mean(column))
                   for k, column in zip(keys, table.tolist(), strict=True)}
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
