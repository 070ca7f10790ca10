"""What tabular agents share: the best achievable score, and drawing a policy on a map."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


def transition_arrays(env: gym.Env) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """From the env's table ``P[s][a] = [(p, s', r, terminated), ...]``: three arrays.

    ``going[s, a, s']``: probability of moving to s' without the episode ending;
    ``reward[s, a]``: expected reward; ``success[s, a]``: probability of ending
    the episode with a positive reward.
    """
    table = env.unwrapped.P  # type: ignore[attr-defined]
    n_states, n_actions = len(table), len(table[0])
    going = np.zeros((n_states, n_actions, n_states))
    reward = np.zeros((n_states, n_actions))
    success = np.zeros((n_states, n_actions))
    for s, row in table.items():
        for a, outcomes in row.items():
            for p, s_next, r, terminated in outcomes:
                reward[s, a] += p * r
                if terminated:
                    success[s, a] += p * (r > 0)
                else:
                    going[s, a, s_next] += p
    return going, reward, success


def finite_horizon_optimum(env: gym.Env, horizon: int, *, success: bool = False) -> float:
    """The best expected undiscounted return (or success probability) within `horizon` steps.

    Value iteration backwards over the steps left, from the env's initial-state
    distribution; it is what an optimal policy scores under the env's time limit.
    """
    going, reward, succeed = transition_arrays(env)
    gain = succeed if success else reward
    value = np.zeros(going.shape[0])
    for _ in range(horizon):
        value = (gain + going @ value).max(axis=1)
    start = np.asarray(env.unwrapped.initial_state_distrib)  # type: ignore[attr-defined]
    return float(start @ value)


def has_transition_table(env: gym.Env) -> bool:
    unwrapped: Any = env.unwrapped
    return hasattr(unwrapped, "P") and hasattr(unwrapped, "initial_state_distrib")


def grid_shape(env: gym.Env) -> tuple[int, int] | None:
    """(rows, cols) when the env's states are the cells of a grid, else None."""
    unwrapped: Any = env.unwrapped
    n_states = env.observation_space.n  # type: ignore[attr-defined]
    for attr in ("desc", "shape"):
        shape = getattr(unwrapped, attr, None)
        shape = getattr(shape, "shape", shape)
        if shape is not None and len(shape) == 2 and shape[0] * shape[1] == n_states:
            return int(shape[0]), int(shape[1])
    return None


def draw_policy(env: gym.Env, q: np.ndarray, glyphs: tuple[str, ...]) -> str | None:
    """The greedy action of each cell as an arrow; holes H, cliff C, goal G."""
    shape = grid_shape(env)
    if shape is None or len(glyphs) != q.shape[1]:
        return None
    unwrapped: Any = env.unwrapped
    desc = getattr(unwrapped, "desc", None)
    cliff = getattr(unwrapped, "_cliff", None)
    lines = []
    for row in range(shape[0]):
        cells = []
        for col in range(shape[1]):
            s = row * shape[1] + col
            letter = desc[row, col].decode() if desc is not None else ""
            if letter in ("H", "G"):
                cells.append(letter)
            elif cliff is not None and cliff[row, col]:
                cells.append("C")
            else:
                cells.append(glyphs[int(np.argmax(q[s]))])
        lines.append(" ".join(cells))
    return "\n".join(lines)
