"""What the image models share: the dataset on the device, shuffled batches, counters, state."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from toolkit.checkpoint import check_state_version
from toolkit.config import TrainerConfig
from toolkit.data import Dataset
from toolkit.data.loader import ShuffledBatches, to_tensors
from toolkit.denormals import flush_denormals
from toolkit.errors import GymkitError
from toolkit.images import display_scale
from toolkit.trainer import GenerativeTrainer, TrainerContext


def check_halves_twice(shape: tuple[int, ...], what: str, fix: str) -> None:
    """Raise GymkitError unless images of `shape` ``(C, H, W)`` can be halved twice (sides
    divisible by 4), as the conv networks here halve (or double) them."""
    _, height, width = shape
    if height % 4 or width % 4:
        raise GymkitError(f"{what} halves the image twice, so its sides must be divisible by 4, "
                          f"but this dataset's images are {height}x{width}; {fix}")


class ImageTrainer(GenerativeTrainer):
    """A generative trainer of images ``(C, H, W)`` in [0, 1].

    The training split lives on the device as one tensor; `batches` hands out its minibatches
    in a fresh order each epoch, drawn with the trainer's own generator, and stops where a
    budget in steps ends, or after the current batch when a stop is requested (Ctrl-C): an
    epoch of a large model can take minutes. A train_step adds each batch's metrics with
    `accumulate` and reports `means()`; the sums are part of the state, so that an epoch
    stopped part-way and resumed reports the same means, bit for bit, as one never stopped.
    Evaluation splits are prepared once (`prepare_eval`) and kept.
    Subclasses build `model` and `optimizer`; the state methods here save and restore those
    (`policy_state_dict`: the model), the data order and the counters. A trainer with other
    networks overrides them."""

    #: The version of the state this trainer writes, checked when a checkpoint is read.
    state_version = 1
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer

    def __init__(self, cfg: TrainerConfig, source: Dataset, ctx: TrainerContext, *,
                 name: str, batch_size: int, vectors: bool = False) -> None:
        """`vectors`: the trainer also takes flat samples ``(D,)`` (then the image-only parts,
        `image_scale` and grids, are the subclass's to skip)."""
        super().__init__(cfg, source, ctx)
        if not (source.is_image or (vectors and len(source.shape) == 1)):
            raise GymkitError(f"{name} needs images (C, H, W), but {source.name} holds samples "
                              f"of shape {source.shape}; pick an image --dataset")
        self.name = name
        self.device = torch.device(ctx.device)
        self.dataset = source
        # Batches and the models' noise; weights are initialized from the global RNG, which
        # the launcher seeds.
        self.generator = torch.Generator().manual_seed(ctx.seed)
        self.train_x, self.train_y = to_tensors(source.split("train"), self.device)
        self.shuffled = ShuffledBatches(len(self.train_x), batch_size, self.generator,
                                        self.device)
        self.steps = 0
        self._eval_data: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}
        #: The metrics summed over the batches of the train_step in progress, and their count.
        self._sums: torch.Tensor | None = None
        self._count = 0
        self._cut_short = False

    def adam(self, params: Iterator[torch.nn.Parameter], lr: float) -> torch.optim.Adam:
        """Adam with torch's fused kernel: one call a step, where the default loops over the
        parameters in Python on the CPU (40% of a VAE's training step on MNIST)."""
        return torch.optim.Adam(params, lr=lr, fused=self.device.type in ("cpu", "cuda"))

    @property
    def image_scale(self) -> int:
        """How many times larger to draw an image in a grid (8x8 digits: 7 times)."""
        return display_scale(self.dataset.shape[-1])

    def batches(self) -> Iterator[torch.Tensor]:
        """The index batches of this train_step: the rest of the epoch, or of the budget.

        The loop over them runs with subnormal floats flushed to zero on the CPU
        (`toolkit.denormals`: Adam's moments of always-black pixels' weights become
        subnormal, and made the VAE's epochs 1.5 times longer), until the loop ends."""
        limit = self.budget_left() if self.ctx.budget.unit == "steps" else None
        self._cut_short = False
        with flush_denormals(self.device):
            for index in self.shuffled.batches(limit):
                self.steps += 1
                yield index
                if self.ctx.stop.requested and not self.ends_train_step():
                    self._cut_short = True
                    return

    def accumulate(self, values: torch.Tensor) -> None:
        """Add one batch's metrics (a 1-D tensor) to the train_step's sums."""
        if self._sums is None:
            self._sums = torch.zeros_like(values)
        self._sums += values
        self._count += 1

    def means(self) -> list[float] | None:
        """The accumulated metrics' means over the train_step's batches, and a fresh start;
        None when a stop cut the train_step short: the sums wait, in the state, for the
        rest of the epoch."""
        if self._cut_short or self._sums is None:
            return None
        means = (self._sums / self._count).tolist()
        self._sums, self._count = None, 0
        return means

    def ends_train_step(self) -> bool:
        """In the loop over `batches`: whether the batch just handed out is the train_step's
        last (its epoch's, or the budget's)."""
        return self.shuffled.position == 0 or self.budget_left() == 0

    def epoch_fraction(self) -> float:
        """Epochs done, counting the current one's batches so far."""
        return self.shuffled.epochs + self.shuffled.position / self.shuffled.batches_per_epoch

    def eval_data(self, split: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A split as the model is measured on it (`prepare_eval`), made once."""
        if split not in self._eval_data:
            x, y = to_tensors(self.dataset.split(split), self.device)
            self._eval_data[split] = (self.prepare_eval(x), y)
        return self._eval_data[split]

    def prepare_eval(self, x: torch.Tensor) -> torch.Tensor:
        """An evaluation split's images as the model takes them (binarized, say)."""
        return x

    def progress(self) -> dict[str, int]:
        return {"epochs": self.shuffled.epochs, "steps": self.steps}

    def state_dict(self) -> dict[str, Any]:
        return {"version": self.state_version, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), **self.data_state()}

    def policy_state_dict(self) -> dict[str, Any]:
        return {"version": self.state_version, "model": self.model.state_dict()}

    def load_policy_state_dict(self, state: dict[str, Any]) -> None:
        check_state_version(state, self.name, self.state_version)
        self.model.load_state_dict(state["model"])

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.load_policy_state_dict(state)
        self.optimizer.load_state_dict(state["optimizer"])
        self.load_data_state(state)

    def data_state(self) -> dict[str, Any]:
        """The counters and RNG of the data order, for `state_dict`."""
        return {"steps": self.steps, "batches": self.shuffled.state_dict(),
                "generator": self.generator.get_state(),
                "metric_sums": None if self._sums is None else self._sums.clone(),
                "metric_count": self._count}

    def load_data_state(self, state: dict[str, Any]) -> None:
        self.steps = int(state["steps"])
        self.shuffled.load_state_dict(state["batches"])
        self.generator.set_state(state["generator"])
        sums = state.get("metric_sums")  # absent from checkpoints written before it existed
        self._sums = None if sums is None else sums.to(self.device)
        self._count = int(state.get("metric_count", 0))
