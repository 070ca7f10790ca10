"""The one interface every plugin implements; the runner drives it.

A plugin owns its models, optimizers, environments or data, and its RNGs. It
does *one unit of progress* per `train_step` (a rollout and its update for an
agent, an epoch or a batch for a generative model) and reports its counters in
`progress`. The runner owns everything around it: the loop, the budget,
logging, evaluation, checkpoints and signals. docs/architecture.md shows how
each planned algorithm maps onto these methods.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
import torch

from toolkit.config import TrainerConfig


class Trainer(ABC):
    """Base class of every gymkit plugin."""

    Config: ClassVar[type[TrainerConfig]] = TrainerConfig
    kind: ClassVar[str] = ""
    #: Counter that `eval_every` and `checkpoint_every` count in.
    progress_unit: ClassVar[str] = "steps"
    #: Counters that a training budget may be given in (`--steps`, `--episodes`, `--epochs`).
    budget_units: ClassVar[tuple[str, ...]] = ("steps",)
    default_budget: ClassVar[tuple[str, int]] = ("steps", 100_000)
    #: Key of `evaluate()`'s result that picks `best.pt`, and whether higher is better.
    eval_metric: ClassVar[str] = "eval/mean_return"
    eval_higher_is_better: ClassVar[bool] = True

    def __init__(self, cfg: TrainerConfig, source: Any, device: torch.device, seed: int) -> None:
        if not isinstance(cfg, self.Config):
            raise TypeError(f"{type(self).__name__} expects a {self.Config.__name__}")
        self.cfg = cfg
        self.source = source
        self.device = device
        self.seed = seed

    @abstractmethod
    def train_step(self) -> dict[str, float]:
        """Do one unit of progress; return scalars tagged ``charts/``, ``losses/``, ..."""

    @abstractmethod
    def evaluate(self, episodes: int | None = None) -> dict[str, float]:
        """Measure the current model; scalars tagged ``eval/``.

        `episodes` sizes an agent's evaluation; trainers that evaluate on a fixed
        held-out set ignore it.
        """

    @abstractmethod
    def progress(self) -> dict[str, int]:
        """Monotonic counters, e.g. ``{"steps": 12_000, "episodes": 410}``."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume bit for bit: tensors, numbers, strings, lists, dicts."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""

    def images(self) -> dict[str, np.ndarray]:
        """HWC uint8 images to log at each evaluation (value maps, sample grids)."""
        return {}

    def summary(self) -> dict[str, Any]:
        """Extra JSON-able facts for summary.json and the final table."""
        return {}

    def panels(self) -> list[tuple[str, str]]:
        """(title, text) blocks to show after training, e.g. a policy drawn on a map."""
        return []

    def close(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Release environments, files and workers."""


class Agent(Trainer):
    """An RL agent: acts in a gymnasium environment given by an `EnvSource`."""

    kind: ClassVar[str] = "agent"
    budget_units: ClassVar[tuple[str, ...]] = ("steps", "episodes")

    @abstractmethod
    def predict(self, observation: Any) -> Any:
        """The greedy action for one observation (used by evaluation and `gymkit eval`)."""


class GenerativeTrainer(Trainer):
    """A generative model trained on a dataset."""

    kind: ClassVar[str] = "generative"
    progress_unit: ClassVar[str] = "epochs"
    budget_units: ClassVar[tuple[str, ...]] = ("epochs", "steps")
    default_budget: ClassVar[tuple[str, int]] = ("epochs", 10)
    eval_metric: ClassVar[str] = "eval/loss"
    eval_higher_is_better: ClassVar[bool] = False
    default_dataset: ClassVar[str] = "digits"
