"""RL agents. Importing this package registers them in `toolkit.registry.AGENTS`."""

from agents import qlearning

__all__ = ["qlearning"]
