"""RL agents. Importing this package registers them in `toolkit.registry.AGENTS`.

Agents built on torch are registered lazily, by ``"module:Class"``: listing them, and
running a tabular agent, never imports torch.
"""

from agents import qlearning
from toolkit.registry import AGENTS

AGENTS.add_lazy("dqn", "agents.dqn:DQN", description="Deep Q-network: replay buffer, target "
                "network, double DQN and dueling heads as options")

__all__ = ["qlearning"]
