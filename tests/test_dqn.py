"""DQN: the TD target, truncation, heads, schedules, target updates, the contract, and learning."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from agents.dqn import DQN, QNetwork, td_target
from toolkit import launch
from toolkit.errors import CheckpointError, ConfigError
from toolkit.nets import fast_mlp
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
    # Plain DQN: the target network's max; a terminal transition does not bootstrap.
    assert td_target(rewards, terminated, next_target, None, 0.5).tolist() == [2.5, 1.0, 2.5]
    # Double DQN: the online network picks the action, the target network values it.
    online = torch.tensor([[9.0, 0.0], [0.0, 9.0], [0.0, 9.0]])
    assert td_target(rewards, terminated, next_target, online, 0.5).tolist() == [2.0, 1.0, 1.0]


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
    hard = _dqn(target_update_interval=64, learning_starts=0, train_freq=1, steps_per_call=1)
    for _ in range(63):
        hard.train_step()
    assert not _same(hard.target_net, hard.q_net)
    hard.train_step()
    assert _same(hard.target_net, hard.q_net)

    soft = _dqn(target_update_interval=1, tau=0.25, learning_starts=10**6, steps_per_call=1)
    before = [p.clone() for p in soft.target_net.parameters()]
    with torch.no_grad():
        for p in soft.q_net.parameters():
            p.add_(1.0)
    soft.train_step()
    for old, new, online in zip(before, soft.target_net.parameters(), soft.q_net.parameters(),
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
    """One gradient step as the textbook writes it (and as this agent did before it drew a
    round's batches ahead): sample, target, loss, torch's zero_grad, clipping and step."""
    cfg = agent.cfg
    batch = agent.buffer.sample(cfg.batch_size, agent.rng)
    with torch.no_grad():
        online = agent.q_net(batch.next_obs) if cfg.double_q else None
        target = td_target(batch.rewards, batch.terminated, agent.target_net(batch.next_obs),
                           online, cfg.gamma)
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
def test_a_round_of_gradient_steps_is_the_same_bits_as_single_steps(overrides: dict) -> None:
    # A round draws its batches and target values ahead, a few steps at a time (3 here),
    # and steps through torch's ops directly; the result must not differ in any bit.
    agents = [_dqn(learning_starts=10**6, steps_per_call=300, **overrides) for _ in range(2)]
    for agent in agents:
        agent.train_step()  # fills the buffer, no gradient step
        agent.TARGET_ROWS = 3 * agent.cfg.batch_size
    for _ in range(2):  # the second round uses the state the first one left
        ours = [float(loss) for loss in agents[0]._train_round(7)]
        reference = [_reference_update(agents[1]) for _ in range(7)]
        assert ours == reference
    assert agents[0].updates == 14
    assert _same(agents[0].q_net, agents[1].q_net)
    assert agents[0].rng.bit_generator.state == agents[1].rng.bit_generator.state
    ours_state, reference_state = (a.optimizer.state_dict()["state"] for a in agents)
    for key, value in ours_state.items():
        for name, tensor in value.items():
            assert torch.equal(tensor, reference_state[key][name]), (key, name)


@pytest.mark.parametrize("overrides", [
    {"hidden": [64, 64]},
    {"loss": "mse", "head_bias": False, "activation": "tanh", "hidden": [8, 1, 8]},
    {"dueling": True, "double_q": True},
])
def test_the_gradient_step_is_torchs_step_to_the_bit(overrides: dict) -> None:
    """The agent's gradient step (gradients computed without autograd where the network is
    a plain MLP, then the flat GradientStep) gives the numbers of torch's backward,
    clip_grad_norm_ and fused Adam, to the last bit: over steps that clip and steps that do
    not, a reload of the optimizer's state (after which torch's step runs once more), and
    gradients that someone else has reset."""
    agent = _dqn(learning_starts=10**6, steps_per_call=300, max_grad_norm=1.0, **overrides)
    agent.train_step()  # fills the buffer, no gradient step
    reference = copy.deepcopy(agent.q_net)
    optimizer = torch.optim.Adam(reference.parameters(), lr=agent.cfg.learning_rate, fused=True)
    generator = torch.Generator().manual_seed(0)
    for step in range(8):
        if step == 4:
            agent.load_state_dict(agent.state_dict())  # the optimizer's state is replaced
        if step == 6:
            agent.optimizer.zero_grad()  # the gradients the agent accumulates into are gone
        batch = agent.buffer.sample(agent.cfg.batch_size, agent.rng)
        actions = batch.actions.long().unsqueeze(1)
        scale = 100.0 if step % 2 else 1e-3  # the gradients' norm: above 1, then below
        target = scale * torch.randn(agent.cfg.batch_size, generator=generator)
        # Without autograd from the second step on, but for the one after the reload.
        chain = agent.q_net.chain()
        assert agent.gradient_step.takes_gradients == (step not in (0, 4))
        ours = agent._gradient_step(batch.obs, actions, target.unsqueeze(1), chain)
        q = reference(batch.obs).gather(1, actions).squeeze(1)
        loss = F.smooth_l1_loss(q, target) if agent.cfg.loss == "huber" else F.mse_loss(q, target)
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(reference.parameters(), 1.0)
        optimizer.step()
        assert torch.equal(ours, loss.detach())
        assert _same(agent.q_net, reference)
        for mine, theirs in zip(agent.q_net.parameters(), reference.parameters(), strict=True):
            assert mine.grad is not None and theirs.grad is not None
            assert torch.equal(mine.grad, theirs.grad)  # clipped as torch clips them
    for mine, theirs in zip(agent.optimizer.state_dict()["state"].values(),
                            optimizer.state_dict()["state"].values(), strict=True):
        assert mine.keys() == theirs.keys()
        assert all(torch.equal(mine[key], theirs[key]) for key in mine)


def test_the_fast_forward_passes_are_forwards_bits() -> None:
    for overrides in ({}, {"dueling": True}, {"head_bias": False, "activation": "tanh"}):
        net = _dqn(**overrides).q_net
        obs = torch.randn(7, 4)
        with torch.no_grad():
            expected = net(obs)
            assert torch.equal(net.q_values(obs), expected)
            assert torch.equal(net.q_function()(obs), expected)
        assert (net.chain() is None) == ("dueling" in overrides)


@pytest.mark.parametrize("reuse_outputs", [False, True])
@pytest.mark.parametrize("written", [False, True])
def test_the_chain_s_backward_is_autograd_s_to_the_bit(reuse_outputs: bool,
                                                       written: bool) -> None:
    """`LinearChain.backward` against autograd, on layouts where autograd's backward of
    ``mm`` picks another product: a column-major input (one row, one feature) and a
    transposed weight; with kept outputs (one chain for batches of two sizes, twice each),
    and with the gradients written into given tensors."""
    generator = torch.Generator().manual_seed(0)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator)

    for activation in (torch.relu, torch.tanh):
        w1, b1, w3 = randn(1, 3), randn(1), randn(5, 1)
        w5 = nn.Parameter(randn(5, 2).t())  # not contiguous
        params = [nn.Parameter(t) for t in (w1, b1, w3)] + [w5]
        layers = [{"weight": params[0], "bias": params[1]}, activation,
                  {"weight": params[2], "bias": None}, activation,
                  {"weight": params[3], "bias": None}]
        chain = fast_mlp.LinearChain(layers, reuse_outputs=reuse_outputs)
        for rows in (1, 6, 6, 1):
            x, grad = randn(rows, 3), randn(rows, 2)
            into = {p: torch.full_like(p, float("nan")) for p in params} if written else None
            outputs = chain.forward_keeping(x)
            for p in params:
                p.grad = None
            h = x
            for layer in layers:
                h = F.linear(h, layer["weight"], layer["bias"]) if isinstance(layer, dict) \
                    else layer(h)
            assert torch.equal(outputs[-1], h.detach())
            h.backward(grad)
            ours = dict(zip(*chain.backward(outputs, grad, into), strict=True))
            assert ours.keys() == set(params)
            assert all(torch.equal(ours[p], p.grad) for p in params)
            if into is not None:
                assert all(ours[p] is into[p] for p in params)


def test_kept_outputs_are_reused_and_overwritten() -> None:
    """With reuse_outputs a chain writes each call into the same tensors (the same numbers
    as without), until the batch's size changes."""
    net = _dqn().q_net
    fresh, kept = net.chain(), net.chain(reuse_outputs=True)
    assert fresh is not None and kept is not None
    first, second = torch.randn(5, 4), torch.randn(5, 4)
    with torch.no_grad():
        a = kept(first)
        assert torch.equal(a, fresh(first))
        b = kept(second)
        assert b.data_ptr() == a.data_ptr()  # the first call's result is overwritten
        assert torch.equal(a, fresh(second))
        c = kept(torch.randn(3, 4))
        assert c.shape == (3, 2) and c.data_ptr() != a.data_ptr()


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
    with pytest.raises(CheckpointError, match=r"dqn state version 0.*reads version 1"):
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
