"""DQN: the TD target, truncation, heads, schedules, target updates, the contract, and learning."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from agents.dqn import DQN, AdamStep, QNetwork, clip_grad_norm, flush_denormals, td_target
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


def test_clip_grad_norm_is_torch_s_to_the_bit() -> None:
    generator = torch.Generator().manual_seed(0)
    for scale in (1e-3, 0.3, 1.0, 3.0, 1e3):
        grads = [torch.randn(shape, generator=generator) * scale
                 for shape in ((16, 4), (16,), (2, 16), (2,))]
        params = [nn.Parameter(torch.zeros_like(g)) for g in grads]
        for p, g in zip(params, grads, strict=True):
            p.grad = g.clone()
        expected = nn.utils.clip_grad_norm_(params, 1.0)
        total = clip_grad_norm(grads, 1.0)
        assert torch.equal(total, expected)
        for p, g in zip(params, grads, strict=True):
            assert torch.equal(g, p.grad)


def test_adam_step_is_torch_s_step_and_falls_back_when_it_must() -> None:
    def model_and_adam(**kwargs: object) -> tuple[nn.Module, torch.optim.Optimizer]:
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2))
        return net, torch.optim.Adam(net.parameters(), lr=1e-2, **kwargs)  # type: ignore

    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(1))
    (ours, ours_adam), (torchs, torch_adam) = model_and_adam(fused=True), model_and_adam(
        fused=True)
    step = AdamStep(ours_adam, list(ours.parameters()))
    assert step.usable
    for _ in range(4):
        for net, opt in ((ours, ours_adam), (torchs, torch_adam)):
            opt.zero_grad(set_to_none=True)
            net(x).square().mean().backward()
        step()
        torch_adam.step()
    assert _same(ours, torchs)  # type: ignore[arg-type]
    assert str(ours_adam.state_dict()) == str(torch_adam.state_dict())
    # After a load the state tensors are new ones: reset() makes it look them up again.
    ours_adam.load_state_dict(copy.deepcopy(torch_adam.state_dict()))
    step.reset()
    for net, opt in ((ours, ours_adam), (torchs, torch_adam)):
        opt.zero_grad(set_to_none=True)
        net(x).square().mean().backward()
    step()
    torch_adam.step()
    assert _same(ours, torchs)  # type: ignore[arg-type]
    # Not a fused Adam, or amsgrad: plain optimizer.step().
    assert not AdamStep(model_and_adam()[1], []).usable
    net, amsgrad = model_and_adam(fused=True, amsgrad=True)
    assert not AdamStep(amsgrad, list(net.parameters())).usable


def test_flush_denormals_flushes_inside_and_restores_outside() -> None:
    def subnormal() -> float:
        return float(torch.full((1,), 1e-38).mul_(1e-3).item())

    assert subnormal() != 0.0
    with flush_denormals(torch.device("cpu")):
        assert subnormal() == 0.0
    assert subnormal() != 0.0
    torch.set_flush_denormal(True)
    try:  # already on: left on
        with flush_denormals(torch.device("cpu")):
            assert subnormal() == 0.0
        assert subnormal() == 0.0
    finally:
        torch.set_flush_denormal(False)


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
