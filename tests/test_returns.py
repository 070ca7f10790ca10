"""Unit tests of agents/returns.py: GAE and n-step returns against hand-computed values.

Every hand case is (T, N) with one column per env; the comments work the numbers out.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agents.returns import gae, n_step_returns


def cols(*envs: list[float]) -> torch.Tensor:
    """A (T, N) float32 tensor from one list per env (the columns)."""
    return torch.tensor(envs, dtype=torch.float32).T.contiguous()


def flags(*envs: list[int]) -> torch.Tensor:
    return torch.tensor(envs, dtype=torch.bool).T.contiguous()


def assert_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-6)


def test_termination_mid_rollout_does_not_bootstrap() -> None:
    # gamma = 0.5, lam = 0.5, so gamma * lam = 0.25.
    # env 0 terminates at t = 1; its final observation's value 10 must be ignored.
    #   delta0 = 1 + 0.5*4 - 2 = 1;  delta1 = 1 + 0 - 4 = -3;  delta2 = 1 + 0.5*6 - 8 = -4
    #   A2 = -4;  A1 = -3 (the episode ends: A2 not carried);  A0 = 1 + 0.25*(-3) = 0.25
    #   returns = A + V = [2.25, 1, 4]
    # env 1 never ends; next_values = [V1, V2, bootstrap 2].
    #   delta = [0 + 0.5 - 1, 2 + 0.5 - 1, 0 + 1 - 1] = [-0.5, 1.5, 0]
    #   A2 = 0;  A1 = 1.5;  A0 = -0.5 + 0.25*1.5 = -0.125;  returns = [0.875, 2.5, 1]
    rewards = cols([1, 1, 1], [0, 2, 0])
    values = cols([2, 4, 8], [1, 1, 1])
    next_values = cols([4, 10, 6], [1, 1, 2])
    terminated = flags([0, 1, 0], [0, 0, 0])
    advantages, returns = gae(rewards, values, next_values, terminated, terminated, 0.5, 0.5)
    assert_close(advantages, cols([0.25, -3, -4], [-0.125, 1.5, 0]))
    assert_close(returns, cols([2.25, 1, 4], [0.875, 2.5, 1]))


def test_truncation_bootstraps_from_final_observation_without_carrying_advantages() -> None:
    # gamma = 0.5, lam = 0.5. env 0: as above, but truncated (not terminated) at t = 1.
    #   delta1 = 1 + 0.5*10 - 4 = 2 (bootstraps from the final obs value 10)
    #   A2 = -4;  A1 = 2 (A2 belongs to the next episode);  A0 = 1 + 0.25*2 = 1.5
    #   returns = [3.5, 6, 4]
    #   (as a termination A1 would be -3; carrying across the boundary, 2 - 1 = 1.)
    # env 1 terminates at the rollout's last step: next_values[2] = 100 is ignored.
    #   delta = [0 + 0.5*2 - 1, 0 + 0.5*3 - 2, 5 - 3] = [0, -0.5, 2]
    #   A2 = 2;  A1 = -0.5 + 0.25*2 = 0;  A0 = 0;  returns = [1, 2, 5]
    rewards = cols([1, 1, 1], [0, 0, 5])
    values = cols([2, 4, 8], [1, 2, 3])
    next_values = cols([4, 10, 6], [2, 3, 100])
    terminated = flags([0, 0, 0], [0, 0, 1])
    episode_end = flags([0, 1, 0], [0, 0, 1])
    advantages, returns = gae(rewards, values, next_values, terminated, episode_end, 0.5, 0.5)
    assert_close(advantages, cols([1.5, 2, -4], [0, 0, 2]))
    assert_close(returns, cols([3.5, 6, 4], [1, 2, 5]))


def test_lambda_zero_is_the_one_step_td_error() -> None:
    # gamma = 0.5, lam = 0: A_t = delta_t, returns = r + gamma * (1 - term) * next_value.
    # env 0: delta = [1 + 0.5*2 - 1, 0 + 0.5*3 - 2, 2 + 0.5*4 - 3] = [1, -0.5, 1]
    #        returns = [2, 1.5, 4]
    # env 1 terminates at t = 1 (next value 7 ignored):
    #        delta = [1 + 1 - 2, 1 + 0 - 2, 1 + 1 - 2] = [0, -1, 0];  returns = [2, 1, 2]
    rewards = cols([1, 0, 2], [1, 1, 1])
    values = cols([1, 2, 3], [2, 2, 2])
    next_values = cols([2, 3, 4], [2, 7, 2])
    terminated = flags([0, 0, 0], [0, 1, 0])
    advantages, returns = gae(rewards, values, next_values, terminated, terminated, 0.5, 0.0)
    assert_close(advantages, cols([1, -0.5, 1], [0, -1, 0]))
    assert_close(returns, cols([2, 1.5, 4], [2, 1, 2]))


# gamma = 0.5, T = 4. env 0 never ends, V = 1 everywhere, bootstrap value 16:
#   Monte-Carlo plus bootstrap: R3 = 8 + 0.5*16 = 16, R2 = 4 + 8 = 12, R1 = 2 + 6 = 8,
#   R0 = 1 + 4 = 5; A = R - 1 = [4, 7, 11, 15].
#   (by deltas: [0.5, 1.5, 3.5, 15]; A2 = 3.5 + 0.5*15 = 11, A1 = 1.5 + 5.5 = 7, A0 = 4.)
# env 1 terminates at t = 1 (final value 50 ignored), then a new episode is bootstrapped
#   with 4 at the end. V = 3: R1 = 2, R0 = 2 + 0.5*2 = 3, R3 = 2 + 0.5*4 = 4,
#   R2 = 2 + 0.5*4 = 4; A = R - 3 = [0, -1, 1, 1].
MC_REWARDS = cols([1, 2, 4, 8], [2, 2, 2, 2])
MC_VALUES = cols([1, 1, 1, 1], [3, 3, 3, 3])
MC_NEXT = cols([1, 1, 1, 16], [3, 50, 3, 4])
MC_TERMINATED = flags([0, 0, 0, 0], [0, 1, 0, 0])
MC_RETURNS = cols([5, 8, 12, 16], [3, 2, 4, 4])


def test_lambda_one_is_monte_carlo_plus_bootstrap() -> None:
    advantages, returns = gae(MC_REWARDS, MC_VALUES, MC_NEXT, MC_TERMINATED, MC_TERMINATED,
                              0.5, 1.0)
    assert_close(advantages, cols([4, 7, 11, 15], [0, -1, 1, 1]))
    assert_close(returns, MC_RETURNS)


def test_n_step_returns_by_hand() -> None:
    assert_close(n_step_returns(MC_REWARDS, MC_NEXT, MC_TERMINATED, MC_TERMINATED, 0.5),
                 MC_RETURNS)
    # gamma = 0.5; env 0 truncated at t = 1 with final value 10, bootstrap 6 at the end:
    #   R2 = 1 + 0.5*6 = 4;  R1 = 1 + 0.5*10 = 6 (not 1 + 0.5*R2);  R0 = 1 + 0.5*6 = 4
    # env 1 terminated at t = 0 (final value 9 ignored): R2 = 2 + 0.5*2 = 3,
    #   R1 = 0 + 0.5*3 = 1.5;  R0 = 3
    rewards = cols([1, 1, 1], [3, 0, 2])
    next_values = cols([0, 10, 6], [9, 0, 2])
    terminated = flags([0, 0, 0], [1, 0, 0])
    episode_end = flags([0, 1, 0], [1, 0, 0])
    assert_close(n_step_returns(rewards, next_values, terminated, episode_end, 0.5),
                 cols([4, 6, 4], [3, 1.5, 3]))


def test_gamma_zero_leaves_only_the_reward() -> None:
    # gamma = 0: delta_t = r_t - V_t and nothing is carried, whatever lam and the flags.
    rewards = cols([1, 3, 5], [2, 4, 6])
    values = cols([0.5, 1, 2], [1, 1, 2])
    next_values = cols([7, 8, 9], [7, 8, 9])
    terminated = flags([0, 1, 0], [0, 0, 0])
    episode_end = flags([0, 1, 0], [1, 0, 0])
    advantages, returns = gae(rewards, values, next_values, terminated, episode_end, 0.0, 0.95)
    assert_close(advantages, cols([0.5, 2, 3], [1, 3, 4]))
    assert_close(returns, rewards)
    assert_close(n_step_returns(rewards, next_values, terminated, episode_end, 0.0), rewards)


def random_rollout(seed: int, consistent: bool = False) -> dict[str, np.ndarray]:
    """Random float64 inputs; with `consistent`, next_values[t] = values[t + 1] within episodes."""
    rng = np.random.default_rng(seed)
    steps, envs = int(rng.integers(1, 9)), int(rng.integers(1, 4))
    values = rng.normal(size=(steps, envs))
    next_values = rng.normal(size=(steps, envs))
    terminated = rng.random((steps, envs)) < 0.2
    episode_end = terminated | (rng.random((steps, envs)) < 0.2)
    if consistent:
        within = ~episode_end[:-1]
        next_values[:-1][within] = values[1:][within]
    return {"rewards": rng.normal(size=(steps, envs)), "values": values,
            "next_values": next_values, "terminated": terminated, "episode_end": episode_end,
            "gamma": rng.choice([0.0, 0.5, 0.9, 0.99, 1.0]),
            "lam": rng.choice([0.0, 0.5, 0.95, 1.0])}


def episode_stop(episode_end: np.ndarray, t: int, n: int) -> int:
    """The last step of the rollout that belongs to step t's episode."""
    k = t
    while k < len(episode_end) - 1 and not episode_end[k, n]:
        k += 1
    return k


def brute_force_advantages(r: dict[str, np.ndarray]) -> np.ndarray:
    """A_t = sum over k from t to the episode's last step of (gamma*lam)^(k-t) * delta_k."""
    gamma, lam = float(r["gamma"]), float(r["lam"])
    deltas = (r["rewards"] + gamma * (1 - r["terminated"]) * r["next_values"] - r["values"])
    advantages = np.zeros_like(deltas)
    steps, envs = deltas.shape
    for n in range(envs):
        for t in range(steps):
            stop = episode_stop(r["episode_end"], t, n)
            advantages[t, n] = sum((gamma * lam) ** (k - t) * deltas[k, n]
                                   for k in range(t, stop + 1))
    return advantages


def brute_force_returns(r: dict[str, np.ndarray]) -> np.ndarray:
    """Discounted rewards to the episode's last step in the rollout, plus its bootstrap."""
    gamma = float(r["gamma"])
    returns = np.zeros_like(r["rewards"])
    steps, envs = returns.shape
    for n in range(envs):
        for t in range(steps):
            stop = episode_stop(r["episode_end"], t, n)
            returns[t, n] = (sum(gamma ** (k - t) * r["rewards"][k, n]
                                 for k in range(t, stop + 1))
                             + gamma ** (stop - t + 1) * (1 - r["terminated"][stop, n])
                             * r["next_values"][stop, n])
    return returns


def tensors(r: dict[str, np.ndarray]
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """rewards, values, next_values, terminated, episode_end as float64/bool tensors."""
    t = {k: torch.from_numpy(np.asarray(r[k])) for k in
         ("rewards", "values", "next_values", "terminated", "episode_end")}
    return t["rewards"], t["values"], t["next_values"], t["terminated"], t["episode_end"]


@pytest.mark.parametrize("seed", range(40))
def test_gae_matches_brute_force_sums_of_discounted_deltas(seed: int) -> None:
    r = random_rollout(seed)
    advantages, returns = gae(*tensors(r), float(r["gamma"]), float(r["lam"]))
    np.testing.assert_allclose(advantages.numpy(), brute_force_advantages(r), atol=1e-10)
    np.testing.assert_allclose(returns.numpy(), brute_force_advantages(r) + r["values"],
                               atol=1e-10)


@pytest.mark.parametrize("seed", range(40))
def test_n_step_returns_equal_gae_with_lambda_one(seed: int) -> None:
    r = random_rollout(seed, consistent=True)
    rewards, values, next_values, terminated, episode_end = tensors(r)
    gamma = float(r["gamma"])
    returns = n_step_returns(rewards, next_values, terminated, episode_end, gamma)
    np.testing.assert_allclose(returns.numpy(), brute_force_returns(r), atol=1e-10)
    _, gae_returns = gae(rewards, values, next_values, terminated, episode_end, gamma, 1.0)
    np.testing.assert_allclose(returns.numpy(), gae_returns.numpy(), atol=1e-10)


def test_results_keep_the_rewards_dtype_and_do_not_modify_inputs() -> None:
    inputs = (MC_REWARDS, MC_VALUES.double(), MC_NEXT, MC_TERMINATED.float(), MC_TERMINATED)
    before = [t.clone() for t in inputs]
    advantages, returns = gae(*inputs, 0.5, 1.0)
    assert advantages.dtype == returns.dtype == torch.float32
    assert advantages.shape == returns.shape == (4, 2)
    for t, b in zip(inputs, before, strict=True):
        assert torch.equal(t, b)


def test_shape_and_range_errors_are_clear() -> None:
    r, v = MC_REWARDS, MC_VALUES
    with pytest.raises(ValueError, match=r"next_values has shape \(3, 2\) but rewards has "
                                         r"\(4, 2\)"):
        gae(r, v, MC_NEXT[:3], MC_TERMINATED, MC_TERMINATED, 0.5, 0.5)
    with pytest.raises(ValueError, match=r"rewards must be a \(T, N\) tensor .* got \(4,\)"):
        gae(r[:, 0], v[:, 0], MC_NEXT[:, 0], MC_TERMINATED[:, 0], MC_TERMINATED[:, 0], 0.5, 0.5)
    with pytest.raises(ValueError, match=r"values has shape \(2, 4\)"):
        gae(r, v.T, MC_NEXT, MC_TERMINATED, MC_TERMINATED, 0.5, 0.5)
    with pytest.raises(ValueError, match=r"episode_end has shape"):
        n_step_returns(r, MC_NEXT, MC_TERMINATED, MC_TERMINATED[:, :1], 0.5)
    with pytest.raises(ValueError, match=r"T = 0"):
        n_step_returns(r[:0], MC_NEXT[:0], MC_TERMINATED[:0], MC_TERMINATED[:0], 0.5)
    with pytest.raises(ValueError, match=r"gamma must be in \[0, 1\], got 1.5"):
        gae(r, v, MC_NEXT, MC_TERMINATED, MC_TERMINATED, 1.5, 0.5)
    with pytest.raises(ValueError, match=r"lam must be in \[0, 1\], got -0.1"):
        gae(r, v, MC_NEXT, MC_TERMINATED, MC_TERMINATED, 0.9, -0.1)
    with pytest.raises(ValueError, match=r"terminated but not marked in episode_end"):
        gae(r, v, MC_NEXT, MC_TERMINATED, torch.zeros_like(MC_TERMINATED), 0.9, 0.9)
    with pytest.raises(ValueError, match=r"floating-point"):
        n_step_returns(r.long(), MC_NEXT, MC_TERMINATED, MC_TERMINATED, 0.5)
