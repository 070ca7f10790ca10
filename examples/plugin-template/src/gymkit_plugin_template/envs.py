"""An env preset: a short env name, with its default agent and that agent's settings."""

from __future__ import annotations

from toolkit.environments import ENVS, EnvPreset

CHAIN = EnvPreset(
    name="template-chain",
    id="FrozenLake-v1",
    kwargs={"desc": ["SFFFFFFFFG"], "is_slippery": True},
    description="a slippery chain of 10 cells: a move goes where it should one time in three",
    algo="template-sarsa",  # the default agent for this env
    hyperparams={"template-sarsa": {"steps": 20_000, "eval_every": 2_000}},
    success="terminal_reward",  # an episode that ends with a reward is a success
    action_glyphs=("←", "↓", "→", "↑"),
)

ENVS.add(CHAIN.name, CHAIN, description=CHAIN.description)
