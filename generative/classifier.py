"""An image classifier: the supervised use of the shared network modules.

An MLP or a small CNN trained with cross-entropy on a labelled image dataset. Its
penultimate layer's features (`features`) are what a "classifier FID" compares samples on.
Evaluations report `eval/accuracy` and `eval/loss` (cross-entropy, nats per image) on the
validation split, the test split at the end, and log the confusion matrix as a heatmap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from generative.image_trainer import ImageTrainer, check_halves_twice
from toolkit.config import TrainerConfig, check_range, check_sizes, param
from toolkit.data import Dataset
from toolkit.errors import ConfigError, GymkitError
from toolkit.images import heatmap
from toolkit.nets.mlp import MLP
from toolkit.trainer import TrainerContext


@dataclass
class ClassifierConfig(TrainerConfig):
    architecture: str = param("mlp", "mlp, or cnn (two 3x3 convolutions with 2x2 max pooling, "
                                     "then a dense layer; image sides divisible by 4)")
    hidden: list[int] = param([256], "hidden layer sizes of the MLP (the CNN's dense layer: "
                                     "the first)")
    channels: list[int] = param([32, 64], "the CNN's two convolutions' channels")
    lr: float = param(1e-3, "Adam learning rate")
    batch_size: int = param(128, "images per optimizer step")

    def validate(self) -> None:
        if self.architecture not in ("mlp", "cnn"):
            raise ConfigError(f"architecture must be mlp or cnn, got {self.architecture!r}")
        check_range(self, "lr", 0, low_open=True)
        check_range(self, "batch_size", 1)
        check_sizes(self, "hidden", allow_empty=False)
        check_sizes(self, "channels", count=2)


class Classifier(nn.Module):
    """Image -> features (the penultimate layer) -> class logits."""

    def __init__(self, shape: tuple[int, ...], classes: int, cfg: ClassifierConfig) -> None:
        super().__init__()
        if cfg.architecture == "mlp":
            self.body: nn.Module = nn.Sequential(nn.Flatten(),
                                                 MLP(math.prod(shape), cfg.hidden, "relu"))
            width = cfg.hidden[-1]
        else:
            check_halves_twice(shape, "the cnn classifier", "use --set architecture=mlp")
            channels, height, image_width = shape
            first, second = cfg.channels
            flat = second * (height // 4) * (image_width // 4)
            width = cfg.hidden[0]
            self.body = nn.Sequential(nn.Conv2d(channels, first, 3, padding=1), nn.ReLU(),
                                      nn.MaxPool2d(2), nn.Conv2d(first, second, 3, padding=1),
                                      nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                                      nn.Linear(flat, width), nn.ReLU())
        self.head = nn.Linear(width, classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class ClassifierTrainer(ImageTrainer):
    """MLP or CNN image classifier; its features serve the classifier FID."""

    Config = ClassifierConfig
    cfg: ClassifierConfig
    model: Classifier

    def __init__(self, cfg: ClassifierConfig, source: Dataset, ctx: TrainerContext) -> None:
        super().__init__(cfg, source, ctx, name="classifier", batch_size=cfg.batch_size)
        if self.train_y is None or source.classes is None:
            raise GymkitError(f"classifier needs labelled images, and {source.name} has no "
                              "labels; pick a labelled --dataset (digits, mnist, ...)")
        self.train_labels: torch.Tensor = self.train_y
        self.classes = source.classes
        self.model = Classifier(source.shape, self.classes, cfg).to(self.device)
        self.optimizer = self.adam(self.model.parameters(), cfg.lr)

    def train_step(self) -> dict[str, float]:
        for index in self.batches():
            logits = self.model(self.train_x[index])
            labels = self.train_labels[index]
            loss = F.cross_entropy(logits, labels)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            accuracy = (logits.argmax(1) == labels).float().mean()
            self.accumulate(torch.stack([loss.detach(), accuracy]))
        means = self.means()
        if means is None:
            return {}
        loss_value, accuracy_value = means
        return {"losses/cross_entropy": loss_value, "charts/train_accuracy": accuracy_value}

    @torch.no_grad()
    def predictions(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and labels of a split."""
        x, y = self.eval_data(split)
        assert y is not None
        return torch.cat([self.model(chunk) for chunk in x.split(1000)]), y

    def evaluate(self, episodes: int, seed: int) -> dict[str, float]:
        logits, y = self.predictions(self.eval_split(seed))
        return {"eval/accuracy": float((logits.argmax(1) == y).float().mean()),
                "eval/loss": float(F.cross_entropy(logits, y))}

    def images(self) -> dict[str, np.ndarray]:
        """The validation split's confusion matrix (rows: true class, columns: predicted)."""
        logits, y = self.predictions("validation")
        pairs = y * self.classes + logits.argmax(1)
        counts = torch.bincount(pairs, minlength=self.classes ** 2).view(self.classes, -1)
        return {"images/confusion": heatmap(counts.cpu().numpy(), cell=16)}

    def networks(self) -> dict[str, tuple[Any, tuple[Any, ...]]]:
        return {"classifier": (self.model, (self.train_x[:1],))}
