"""Minibatches for generative trainers: the data kept on the device, shuffled by index.

A `torch.utils.data.DataLoader` over a `TensorDataset` collates every batch from single
samples in Python; data that fits on the device needs none of that. `ShuffledBatches` draws
one permutation per epoch with the trainer's own generator and hands out index tensors that
select a whole batch at once. It remembers where it is in an epoch, so a trainer that
stops mid-epoch (a budget in steps) resumes where it stopped.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from toolkit.data.dataset import Split


def to_tensors(split: Split, device: torch.device | str, *,
               scale: str = "unit") -> tuple[torch.Tensor, torch.Tensor | None]:
    """A split's samples (and labels) as tensors on `device`; `scale` ``"unit"`` keeps
    [0, 1], ``"symmetric"`` maps it to [-1, 1] (for a tanh output)."""
    if scale not in ("unit", "symmetric"):
        raise ValueError(f"scale must be 'unit' or 'symmetric', got {scale!r}")
    x = torch.as_tensor(np.ascontiguousarray(split.x), device=device)
    if scale == "symmetric":
        x = x * 2.0 - 1.0
    y = None if split.y is None else torch.as_tensor(split.y, device=device)
    return x, y


def binarized(x: torch.Tensor, how: str, generator: torch.Generator | None = None
              ) -> torch.Tensor:
    """Values in [0, 1] as 0/1 for a Bernoulli likelihood: ``"threshold"`` (above 0.5),
    ``"dynamic"`` (each value a fresh Bernoulli draw of that probability, every time), or
    ``"none"``."""
    if how == "none":
        return x
    if how == "threshold":
        return (x > 0.5).to(x.dtype)
    if how == "dynamic":
        return torch.bernoulli(x, generator=generator)
    raise ValueError(f"binarize must be 'none', 'threshold' or 'dynamic', got {how!r}")


#: The fixed binarization of the evaluation splits draws from this seed (not the run's): every
#: run of every model is measured on the same binary images.
EVAL_BINARIZATION_SEED = 20_140_101


def binarized_for_evaluation(x: torch.Tensor, how: str) -> torch.Tensor:
    """`x` binarized as every evaluation of every model does it: ``"dynamic"`` with one
    fixed draw (`EVAL_BINARIZATION_SEED`, drawn on the CPU so that it is the same on any
    device), ``"threshold"`` or ``"none"``; on the CPU."""
    return binarized(x.cpu(), how, torch.Generator().manual_seed(EVAL_BINARIZATION_SEED))


class ShuffledBatches:
    """Index batches over `n` samples, a fresh permutation each epoch.

    `generator` (a CPU `torch.Generator`, the trainer's) draws the permutations; the index
    tensors live on `device`. The last batch of an epoch is smaller unless `drop_last`."""

    def __init__(self, n: int, batch_size: int, generator: torch.Generator,
                 device: torch.device | str = "cpu", *, drop_last: bool = False) -> None:
        if n < 1:
            raise ValueError("there are no samples to draw batches from")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.n, self.batch_size, self.generator = n, batch_size, generator
        self.device, self.drop_last = torch.device(device), drop_last
        self.epochs = 0  # epochs completed
        self.position = 0  # batches handed out in the current epoch
        self.order: torch.Tensor | None = None  # the current epoch's permutation

    @property
    def batches_per_epoch(self) -> int:
        full, rest = divmod(self.n, self.batch_size)
        return full if self.drop_last and full else full + (rest > 0)

    def batches(self, limit: int | None = None) -> Iterator[torch.Tensor]:
        """The rest of the current epoch's index batches (at most `limit` of them); the
        epoch counts as completed after its last batch."""
        handed = 0
        while self.position < self.batches_per_epoch and (limit is None or handed < limit):
            if self.order is None:
                self.order = torch.randperm(self.n, generator=self.generator).to(self.device)
            start = self.position * self.batch_size
            batch = self.order[start:start + self.batch_size]
            self.position += 1
            handed += 1
            if self.position == self.batches_per_epoch:
                self.epochs += 1
                self.position, self.order = 0, None
            yield batch
            if self.position == 0:
                return

    def state_dict(self) -> dict[str, Any]:
        return {"epochs": self.epochs, "position": self.position,
                "order": None if self.order is None else self.order.cpu()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epochs, self.position = int(state["epochs"]), int(state["position"])
        order = state["order"]
        self.order = None if order is None else order.to(self.device)
