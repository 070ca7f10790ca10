"""A2C and PPO: losses by hand, the rollout's bootstrapping, recurrent replay, schedules,
Gaussian actions, the plugin contract. Learning tests are in tests/test_learning.py."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents.action_heads import GaussianHead
from agents.actor_critic import (
    A2C,
    PPO,
    ActorCriticAgent,
    RecurrentA2C,
    RecurrentPPO,
    clipped_surrogate_loss,
    clipped_values,
    normalized,
)
from toolkit.environments import EnvSource
from toolkit.errors import CheckpointError, ConfigError
from toolkit.testing import check_plugin, make_trainer
from toolkit.trainer import Budget

SMALL: dict[str, Any] = {"n_envs": 2, "n_steps": 8, "hidden": [16]}
SMALL_PPO: dict[str, Any] = {**SMALL, "n_epochs": 2, "batch_size": 8}
LSTM: dict[str, Any] = {"lstm_hidden_size": 8}


def _agent(cls: type[ActorCriticAgent], target: str = "cartpole", budget: int = 10**9,
           **overrides: Any) -> ActorCriticAgent:
    base = SMALL_PPO if issubclass(cls, PPO) else SMALL
    agent = make_trainer(cls, target, {**base, **overrides}, budget=Budget("steps", budget))
    assert isinstance(agent, ActorCriticAgent)
    return agent


def test_clipped_surrogate_by_hand() -> None:
    ratio = torch.tensor([0.5, 1.5, 0.5, 1.5, 1.1])
    advantages = torch.tensor([1.0, 1.0, -1.0, -1.0, 2.0])
    # min(r A, clip(r) A) with clip 0.2: r is cut to [0.8, 1.2] only where that is smaller.
    terms = [0.5, 1.2, -0.8, -1.5, 2.2]
    expected = -sum(terms) / len(terms)
    assert clipped_surrogate_loss(ratio, advantages, 0.2).item() == pytest.approx(expected)


def test_clipped_values_and_normalized_advantages() -> None:
    old = torch.tensor([1.0, 1.0, 1.0])
    assert clipped_values(torch.tensor([3.0, 1.1, -2.0]), old, 0.5).tolist() == \
        pytest.approx([1.5, 1.1, 0.5])
    adv = normalized(torch.tensor([1.0, 2.0, 3.0]))
    assert adv.tolist() == pytest.approx([-1.0, 0.0, 1.0], abs=1e-6)
    assert normalized(torch.tensor([5.0])).tolist() == [5.0]


@pytest.mark.parametrize("cls, overrides", [(A2C, {}), (PPO, {}), (RecurrentPPO, LSTM),
                                            (PPO, {"shared_encoder": True})],
                         ids=["a2c", "ppo", "ppo-lstm", "ppo-shared"])
def test_the_update_replays_the_rollout_exactly(cls: type[ActorCriticAgent],
                                                overrides: dict[str, Any]) -> None:
    """Before any update the network must give back the rollout's own log-probabilities and
    values: for a recurrent policy that needs the rollout's initial state and the resets at
    every episode start (CartPole's episodes end often under a random policy)."""
    agent = _agent(cls, n_steps=64, **overrides)
    agent._collect(64)  # the second rollout starts mid-episode, from a carried state
    rollout, returns, _ = agent._collect(64)
    assert returns, "no episode ended: the replay across episode starts is not exercised"
    assert rollout is not None
    n = agent.cfg.n_envs
    everything = torch.arange(64 * n)
    envs, index = (torch.arange(n), None) if agent.net.recurrent else (None, everything)
    batch = agent._batch(rollout, envs, index)
    with torch.no_grad():
        log_probs, _, values = agent._log_probs_entropies_values(batch)
    torch.testing.assert_close(log_probs, batch.old_log_probs)
    torch.testing.assert_close(values, batch.old_values)


def test_a_truncated_step_bootstraps_from_its_final_observation() -> None:
    agent = _agent(PPO, n_envs=2, gamma=0.5, gae_lambda=1.0)
    agent.envs.close()
    source = EnvSource("cartpole", "CartPole-v1", {"max_episode_steps": 3})
    agent.envs = source.make_vector(2)
    agent._start_episodes(0)
    final_obs: list[np.ndarray] = []
    step = agent.envs.step

    def spy(actions: np.ndarray) -> Any:
        result = step(actions)
        if result[4].get("_final_obs") is not None and result[4]["_final_obs"].any():
            final_obs.append(np.stack(result[4]["final_obs"]))
        return result

    agent.envs.step = spy  # type: ignore[method-assign]
    rollout, returns, _ = agent._collect(3)
    # CartPole cannot fall within 3 steps: both episodes are truncated at step 3, and the
    # last step's target is r + gamma * V(final observation), not V(next episode's start).
    assert len(returns) == 2 and len(final_obs) == 1
    assert agent.episode_start.tolist() == [1.0, 1.0]  # the next step starts new episodes
    with torch.no_grad():
        final_values = agent.net.value(agent.net.critic_encoder(torch.as_tensor(final_obs[0])))
        restart_values = agent.net.value(agent.net.critic_encoder(agent.obs))
    expected = 1.0 + 0.5 * final_values
    torch.testing.assert_close(rollout.returns[2], expected)
    assert not torch.allclose(rollout.returns[2], 1.0 + 0.5 * restart_values)
    # Within the episode, with lambda 1, returns chain: R[t] = r + gamma * R[t + 1].
    torch.testing.assert_close(rollout.returns[1], 1.0 + 0.5 * rollout.returns[2])


def test_a_terminated_step_does_not_bootstrap() -> None:
    agent = _agent(A2C, n_envs=1, gae_lambda=1.0)
    rollout, returns, _ = agent._collect(200)
    assert returns  # a random policy drops the pole within 200 steps
    ends = torch.nonzero(rollout.episode_starts[1:, 0]).flatten()  # t + 1 starts an episode
    assert len(ends)
    for t in ends.tolist():
        assert rollout.returns[t, 0].item() == pytest.approx(1.0)  # the last reward alone


def test_the_policy_state_resets_at_episode_starts() -> None:
    agent = _agent(RecurrentPPO, **LSTM)
    policy = agent.policy(deterministic=True)
    obs = np.random.default_rng(0).normal(size=(2, 4)).astype(np.float32)
    policy.reset(2)
    policy.act(obs, np.array([True, True]))
    carried = [s.clone() for s in policy.state[0]]  # type: ignore[attr-defined]
    policy.act(obs, np.array([False, True]))
    fresh = agent.policy(deterministic=True)
    fresh.reset(2)
    fresh.act(obs, np.array([True, True]))
    h_after, h_fresh = policy.state[0][0], fresh.state[0][0]  # type: ignore[attr-defined]
    # Row 1 started again: its state is that of one step from zero; row 0 went on.
    torch.testing.assert_close(h_after[:, 1], h_fresh[:, 1])
    assert not torch.allclose(h_after[:, 0], h_fresh[:, 0])
    assert not torch.allclose(carried[0][:, 0], h_after[:, 0])


def test_gaussian_actions_are_clipped_for_the_env_and_learned_unclipped() -> None:
    agent = _agent(PPO, "Pendulum-v1", log_std_init=2.0)  # std e^2: most samples fall outside
    sent: list[np.ndarray] = []
    step = agent.envs.step

    def spy(actions: np.ndarray) -> Any:
        sent.append(actions)
        return step(actions)

    agent.envs.step = spy  # type: ignore[method-assign]
    rollout, _, _ = agent._collect(8)
    high = agent.envs.single_action_space.high  # type: ignore[attr-defined]
    assert all(np.all(np.abs(a) <= high) for a in sent)
    assert rollout.actions.abs().max().item() > float(high[0])
    # Deterministic: the mean, clipped.
    policy = agent.policy(deterministic=True)
    policy.reset(2)
    obs = agent.obs.numpy()
    with torch.no_grad():
        mean = agent.net.action_head.distribution(agent.net.actor_encoder(agent.obs)).mean
    np.testing.assert_allclose(policy.act(obs, np.ones(2, bool)),
                               np.clip(mean.numpy(), -high, high))


def test_the_gaussian_head_samples_with_its_std_and_sums_log_probs() -> None:
    head = GaussianHead(3, 2, log_std_init=0.5, ortho_init=False)
    features = torch.zeros(20_000, 3)
    with torch.no_grad():
        dist = head.distribution(features)
        samples = head.sample(dist, torch.Generator().manual_seed(0))
        expected = torch.distributions.Independent(dist, 1).log_prob(samples)
        torch.testing.assert_close(head.log_prob(dist, samples), expected)
        torch.testing.assert_close(head.entropy(dist),
                                   torch.distributions.Independent(dist, 1).entropy())
    std = samples.std(dim=0) / np.exp(0.5)
    assert torch.allclose(std, torch.ones(2), atol=0.03)


@pytest.mark.parametrize("cls", [A2C, PPO])
def test_an_update_makes_advantageous_actions_more_likely(cls: type[ActorCriticAgent]) -> None:
    agent = _agent(cls, n_envs=4, n_steps=32, learning_rate=1e-4, normalize_advantage=False)
    rollout, _, _ = agent._collect(32)
    assert rollout is not None
    everything = torch.arange(32 * 4)
    agent._update(rollout, 1.0)
    with torch.no_grad():
        log_probs, _, _ = agent._log_probs_entropies_values(
            agent._batch(rollout, None, everything))
    change = log_probs - rollout.log_probs.flatten()
    assert float((rollout.advantages.flatten() * change).sum()) > 0


@pytest.mark.parametrize("overrides", [{}, {"shared_encoder": True}, {"activation": "relu"}],
                         ids=["separate", "shared", "relu"])
def test_acting_draws_what_torch_draws(overrides: dict[str, Any]) -> None:
    net = _agent(PPO, **overrides).net
    obs = torch.randn(16, 4)
    with torch.no_grad():
        actor, critic, _ = net.features(obs, [], torch.ones(16))
        dist = net.action_head.distribution(actor)
        actions, log_probs, values, _ = net.act(obs, [], torch.ones(16),
                                                torch.Generator().manual_seed(5))
        # The draws of torch.multinomial, and Categorical's log-probabilities.
        expected = torch.multinomial(dist.probs, 1, generator=torch.Generator().manual_seed(5))
        assert torch.equal(actions, expected.squeeze(1))
        torch.testing.assert_close(log_probs, net.action_head.log_prob(dist, actions))
        assert torch.equal(values, net.value(critic))
        log_probs, entropy = net.action_head.log_prob_and_entropy(actor, actions)
        torch.testing.assert_close(entropy, dist.entropy())
        assert torch.equal(net.critic_value(obs, [], torch.ones(16)), net.value(critic))


@pytest.mark.parametrize("target", ["cartpole", "Pendulum-v1"])
def test_the_deterministic_policy_takes_the_distributions_mode(target: str) -> None:
    """Greedy evaluation: the most probable action of the categorical, the Gaussian's mean
    (clipped to the action space), computed without building the distribution."""
    agent = _agent(PPO, target)
    with torch.no_grad():
        for param in agent.net.action_head.parameters():  # far from uniform logits
            param.normal_(0.0, 3.0, generator=torch.Generator().manual_seed(0))
    obs = torch.randn(64, *agent.envs.single_observation_space.shape,
                      generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        actor, _, _ = agent.net.features(obs, [], torch.ones(64))
        dist = agent.net.action_head.distribution(actor)
    if target == "cartpole":
        expected = dist.probs.argmax(dim=1).numpy()
        assert 0 < expected.sum() < 64  # both actions occur
    else:
        space = agent.envs.single_action_space
        expected = np.clip(dist.mean.numpy(), space.low, space.high)
    policy = agent.policy(deterministic=True)
    policy.reset(64)
    np.testing.assert_array_equal(policy.act(obs.numpy(), np.ones(64, bool)), expected)


def test_stochastic_policies_are_seeded() -> None:
    agent = _agent(PPO, "Pendulum-v1")
    obs = agent.obs.numpy()
    runs = []
    for seed in (3, 3, 4):
        policy = agent.policy(deterministic=False)
        policy.reset(2, seed=seed)
        runs.append(policy.act(obs, np.ones(2, bool)))
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


def test_linear_schedules_fall_to_zero_over_the_budget() -> None:
    agent = _agent(PPO, budget=64, lr_schedule="linear", clip_range_schedule="linear",
                   learning_rate=1e-3, clip_range=0.2)
    metrics = agent.train_step()  # 16 of 64 steps done
    assert metrics["charts/learning_rate"] == pytest.approx(1e-3 * 0.75)
    assert metrics["charts/clip_range"] == pytest.approx(0.2 * 0.75)
    constant = _agent(PPO, budget=64, learning_rate=1e-3)
    assert constant.train_step()["charts/learning_rate"] == pytest.approx(1e-3)


def test_rollouts_stop_at_the_budget_and_updates_are_counted() -> None:
    agent = _agent(PPO, budget=40, n_epochs=3, batch_size=5)
    agent.train_step()  # 8 steps x 2 envs: 16 transitions in minibatches of 5 -> 4 per epoch
    assert (agent.steps, agent.updates) == (16, 12)
    agent.train_step()
    agent.train_step()  # 4 steps per env are left: a short rollout of 8 transitions
    assert agent.steps == 40 and agent.budget_left() == 0
    assert agent.updates == 12 + 12 + 3 * 2
    a2c = _agent(A2C, budget=48)
    for _ in range(3):
        a2c.train_step()
    assert (a2c.steps, a2c.updates) == (48, 3)  # one gradient step per rollout


def test_recurrent_minibatches_are_whole_env_sequences() -> None:
    agent = _agent(RecurrentPPO, n_envs=4, n_steps=8, batch_size=16, **LSTM)
    batches = agent._minibatches(8, 4)  # type: ignore[attr-defined]
    assert [index for _, index in batches] == [None, None]
    envs = sorted(int(e) for batch, _ in batches for e in batch)  # type: ignore[union-attr]
    assert envs == [0, 1, 2, 3] and all(len(b) == 2 for b, _ in batches)  # type: ignore[arg-type]


def test_target_kl_stops_the_epochs_early() -> None:
    eager = _agent(PPO, n_epochs=50, learning_rate=0.05, target_kl=1e-4)
    eager.train_step()
    assert eager.updates < 50 * 2


def test_recurrent_agents_need_the_lstm() -> None:
    with pytest.raises(ConfigError, match="ppo-lstm is the recurrent agent"):
        _agent(RecurrentPPO, lstm=False)
    assert _agent(RecurrentA2C, **LSTM).net.recurrent
    assert not _agent(PPO).net.recurrent


def test_incompatible_action_spaces_are_named() -> None:
    image = gym.spaces.Box(0, 1, (2, 2))
    assert PPO.incompatibility(image, gym.spaces.Discrete(2)) is None
    assert PPO.incompatibility(image, gym.spaces.Box(-1, 1, (3,))) is None
    assert "one-dimensional Box" in str(PPO.incompatibility(image, gym.spaces.Box(-1, 1, (2, 2))))
    assert PPO.incompatibility(image, gym.spaces.MultiDiscrete([2, 2])) is not None


def test_a_checkpoint_of_another_state_version_is_refused() -> None:
    agent = _agent(PPO)
    state = agent.state_dict()
    state["version"] = 99
    with pytest.raises(CheckpointError, match="ppo state version 99"):
        agent.load_state_dict(state)


@pytest.mark.parametrize("cls, target, overrides", [
    (A2C, "cartpole", {}),
    (PPO, "cartpole", {"clip_range_vf": 0.2, "lr_schedule": "linear"}),
    (PPO, "Pendulum-v1", {}),
    (RecurrentPPO, "cartpole-masked", LSTM),
    (RecurrentA2C, "cartpole", {**LSTM, "shared_encoder": True}),
    (PPO, "taxi", {}),
    (PPO, "minatar-breakout", {"shared_encoder": True}),
], ids=["a2c", "ppo", "ppo-gaussian", "ppo-lstm", "a2c-lstm-shared", "ppo-one-hot", "ppo-cnn"])
def test_actor_critic_agents_pass_the_plugin_contract(cls: type[ActorCriticAgent], target: str,
                                                      overrides: dict[str, Any]) -> None:
    base = SMALL_PPO if issubclass(cls, PPO) else SMALL
    check_plugin(cls, target, overrides={**base, **overrides}, budget=Budget("steps", 160))
