"""RL agents. Importing this package registers them in `toolkit.registry.AGENTS`.

Agents built on torch are registered lazily, by ``"module:Class"``: listing them, and
running a tabular agent, never imports torch.
"""

from agents import qlearning
from toolkit.registry import AGENTS

AGENTS.add_lazy("dqn", "agents.dqn:DQN", description="Deep Q-network: replay buffer, target "
                "network, double DQN and dueling heads as options")

for _algo in ("dqn", "a2c", "ppo"):
    AGENTS.add_lazy(f"sb3-{_algo}", f"agents.sb3:SB3{_algo.upper()}",
                    description=f"Stable-Baselines3's {_algo.upper()}, run by gymkit")

__all__ = ["qlearning"]
