"""A toy generative trainer: fits a 2-D Gaussian to synthetic data by gradient descent.

It exercises the generative half of the interface (epochs over a dataset,
an optimizer in the checkpoint, a held-out loss) without a real model.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from toolkit.config import TrainerConfig, check_range, param
from toolkit.data import DATASETS, Dataset, Split, dataset_source
from toolkit.registry import GENERATIVE
from toolkit.trainer import GenerativeTrainer, TrainerContext


@dataclass
class ToyConfig(TrainerConfig):
    lr: float = param(0.05, "learning rate")
    batch_size: int = param(64, "samples per optimizer step")

    def validate(self) -> None:
        check_range(self, "lr", 0, low_open=True)
        check_range(self, "batch_size", 1)


@dataset_source(shape=(2,), size="1,000", origin="generated")
def toy_dataset(data_dir: Path | None) -> Dataset:
    """1,000 points from N((2, -1), 0.5^2), generated, never downloaded."""
    generator = torch.Generator().manual_seed(123)
    points = (torch.randn(1000, 2, generator=generator) * 0.5 + torch.tensor([2.0, -1.0]))
    x = points.numpy()
    return Dataset("toy-points", {"train": Split(x[:800]), "validation": Split(x[800:900]),
                                  "test": Split(x[900:])}, value_range=(-1.0, 4.0))


class ToyGaussian(GenerativeTrainer):
    """Maximum-likelihood Gaussian, one epoch per train_step."""

    Config = ToyConfig
    cfg: ToyConfig
    default_dataset = "toy-points"

    def __init__(self, cfg: ToyConfig, source: Any, ctx: TrainerContext) -> None:
        super().__init__(cfg, source, ctx)
        self.train_data = torch.as_tensor(source.split("train").x)
        self.test_data = torch.as_tensor(source.split("validation").x)
        self.mean = torch.zeros(2, requires_grad=True)
        self.log_std = torch.zeros(2, requires_grad=True)
        self.optimizer = torch.optim.Adam([self.mean, self.log_std], lr=cfg.lr)
        self.generator = torch.Generator().manual_seed(ctx.seed)
        self.epochs = self.steps = 0

    def _nll(self, x: torch.Tensor) -> torch.Tensor:
        dist = torch.distributions.Normal(self.mean, self.log_std.exp())
        return -dist.log_prob(x).sum(dim=1).mean()

    def train_step(self) -> dict[str, float]:
        """One epoch; with a budget in steps, the last call stops where the budget ends."""
        order = torch.randperm(len(self.train_data), generator=self.generator)
        starts = range(0, len(order), self.cfg.batch_size)
        if self.ctx.budget.unit == "steps":
            starts = starts[:self.budget_left()]
        total = 0.0
        for start in starts:
            loss = self._nll(self.train_data[order[start:start + self.cfg.batch_size]])
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            total += loss.item()
            self.steps += 1
        self.epochs += 1
        return {"losses/nll": total / len(starts)}

    def evaluate(self, episodes: int, seed: int) -> dict[str, float]:
        with torch.no_grad():
            return {"eval/loss": self._nll(self.test_data).item()}

    def progress(self) -> dict[str, int]:
        return {"epochs": self.epochs, "steps": self.steps}

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean.detach().clone(), "log_std": self.log_std.detach().clone(),
                "optimizer": self.optimizer.state_dict(), "epochs": self.epochs,
                "steps": self.steps, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.mean.copy_(state["mean"])
            self.log_std.copy_(state["log_std"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epochs, self.steps = state["epochs"], state["steps"]
        self.generator.set_state(state["generator"])


@contextmanager
def registered(name: str, cls: type[GenerativeTrainer]) -> Iterator[None]:
    """`cls` as the generative trainer `name`, with the dataset `toy-points`, for one test."""
    GENERATIVE.add(name, cls)
    DATASETS.add("toy-points", toy_dataset)
    try:
        yield
    finally:
        GENERATIVE.remove(name)
        DATASETS.remove("toy-points")
