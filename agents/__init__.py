"""RL agents. Importing this package registers them in `toolkit.registry.AGENTS`.

Agents built on torch are registered lazily, by ``"module:Class"``: listing them, and
running a tabular agent, never imports torch.
"""

from agents import qlearning
from toolkit.registry import AGENTS

AGENTS.add_lazy("dqn", "agents.dqn:DQN", description="Deep Q-network: replay buffer, target "
                "network, double DQN and dueling heads as options")

AGENTS.add_lazy("a2c", "agents.actor_critic:A2C", description="Advantage actor-critic: "
                "n-step returns or GAE, discrete or Gaussian actions")
AGENTS.add_lazy("ppo", "agents.actor_critic:PPO", description="Proximal policy optimization: "
                "clipped surrogate, GAE, minibatch epochs, discrete or Gaussian actions")
AGENTS.add_lazy("a2c-lstm", "agents.actor_critic:RecurrentA2C",
                description="A2C with an LSTM policy, for partially observed envs")
AGENTS.add_lazy("ppo-lstm", "agents.actor_critic:RecurrentPPO",
                description="PPO with an LSTM policy trained on whole sequences, for "
                "partially observed envs")

for _algo in ("dqn", "a2c", "ppo"):
    AGENTS.add_lazy(f"sb3-{_algo}", f"agents.sb3:SB3{_algo.upper()}",
                    description=f"Stable-Baselines3's {_algo.upper()}, run by gymkit")

__all__ = ["qlearning"]
