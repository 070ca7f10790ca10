"""DCGAN (Radford et al., 2016), with a textbook's generator and discriminator.

The generator maps noise z to an image: a dense layer to (128, H/4, W/4) with LeakyReLU(0.1)
and batch norm, upsampling, a 5x5 convolution to 64 channels with batch norm (and
LeakyReLU), upsampling, a 5x5 convolution to the image's channels, tanh. The discriminator:
two 5x5 stride-2 convolutions (64, 128) with LeakyReLU(0.1) and dropout 0.3, no batch norm,
then a dense layer to the probability that its input is real. On 28x28 images the book's
Keras summaries count 865,281 and 212,865 parameters (Keras counts batch norm's moving mean
and variance; torch keeps those as buffers).

Updates alternate, one discriminator step (real images labelled 1, or ``1 - label_smoothing``,
generated ones 0) and one generator step with the non-saturating loss -log D(G(z)). With
``conditional`` both networks also get the class (cGAN): a one-hot vector beside z, one-hot
planes beside the image. Images are scaled to [-1, 1] for the tanh.

Evaluations report the classifier FID of `eval_samples` samples against the split's real
images (`eval/fid`, also `eval/loss`, which picks best.pt), the classes the samples cover
(`eval/classes_covered`: classes given at least a fifth of a uniform share), and log the
samples of a fixed noise batch.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from generative.classifier import Classifier, ClassifierConfig
from generative.fid import class_histogram, classes_covered, features_of, frechet_distance
from generative.image_trainer import ImageTrainer, check_halves_twice
from toolkit.checkpoint import check_state_version
from toolkit.config import TrainerConfig, check_range, param
from toolkit.data import Dataset
from toolkit.errors import ConfigError, GymkitError
from toolkit.images import heatmap, image_grid
from toolkit.trainer import TrainerContext

STATE_VERSION = 1
#: The feature network of the classifier FID: an MLP classifier trained for this many steps
#: from this seed (not the run's), so that every run on a dataset is measured alike.
FID_CLASSIFIER_STEPS = 1000
FID_CLASSIFIER_SEED = 31_415
#: Its feature layer's width: few enough dimensions for the covariance of a few hundred images.
FID_FEATURES = 64


@dataclass
class DCGANConfig(TrainerConfig):
    noise_dim: int = param(100, "size of the noise vector z")
    noise: str = param("uniform", "z's distribution: uniform (in [0, 1)) or gaussian")
    lr: float = param(1e-3, "Adam learning rate of both networks")
    beta1: float = param(0.9, "Adam's beta1 of both networks")
    batch_size: int = param(128, "real images per discriminator step")
    steps_per_epoch: int = param(0, "updates per epoch (0: one pass over the training images)")
    label_smoothing: float = param(0.0, "one-sided: real images are labelled 1 - this")
    conditional: bool = param(False, "condition both networks on the class (cGAN)")
    dcgan_init: bool = param(False, "weights from N(0, 0.02), batch norm's from N(1, 0.02), "
                                    "as the DCGAN paper")
    eval_samples: int = param(1000, "samples drawn for each evaluation's classifier FID")

    def validate(self) -> None:
        if self.noise not in ("uniform", "gaussian"):
            raise ConfigError(f"noise must be uniform or gaussian, got {self.noise!r}")
        check_range(self, "noise_dim", 1)
        check_range(self, "lr", 0, low_open=True)
        check_range(self, "beta1", 0, 1)
        check_range(self, "batch_size", 1)
        check_range(self, "steps_per_epoch", 0)
        check_range(self, "label_smoothing", 0, 1)
        check_range(self, "eval_samples", 2)


class Generator(nn.Module):
    def __init__(self, shape: tuple[int, ...], noise_dim: int, classes: int) -> None:
        super().__init__()
        channels, height, width = shape
        small = (128, height // 4, width // 4)
        self.dense = nn.Sequential(nn.Linear(noise_dim + classes, math.prod(small)),
                                   nn.LeakyReLU(0.1), nn.BatchNorm1d(math.prod(small)))
        self.convs = nn.Sequential(nn.Unflatten(1, small), nn.Upsample(scale_factor=2),
                                   nn.Conv2d(128, 64, 5, padding=2), nn.BatchNorm2d(64),
                                   nn.LeakyReLU(0.1), nn.Upsample(scale_factor=2),
                                   nn.Conv2d(64, channels, 5, padding=2), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.convs(self.dense(z))


class Discriminator(nn.Module):
    def __init__(self, shape: tuple[int, ...], classes: int) -> None:
        super().__init__()
        channels, height, width = shape
        self.net = nn.Sequential(nn.Conv2d(channels + classes, 64, 5, stride=2, padding=2),
                                 nn.LeakyReLU(0.1), nn.Dropout(0.3),
                                 nn.Conv2d(64, 128, 5, stride=2, padding=2), nn.LeakyReLU(0.1),
                                 nn.Dropout(0.3), nn.Flatten(),
                                 nn.Linear(128 * (height // 4) * (width // 4), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of "real"."""
        return self.net(x).squeeze(1)


def dcgan_init(module: nn.Module) -> None:
    if isinstance(module, nn.Conv2d | nn.Linear):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class DCGANTrainer(ImageTrainer):
    """DCGAN: a textbook's generator and discriminator, non-saturating loss, cGAN option."""

    Config = DCGANConfig
    cfg: DCGANConfig
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        # The textbook's: Adam's defaults, uniform noise, batch 128, 400 steps an epoch.
        "textbook": {"lr": 1e-3, "beta1": 0.9, "noise": "uniform", "batch_size": 128,
                     "steps_per_epoch": 400, "dcgan_init": False},
        # The DCGAN paper's: Adam 2e-4 with beta1 0.5, Gaussian noise, N(0, 0.02) weights.
        "dcgan-paper": {"lr": 2e-4, "beta1": 0.5, "noise": "gaussian", "dcgan_init": True},
    }

    def __init__(self, cfg: DCGANConfig, source: Dataset, ctx: TrainerContext) -> None:
        super().__init__(cfg, source, ctx, name="dcgan", batch_size=cfg.batch_size)
        check_halves_twice(source.shape, "dcgan", "pick another --dataset")
        if self.train_y is None or source.classes is None:
            # Before any training: the evaluation's classifier FID is trained on the labels.
            raise GymkitError(f"dcgan is measured by a classifier FID, which needs labels, and "
                              f"{source.name} has none; pick a labelled --dataset (see gymkit "
                              "list)")
        self.classes = source.classes if cfg.conditional and source.classes else 0
        self.train_x = self.train_x * 2.0 - 1.0  # [-1, 1], the tanh's range
        self.generator_net = Generator(source.shape, cfg.noise_dim, self.classes).to(self.device)
        self.discriminator = Discriminator(source.shape, self.classes).to(self.device)
        if cfg.dcgan_init:
            self.generator_net.apply(dcgan_init)
            self.discriminator.apply(dcgan_init)
        betas = (cfg.beta1, 0.999)
        self.g_optimizer = torch.optim.Adam(self.generator_net.parameters(), lr=cfg.lr,
                                            betas=betas)
        self.d_optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=cfg.lr,
                                            betas=betas)
        noise = torch.Generator().manual_seed(ctx.seed + 1)
        self.fixed_z = self.draw_noise(64, noise)
        self.fixed_labels = torch.arange(64, device=self.device) % max(self.classes, 1)
        self._fid_classifier: Classifier | None = None
        #: Per split: its real images' features, the same at every evaluation.
        self._real_features: dict[str, np.ndarray] = {}

    # -- the networks' inputs ---------------------------------------------------------

    def draw_noise(self, n: int, generator: torch.Generator) -> torch.Tensor:
        shape = (n, self.cfg.noise_dim)
        z = (torch.rand(shape, generator=generator) if self.cfg.noise == "uniform"
             else torch.randn(shape, generator=generator))
        return z.to(self.device)

    def generate(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        if self.classes:
            assert labels is not None
            z = torch.cat([z, F.one_hot(labels, self.classes).to(z.dtype)], dim=1)
        return self.generator_net(z)

    def discriminate(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        if self.classes:
            assert labels is not None
            planes = F.one_hot(labels, self.classes).to(x.dtype)[:, :, None, None]
            x = torch.cat([x, planes.expand(-1, -1, *x.shape[2:])], dim=1)
        return self.discriminator(x)

    # -- training ---------------------------------------------------------------------

    def batches(self) -> Iterator[torch.Tensor]:
        """With `steps_per_epoch`, an epoch is that many updates (the data order runs on
        across them, a new pass starting where one ends); else one pass over the images."""
        per_epoch = self.cfg.steps_per_epoch
        if not per_epoch:
            yield from super().batches()
            return
        limit = self.budget_left() if self.ctx.budget.unit == "steps" else per_epoch
        for _ in range(min(limit, per_epoch - self.steps % per_epoch)):
            index = next(self.shuffled.batches(limit=1))
            self.steps += 1
            yield index

    def progress(self) -> dict[str, int]:
        per_epoch = self.cfg.steps_per_epoch
        epochs = self.steps // per_epoch if per_epoch else self.shuffled.epochs
        return {"epochs": epochs, "steps": self.steps}

    def train_step(self) -> dict[str, float]:
        real_label = 1.0 - self.cfg.label_smoothing
        for index in self.batches():
            real = self.train_x[index]
            labels = self.train_y[index] if self.classes and self.train_y is not None else None
            z = self.draw_noise(len(real), self.generator)
            fake = self.generate(z, labels)
            real_logits = self.discriminate(real, labels)
            fake_logits = self.discriminate(fake.detach(), labels)
            d_loss = (F.binary_cross_entropy_with_logits(
                real_logits, torch.full_like(real_logits, real_label))
                + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))
            self.d_optimizer.zero_grad(set_to_none=True)
            d_loss.backward()
            self.d_optimizer.step()
            # Non-saturating: maximize log D(G(z)) rather than minimize log(1 - D(G(z))).
            g_logits = self.discriminate(fake, labels)
            g_loss = F.binary_cross_entropy_with_logits(g_logits, torch.ones_like(g_logits))
            self.g_optimizer.zero_grad(set_to_none=True)
            g_loss.backward()
            self.g_optimizer.step()
            self.accumulate(torch.stack([d_loss.detach(), g_loss.detach(),
                                         torch.sigmoid(real_logits.detach()).mean(),
                                         torch.sigmoid(fake_logits.detach()).mean()]))
        means = self.means()
        if means is None:
            return {}
        d_loss_v, g_loss_v, d_real, d_fake = means
        return {"losses/d_loss": d_loss_v, "losses/g_loss": g_loss_v, "charts/d_real": d_real,
                "charts/d_fake": d_fake}

    # -- evaluation -------------------------------------------------------------------

    def fid_classifier(self) -> Classifier:
        """The feature network: an MLP classifier of the dataset, trained the same way in
        every run (its own seed, FID_CLASSIFIER_STEPS steps on the training split)."""
        if self._fid_classifier is None:
            assert self.train_y is not None and self.dataset.classes is not None  # __init__
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(FID_CLASSIFIER_SEED)
                model = Classifier(self.dataset.shape, self.dataset.classes,
                                   ClassifierConfig(hidden=[FID_FEATURES])).to(self.device)
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
            order = torch.Generator().manual_seed(FID_CLASSIFIER_SEED)
            images = (self.train_x + 1.0) / 2.0
            for _ in range(FID_CLASSIFIER_STEPS):
                index = torch.randint(len(images), (128,), generator=order).to(self.device)
                loss = F.cross_entropy(model(images[index]), self.train_y[index])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            self._fid_classifier = model.eval()
        return self._fid_classifier

    @torch.no_grad()
    def draw(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """`n` samples in [0, 1] (classes in turn for a conditional model), in eval mode."""
        self.generator_net.eval()
        try:
            labels = torch.arange(n, device=self.device) % max(self.classes, 1)
            images = [self.generate(self.draw_noise(len(part), generator),
                                    part if self.classes else None)
                      for part in labels.split(1000)]
        finally:
            self.generator_net.train()
        return (torch.cat(images) + 1.0) / 2.0

    def evaluate(self, episodes: int, seed: int) -> dict[str, float]:
        classifier = self.fid_classifier()
        split = self.eval_split(seed)
        if split not in self._real_features:
            self._real_features[split] = features_of(classifier.features,
                                                     self.eval_data(split)[0])
        fake = self.draw(self.cfg.eval_samples, torch.Generator().manual_seed(seed))
        fid = frechet_distance(self._real_features[split],
                               features_of(classifier.features, fake))
        with torch.no_grad():
            histogram = class_histogram(classifier(fake), self.dataset.classes or 1)
        return {"eval/fid": fid, "eval/loss": fid,
                "eval/classes_covered": float(classes_covered(histogram))}

    def sample(self, n: int, seed: int) -> np.ndarray:
        return self.draw(n, torch.Generator().manual_seed(seed)).cpu().numpy()

    @torch.no_grad()
    def images(self) -> dict[str, np.ndarray]:
        self.generator_net.eval()
        try:
            fixed = self.generate(self.fixed_z, self.fixed_labels if self.classes else None)
        finally:
            self.generator_net.train()
        result = {"samples/generated": image_grid(((fixed + 1.0) / 2.0).cpu().numpy(),
                                                  scale=self.image_scale)}
        if self.dataset.classes:
            logits = self.fid_classifier()((fixed + 1.0) / 2.0)
            histogram = class_histogram(logits, self.dataset.classes)
            result["images/class_histogram"] = heatmap(histogram[None, :], cell=16)
        return result

    # -- the rest of the interface ----------------------------------------------------

    def networks(self) -> dict[str, tuple[Any, tuple[Any, ...]]]:
        z = torch.cat([self.fixed_z[:2], torch.zeros(2, self.classes, device=self.device)], 1)
        x = torch.cat([self.train_x[:1], torch.zeros(1, self.classes, *self.train_x.shape[2:],
                                                     device=self.device)], 1)
        return {"generator": (self.generator_net, (z,)), "discriminator": (self.discriminator,
                                                                          (x,))}

    def state_dict(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, "generator_net": self.generator_net.state_dict(),
                "discriminator": self.discriminator.state_dict(),
                "g_optimizer": self.g_optimizer.state_dict(),
                "d_optimizer": self.d_optimizer.state_dict(), **self.data_state()}

    def policy_state_dict(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, "generator_net": self.generator_net.state_dict()}

    def load_policy_state_dict(self, state: dict[str, Any]) -> None:
        check_state_version(state, "dcgan", STATE_VERSION)
        self.generator_net.load_state_dict(state["generator_net"])

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.load_policy_state_dict(state)
        self.discriminator.load_state_dict(state["discriminator"])
        self.g_optimizer.load_state_dict(state["g_optimizer"])
        self.d_optimizer.load_state_dict(state["d_optimizer"])
        self.load_data_state(state)
