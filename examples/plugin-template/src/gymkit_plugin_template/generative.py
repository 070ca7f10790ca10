"""A mixture of Gaussians with diagonal covariances, fit by gradient descent.

    log p(x) = logsumexp_k [ log w_k + sum_d log N(x_d; mu_kd, sigma_kd) ]

The weights (as logits), means and log standard deviations are the parameters
of one torch module, trained with Adam on minibatches of the negative
log-likelihood; the means start at random training points. One train_step is
one epoch; eval/loss is the held-out negative log-likelihood in nats per point.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from toolkit.config import TrainerConfig, check_range, param
from toolkit.data import Dataset
from toolkit.errors import GymkitError
from toolkit.images import heatmap
from toolkit.registry import GENERATIVE
from toolkit.trainer import GenerativeTrainer, TrainerContext

NAME = "template-mixture"


@dataclass
class MixtureConfig(TrainerConfig):
    components: int = param(3, "number of Gaussian components")
    lr: float = param(0.05, "Adam learning rate")
    batch_size: int = param(128, "points per optimizer step")

    def validate(self) -> None:
        check_range(self, "components", 1)
        check_range(self, "lr", 0, low_open=True)
        check_range(self, "batch_size", 1)


class Mixture(torch.nn.Module):
    def __init__(self, means: torch.Tensor) -> None:
        super().__init__()
        self.logits = torch.nn.Parameter(torch.zeros(len(means)))
        self.means = torch.nn.Parameter(means.clone())
        self.log_stds = torch.nn.Parameter(torch.zeros_like(means))

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) per row of `x`."""
        normal = torch.distributions.Normal(self.means, self.log_stds.exp())
        per_component = normal.log_prob(x.unsqueeze(1)).sum(dim=2)
        return torch.logsumexp(per_component + torch.log_softmax(self.logits, dim=0), dim=1)


@GENERATIVE.register(NAME)
class GaussianMixture(GenerativeTrainer):
    """Gaussian mixture fit by gradient descent on the negative log-likelihood."""

    Config = MixtureConfig
    cfg: MixtureConfig
    default_dataset = "template-blobs"

    def __init__(self, cfg: MixtureConfig, source: Dataset, ctx: TrainerContext) -> None:
        super().__init__(cfg, source, ctx)
        train = torch.as_tensor(source.split("train").x)
        if train.dim() != 2 or len(train) < cfg.components:
            raise GymkitError(f"{NAME} needs a 2-D tensor of at least {cfg.components} points, "
                              f"got shape {tuple(train.shape)}; pick another --dataset")
        self.device = torch.device(ctx.device)
        self.train_data = train.to(self.device)  # whole batches live on the device
        self.test_data = torch.as_tensor(source.split("validation").x, device=self.device)
        self.generator = torch.Generator().manual_seed(ctx.seed)  # init and data order
        first = torch.randperm(len(train), generator=self.generator)[:cfg.components]
        self.model = Mixture(train[first]).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self.epochs = self.steps = 0

    def nll(self, x: torch.Tensor) -> torch.Tensor:
        return -self.model.log_prob(x).mean()

    def train_step(self) -> dict[str, float]:
        """One epoch; with a budget in steps, the last one stops where the budget ends."""
        order = torch.randperm(len(self.train_data), generator=self.generator).to(self.device)
        starts = range(0, len(order), self.cfg.batch_size)
        if self.ctx.budget.unit == "steps":
            starts = starts[:self.budget_left()]
        total = 0.0
        for start in starts:
            loss = self.nll(self.train_data[order[start:start + self.cfg.batch_size]])
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            total += loss.item()
            self.steps += 1
        self.epochs += 1
        return {"losses/nll": total / len(starts)}

    def evaluate(self, episodes: int, seed: int) -> dict[str, float]:
        with torch.no_grad():
            return {"eval/loss": self.nll(self.test_data).item()}

    def images(self) -> dict[str, np.ndarray]:
        """The fitted density on a 48x48 grid around the data, as a heatmap."""
        low, high = self.train_data.min(dim=0).values, self.train_data.max(dim=0).values
        xs = torch.linspace(float(low[0]), float(high[0]), 48, device=self.device)
        ys = torch.linspace(float(low[1]), float(high[1]), 48, device=self.device)
        grid = torch.cartesian_prod(ys.flip(0), xs).flip(1)  # rows from the top, (x, y) pairs
        with torch.no_grad():
            density = self.model.log_prob(grid).exp().view(48, 48)
        return {"images/density": heatmap(density.cpu().numpy(), cell=4)}

    def progress(self) -> dict[str, int]:
        return {"epochs": self.epochs, "steps": self.steps}

    def state_dict(self) -> dict[str, Any]:
        return {"model": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
                "optimizer": self.optimizer.state_dict(),
                "generator": self.generator.get_state(),
                "epochs": self.epochs, "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.epochs, self.steps = int(state["epochs"]), int(state["steps"])
