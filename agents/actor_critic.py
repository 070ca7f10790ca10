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
from torch.nn import functional as F

from agents.actor_critic_config import (
    A2CConfig,
    ActorCriticConfig,
    PPOConfig,
    RecurrentA2CConfig,
    RecurrentPPOConfig,
)
from agents.actor_critic_gradients import CategoricalLossGradients
from agents.actor_critic_net import ActorCritic, RecurrentState
from agents.gradient_step import GradientStep
from agents.returns import gae
from toolkit.checkpoint import check_state_version
from toolkit.config import TrainerConfig
from toolkit.environments import EnvSource
from toolkit.errors import IncompatibleEnvError
from toolkit.policy import Policy
from toolkit.seeding import memory_left_unfilled, numpy_rng_state, set_numpy_rng_state
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

    def __post_init__(self) -> None:
        #: The observations and actions of all the steps, ``(T * N, ...)``.
        self.flat_obs = self.obs.flatten(0, 1)
        self.flat_actions = self.actions.flatten(0, 1)


def clipped_surrogate_loss(ratio: torch.Tensor, advantages: torch.Tensor,
                           clip: float) -> torch.Tensor:
    """PPO's policy loss: ``-mean(min(r A, clip(r, 1 - clip, 1 + clip) A))``.

    The minimum is chosen outside autograd, which then sees one product instead of two
    products, a clamp and a minimum; the value and the gradient are the same. Where the
    clipped term is the smaller, r is beyond a bound and the term's gradient is 0 (a
    constant here); elsewhere the unclipped term's gradient is A, which the minimum also
    gives when the two are equal (r within the bounds: half through each term, each A)."""
    unclipped = advantages * ratio
    with torch.no_grad():
        clipped = advantages * ratio.clamp(1 - clip, 1 + clip)
        smaller = unclipped <= clipped
    return -torch.where(smaller, unclipped, clipped).mean()


def approx_kl(ratio: torch.Tensor, log_ratio: torch.Tensor) -> torch.Tensor:
    """The estimate ``mean((r - 1) - log r)`` of KL(old || new) (Schulman's k3), over the
    last dimension."""
    return ((ratio - 1) - log_ratio).mean(dim=-1)


def clip_fraction(ratio: torch.Tensor, clip: float) -> torch.Tensor:
    """The fraction of the ratios beyond the clip range, over the last dimension."""
    return ((ratio - 1).abs() > clip).float().mean(dim=-1)


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
            actor, self.state = self.net.actor_step(torch.as_tensor(obs, device=self.device),
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
        self.gradient_step = GradientStep([p for p in self.net.parameters() if p.requires_grad],
                                          self.optimizer, cfg.max_grad_norm)
        #: `_loss_gradients`' (None where they do not apply), once checked.
        self._fast_gradients: CategoricalLossGradients | None = None
        self._fast_checked = False
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
        with torch.no_grad():
            act = net.rollout_actor()
            for t in range(n_steps):
                action, log_prob, value, self.state = act(self.obs, self.state,
                                                          self.episode_start, self.generator)
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
        rollout = Rollout(torch.as_tensor(obs[:n_steps], device=device), torch.stack(actions),
                          torch.stack(log_probs), values_t, advantages, value_targets,
                          torch.as_tensor(starts[:n_steps], device=device), initial_state)
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

    # -- shared by the updates ------------------------------------------------------

    def _evaluate_actions(self, rollout: Rollout, envs: torch.Tensor | None,
                          flat_index: torch.Tensor | None, entropy_grad: bool = True
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Log-probabilities, entropies and values of the rollout's actions under the
        current network: for the steps `flat_index` of the flattened rollout, all of them
        if None (feed-forward), or for the whole sequences of the envs `envs` (recurrent).
        Without `entropy_grad` the entropies are computed outside autograd."""
        actor, critic, actions = self._features(rollout, envs, flat_index)
        log_probs, entropy = self.net.action_head.log_prob_and_entropy(actor, actions,
                                                                       entropy_grad)
        return log_probs, entropy, self.net.head_value(critic)

    def _evaluate_for_entropy_later(self, rollout: Rollout, envs: torch.Tensor | None,
                                    flat_index: torch.Tensor | None
                                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`_evaluate_actions` with the head's entropy input (`ActionHead.entropy_from`)
        in place of the entropies: for a loss without them."""
        actor, critic, actions = self._features(rollout, envs, flat_index)
        log_probs, entropy_input = self.net.action_head.log_prob_and_entropy_input(actor,
                                                                                   actions)
        return log_probs, entropy_input, self.net.head_value(critic)

    def _features(self, rollout: Rollout, envs: torch.Tensor | None,
                  flat_index: torch.Tensor | None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Actor features, critic features and actions of the steps `_evaluate_actions`
        takes."""
        net = self.net
        if net.recurrent:
            assert envs is not None
            state = [(h[:, envs], c[:, envs]) for h, c in rollout.initial_state]
            actor, critic = net.sequence_features(rollout.obs[:, envs], state,
                                                  rollout.episode_starts[:, envs])
            return actor, critic, rollout.actions[:, envs].flatten(0, 1)
        obs, actions = rollout.flat_obs, rollout.flat_actions
        if flat_index is not None:
            obs, actions = obs[flat_index], actions[flat_index]
        actor, critic = net.flat_features(obs)
        return actor, critic, actions

    def _select(self, tensor: torch.Tensor, envs: torch.Tensor | None,
                flat_index: torch.Tensor | None) -> torch.Tensor:
        """`tensor` (T, N) at the same steps as `_evaluate_actions`, flattened."""
        if envs is not None:
            return tensor[:, envs].flatten(0, 1)
        if flat_index is None:
            return tensor.flatten(0, 1)
        return tensor.flatten(0, 1)[flat_index]

    def _gradient_step(self, loss: torch.Tensor) -> None:
        self.gradient_step(loss)
        self.updates += 1

    def _loss_gradients(self) -> CategoricalLossGradients | None:
        """The losses' gradients without autograd, where they apply (see
        `agents.actor_critic_gradients`) and the gradient step takes them. Made once: like
        the gradient step's flat buffers, it holds views of the parameters, which are
        updated in place (by the optimizer, by load_state_dict) and never replaced."""
        if not self.gradient_step.takes_gradients:
            return None
        if not self._fast_checked:
            self._fast_gradients = CategoricalLossGradients.for_net(
                self.net, ent_coef=self.cfg.ent_coef,
                clip_range_vf=getattr(self.cfg, "clip_range_vf", 0.0))
            self._fast_checked = True
        return self._fast_gradients

    def _apply(self, params: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
        self.gradient_step.apply(params, grads)
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
        check_state_version(state, self.algo, STATE_VERSION)
        self.net.load_state_dict(state["net"])

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.load_policy_state_dict(state)
        self.optimizer.load_state_dict(state["optimizer"])
        self.gradient_step.forget()
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
        envs = torch.arange(cfg.n_envs, device=self.device) if self.net.recurrent else None
        advantages = self._select(rollout.advantages, envs, None)
        if cfg.normalize_advantage:
            advantages = normalized(advantages)
        returns = self._select(rollout.returns, envs, None)
        fast = self._loss_gradients()
        if fast is not None:
            losses = fast.a2c(rollout.flat_obs, rollout.flat_actions, advantages, returns,
                              cfg.vf_coef)
            self._apply(losses.params, losses.grads)
            policy_loss, value_loss = losses.policy_loss, losses.value_loss
            entropy_loss = -self.net.action_head.entropy_from(losses.log_p).mean()
        else:
            # With ent_coef 0 the entropy adds nothing to the gradient: it is computed for
            # the metrics only, outside autograd.
            log_probs, entropy, values = self._evaluate_actions(rollout, envs, None,
                                                                entropy_grad=cfg.ent_coef > 0)
            policy_loss = -(advantages * log_probs).mean()
            value_loss = F.mse_loss(values, returns)
            entropy_loss = -entropy.mean()
            loss = policy_loss + cfg.vf_coef * value_loss
            if cfg.ent_coef > 0:
                loss = loss + cfg.ent_coef * entropy_loss
            self._gradient_step(loss)
        policy, value, entropy_value = torch.stack(
            [policy_loss.detach(), value_loss.detach(), -entropy_loss.detach()]).tolist()
        return {"losses/policy_loss": policy, "losses/value_loss": value,
                "losses/entropy": entropy_value}


class PPO(ActorCriticAgent):
    """Proximal policy optimization with the clipped surrogate objective."""

    Config = PPOConfig
    cfg: PPOConfig
    algo = "ppo"

    METRICS = ("losses/policy_loss", "losses/value_loss", "losses/entropy",
               "losses/approx_kl", "losses/clip_fraction")

    def _update(self, rollout: Rollout, fraction_left: float) -> dict[str, float]:
        cfg = self.cfg
        steps, n = rollout.actions.shape[:2]
        clip = cfg.clip_range * (fraction_left if cfg.clip_range_schedule == "linear" else 1.0)
        # The rollout's numbers per step side by side, one row each, so that a minibatch
        # takes them all with one index.
        columns = [rollout.advantages, rollout.log_probs, rollout.returns]
        if cfg.clip_range_vf > 0:
            columns.append(rollout.values)
        table = torch.stack(columns)
        flat_table = table.flatten(1, 2)
        # Each gradient step's losses and ratios, kept as they are (backward has freed what
        # their graphs held): the metrics are computed for all the steps at once and read
        # after the last one, unless target_kl needs the KL of each step.
        policy_losses: list[torch.Tensor] = []
        value_losses: list[torch.Tensor] = []
        entropies: list[torch.Tensor] = []  # with ent_coef 0: the head's entropy inputs
        ratios: list[torch.Tensor] = []
        log_ratios: list[torch.Tensor] = []
        stop = False
        fast = self._loss_gradients()
        for _ in range(cfg.n_epochs):
            for envs, index in self._minibatches(steps, n):
                if self.ctx.stop.requested and policy_losses:
                    stop = True  # the rest of the update is dropped: see docs/reproducibility.md
                    break
                if fast is not None and index is not None:
                    advantages, old_log_probs, returns = flat_table[:3, index].unbind()
                    if cfg.normalize_advantage:
                        advantages = normalized(advantages)
                    losses = fast.ppo(rollout.flat_obs[index], rollout.flat_actions[index],
                                      advantages, old_log_probs, returns, clip, cfg.vf_coef)
                    self._apply(losses.params, losses.grads)
                    assert losses.ratio is not None and losses.log_ratio is not None
                    policy_losses.append(losses.policy_loss)
                    value_losses.append(losses.value_loss)
                    entropies.append(losses.log_p)
                    ratios.append(losses.ratio)
                    log_ratios.append(losses.log_ratio)
                    if cfg.target_kl > 0:
                        stop = float(approx_kl(losses.ratio, losses.log_ratio)) > (
                            1.5 * cfg.target_kl)
                        if stop:
                            break
                    continue
                if cfg.ent_coef > 0:
                    log_probs, entropy, values = self._evaluate_actions(rollout, envs, index)
                else:  # the entropies are for the metrics only: all at once, at the end
                    log_probs, entropy, values = self._evaluate_for_entropy_later(
                        rollout, envs, index)
                rows = (flat_table[:, index] if envs is None
                        else table[:, :, envs].flatten(1, 2))
                advantages, old_log_probs, returns, *old_values = rows.unbind()
                if cfg.normalize_advantage:
                    advantages = normalized(advantages)
                log_ratio = log_probs - old_log_probs
                ratio = log_ratio.exp()
                policy_loss = clipped_surrogate_loss(ratio, advantages, clip)
                if cfg.clip_range_vf > 0:
                    values = clipped_values(values, old_values[0], cfg.clip_range_vf)
                value_loss = F.mse_loss(values, returns)
                # With ent_coef 0 the entropy adds nothing to the gradient (see A2C).
                loss = policy_loss + cfg.vf_coef * value_loss
                if cfg.ent_coef > 0:
                    loss = loss + cfg.ent_coef * -entropy.mean()
                self._gradient_step(loss)
                policy_losses.append(policy_loss)
                value_losses.append(value_loss)
                entropies.append(entropy)
                ratios.append(ratio)
                log_ratios.append(log_ratio)
                if cfg.target_kl > 0:
                    with torch.no_grad():
                        stop = float(approx_kl(ratio, log_ratio)) > 1.5 * cfg.target_kl
                    if stop:
                        break
            if stop:
                break
        with torch.no_grad():
            head = self.net.action_head
            if len({len(r) for r in ratios}) == 1:  # minibatches of one size: all at once
                ratio_rows = torch.stack(ratios)
                stats = [approx_kl(ratio_rows, torch.stack(log_ratios)),
                         clip_fraction(ratio_rows, clip)]
                entropy_rows = torch.stack(entropies)
                entropy_means = (head.entropy_from(entropy_rows) if cfg.ent_coef == 0 else
                                 entropy_rows).mean(dim=-1)
            else:
                stats = [torch.stack([approx_kl(r, lr) for r, lr in zip(ratios, log_ratios,
                                                                        strict=True)]),
                         torch.stack([clip_fraction(r, clip) for r in ratios])]
                entropy_means = torch.stack(
                    [(head.entropy_from(e) if cfg.ent_coef == 0 else e).mean()
                     for e in entropies])
            metric_table = torch.stack([torch.stack(policy_losses), torch.stack(value_losses),
                                        entropy_means, *stats])
        metrics = {key: float(np.mean(column))
                   for key, column in zip(self.METRICS, metric_table.tolist(), strict=True)}
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

