"""DQN: the TD target, truncation, heads, schedules, target updates, the contract, and learning."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from agents.dqn import DQN, QNetwork, td_target
from toolkit import launch
from toolkit.errors import CheckpointError, ConfigError
from toolkit.testing import check_plugin, make_trainer
from toolkit.trainer import Budget

SMALL = {"steps_per_call": 64, "learning_starts": 32, "batch_size": 16, "hidden": [16],
         "train_freq": 4, "target_update_interval": 40}


def _dqn(target: str = "cartpole", budget: int = 10**9, **overrides: object) -> DQN:
    agent = make_trainer(DQN, target, {**SMALL, **overrides}, budget=Budget("steps", budget))
    assert isinstance(agent, DQN)
    return agent


def test_td_target_by_hand() -> None:
    rewards = torch.tensor([1.0, 1.0, 0.5])
    terminated = torch.tensor([0.0, 1.0, 0.0])
    next_target = torch.tensor([[2.0, 3.0], [5.0, 7.0], [4.0, 1.0]])
    discounts = torch.tensor([0.5, 0.5, 0.25])  # the last an n-step transition of 2 rewards
    # Plain DQN: the target network's max; a terminal transition does not bootstrap.
    assert td_target(rewards, terminated, discounts, next_target, None).tolist() == \
        [2.5, 1.0, 1.5]
    # Double DQN: the online network picks the action, the target network values it.
    online = torch.tensor([[9.0, 0.0], [0.0, 9.0], [0.0, 9.0]])
    assert td_target(rewards, terminated, discounts, next_target, online).tolist() == \
        [2.0, 1.0, 0.75]


def test_a_truncated_transition_bootstraps_from_the_final_observation() -> None:
    agent = _dqn(n_envs=2, learning_starts=10**6)
    agent.envs.close()
    source = agent.source.__class__(agent.source.name, agent.source.id, {"max_episode_steps": 4})
    agent.envs = source.make_vector(2)
    agent.obs, _ = agent.envs.reset(seed=0)
    agent.epsilon = 0.0
    for _ in range(4):
        _one_vector_step(agent)
    buffer = agent.buffer
    # CartPole cannot fall within 4 steps: step 4 of both envs is a time-limit truncation.
    assert agent.episodes == 2
    last = slice(6, 8)
    assert buffer.terminated[last].tolist() == [0.0, 0.0]
    # The stored next observation is the episode's final one, not the next episode's first.
    assert not torch.equal(buffer.next_obs[last], torch.as_tensor(agent.obs))
    assert torch.equal(buffer.next_obs[4:6], buffer.obs[6:8])  # inside the episode they chain


def _one_vector_step(agent: DQN) -> None:
    budget = agent.ctx.budget
    agent.ctx = agent.ctx.__class__(agent.ctx.device, agent.ctx.seed,
                                    Budget(budget.unit, agent.steps + agent.cfg.n_envs))
    agent.train_step()


def test_terminated_transitions_are_flagged() -> None:
    agent = _dqn(learning_starts=10**6, exploration_initial_eps=1.0)
    while agent.episodes == 0:
        _one_vector_step(agent)
    n = len(agent.buffer)
    assert agent.buffer.terminated[:n].sum().item() == 1.0  # CartPole falls: terminated
    assert agent.buffer.terminated[n - 1].item() == 1.0


def test_the_dueling_head_is_value_plus_centred_advantages() -> None:
    agent = _dqn(dueling=True)
    net = agent.q_net
    obs = torch.randn(5, 4)
    with torch.no_grad():
        q = net(obs)
        features = net.encoder(obs)
        assert net.value is not None
        value = net.value(features).squeeze(1)
    torch.testing.assert_close(q.mean(dim=1), value)
    assert q.shape == (5, 2)


def test_the_linear_q_network_is_a_table_on_one_hot_states() -> None:
    agent = _dqn("frozenlake", encoder="flat", head_bias=False, init="uniform")
    params = list(agent.q_net.parameters())
    assert [p.shape for p in params] == [torch.Size([4, 16])]
    weight = params[0]
    assert weight.min().item() >= 0.0 and weight.max().item() < 0.01
    with torch.no_grad():
        q = agent.q_net(torch.tensor([3, 7]))
    torch.testing.assert_close(q, weight[:, [3, 7]].T)


def test_linear_epsilon_falls_over_its_fraction_of_the_budget() -> None:
    agent = _dqn(budget=1000, exploration_fraction=0.5, exploration_initial_eps=1.0,
                 exploration_final_eps=0.1, steps_per_call=250, learning_starts=10**6)
    seen = []
    for _ in range(4):
        seen.append(agent.train_step()["charts/epsilon"])
    # Epsilon is set before each step from the steps done: 249/500 of the way after call 1.
    assert seen[0] == pytest.approx(1.0 - 0.9 * 249 / 500)
    assert seen[1] == pytest.approx(1.0 - 0.9 * 499 / 500)
    assert seen[2] == seen[3] == pytest.approx(0.1)


def test_exponential_epsilon_decays_once_per_finished_episode() -> None:
    agent = _dqn(exploration_schedule="exponential", exploration_initial_eps=0.5,
                 exploration_decay=0.9, exploration_final_eps=0.01, learning_starts=10**6)
    agent.train_step()
    assert agent.episodes > 1
    assert agent.epsilon == pytest.approx(max(0.01, 0.5 * 0.9 ** agent.episodes))


def test_hard_target_updates_every_interval_and_polyak_in_between() -> None:
    hard = _dqn(target_update_interval=64, learning_starts=10**6, steps_per_call=1)
    with torch.no_grad():
        for p in hard.q_net.parameters():
            p.add_(1.0)
    for _ in range(63):
        hard.train_step()
    assert not _same(hard.target.net, hard.q_net)
    hard.train_step()
    assert _same(hard.target.net, hard.q_net)

    soft = _dqn(target_update_interval=1, tau=0.25, learning_starts=10**6, steps_per_call=1)
    before = [p.clone() for p in soft.target.net.parameters()]
    with torch.no_grad():
        for p in soft.q_net.parameters():
            p.add_(1.0)
    soft.train_step()
    for old, new, online in zip(before, soft.target.net.parameters(), soft.q_net.parameters(),
                                strict=True):
        torch.testing.assert_close(new, 0.75 * old + 0.25 * online)


def _same(a: QNetwork, b: QNetwork) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))


def test_gradient_steps_and_learning_starts() -> None:
    agent = _dqn(learning_starts=100, train_freq=4, gradient_steps=3, steps_per_call=200)
    agent.train_step()
    # Steps 101..200 at every 4th step: 104, 108, ..., 200 -> 25 rounds of 3.
    assert agent.updates == 25 * 3


def _reference_update(agent: DQN) -> float:
    """One gradient step as the textbook writes it: sample, target, loss, torch's zero_grad,
    backward, clipping and step."""
    cfg = agent.cfg
    batch = agent.buffer.sample(cfg.batch_size, agent.rng)
    with torch.no_grad():
        online = agent.q_net(batch.next_obs) if cfg.double_q else None
        target = td_target(batch.rewards, batch.terminated, batch.discounts,
                           agent.target.net(batch.next_obs), online)
    q = agent.q_net(batch.obs).gather(1, batch.actions.long().unsqueeze(1)).squeeze(1)
    loss = F.smooth_l1_loss(q, target) if cfg.loss == "huber" else F.mse_loss(q, target)
    agent.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.max_grad_norm > 0:
        nn.utils.clip_grad_norm_(agent.q_net.parameters(), cfg.max_grad_norm)
    agent.optimizer.step()
    return float(loss.detach())


@pytest.mark.parametrize("overrides", [
    {},
    {"double_q": True, "dueling": True, "max_grad_norm": 0.5},
    {"loss": "mse", "optimizer": "sgd", "max_grad_norm": 0.0},
])
def test_a_round_of_gradient_steps_is_the_textbook_update(overrides: dict) -> None:
    """A round draws its batches and target values ahead (the targets of a chunk of steps
    in one pass of the target network) and steps through `toolkit.nets.update`: the same
    update as the textbook's step by step, to float32's rounding (two code paths: the bits
    are not promised, see docs/reproducibility.md)."""
    agents = [_dqn(learning_starts=10**6, steps_per_call=300, **overrides) for _ in range(2)]
    for agent in agents:
        agent.train_step()  # fills the buffer, no gradient step
    assert not agents[0].update.compiled  # a short run: eager
    for _ in range(2):  # the second round uses the state the first one left
        ours = [float(row["losses/td_loss"]) for row in agents[0].train_round(7)]
        reference = [_reference_update(agents[1]) for _ in range(7)]
        assert ours == pytest.approx(reference, rel=1e-5, abs=1e-6)
    assert agents[0].updates == 14
    for mine, theirs in zip(agents[0].q_net.parameters(), agents[1].q_net.parameters(),
                            strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-6)
    assert agents[0].rng.bit_generator.state == agents[1].rng.bit_generator.state


def test_n_step_transitions_sum_their_rewards_and_discount_by_gamma_to_the_k() -> None:
    agent = _dqn(n_steps=3, gamma=0.5, learning_starts=10**6, n_envs=2)
    agent.envs.close()
    source = agent.source.__class__(agent.source.name, agent.source.id, {"max_episode_steps": 4})
    agent.envs = source.make_vector(2)
    agent.start_episodes(0)
    for _ in range(4):  # CartPole cannot fall in 4 steps: both envs truncate at step 4
        _one_vector_step(agent)
    buffer, n = agent.buffer, len(agent.buffer)
    # Step 3 completes each env's first 3-step transition; step 4 ends the episodes and
    # flushes the rest: 3, 2 and 1 rewards, all bootstrapping from the final observation.
    assert n == 2 + 3 * 2
    assert buffer.rewards[:n].tolist() == [1.75, 1.75] + [1.75, 1.5, 1.0] * 2
    assert buffer.discounts[:n].tolist() == [0.125, 0.125] + [0.125, 0.25, 0.5] * 2
    assert buffer.terminated[:n].tolist() == [0.0] * n
    for env in range(2):  # an env's flushed transitions all end at its final observation
        finals = buffer.next_obs[2 + 3 * env:5 + 3 * env]
        assert torch.equal(finals[0], finals[1]) and torch.equal(finals[1], finals[2])


def test_the_policy_is_greedy_or_explores() -> None:
    agent = _dqn()
    obs = np.zeros((200, 4), dtype=np.float32)
    starts = np.ones(200, dtype=bool)
    greedy = agent.policy().act(obs, starts)
    assert len(set(greedy.tolist())) == 1
    agent.epsilon = 1.0
    exploring = agent.policy(deterministic=False)
    exploring.reset(200, seed=0)
    assert set(exploring.act(obs, starts).tolist()) == {0, 1}


def test_a_checkpoint_of_another_state_version_is_refused() -> None:
    agent = _dqn()
    state = agent.state_dict()
    state["version"] = 0
    with pytest.raises(CheckpointError, match=r"dqn state version 0.*reads version 2"):
        agent.load_state_dict(state)


def test_a_budget_that_is_not_a_multiple_of_the_envs_is_refused() -> None:
    with pytest.raises(ConfigError, match="multiple of 4; use --steps 1004"):
        launch.prepare("agent", "cartpole", "dqn", assignments=["n_envs=4"],
                       flags={"steps": 1001})


@pytest.mark.parametrize("overrides", [
    {},
    {"n_envs": 3, "steps_per_call": 60, "learning_starts": 30, "double_q": True,
     "dueling": True, "tau": 0.5},
])
def test_dqn_passes_the_plugin_contract(overrides: dict) -> None:
    check_plugin(DQN, "cartpole", overrides={**SMALL, **overrides})


def test_dqn_passes_the_plugin_contract_on_one_hot_states() -> None:
    check_plugin(DQN, "taxi", overrides=SMALL)


def test_the_buffer_goes_to_a_side_file_and_back(tmp_path: Path) -> None:
    agent = _dqn()
    agent.train_step()
    agent.save_extra(tmp_path)
    state = agent.state_dict()
    fresh = _dqn()
    fresh.load_state_dict(state)
    fresh.load_extra(tmp_path)
    n = len(agent.buffer)
    assert len(fresh.buffer) == n > 0
    assert torch.equal(fresh.buffer.obs[:n], agent.buffer.obs[:n])


def test_n_step_returns_with_learning_from_the_first_step() -> None:
    """An n-step transition reaches the buffer n - 1 steps after it began: with
    learning_starts 0 the first rounds find the buffer empty and wait for it."""
    agent = _dqn(n_steps=5, learning_starts=0, train_freq=1, gradient_steps=1,
                 steps_per_call=16)
    agent.train_step()
    assert agent.updates > 0 and len(agent.buffer) > 0

