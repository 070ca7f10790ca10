"""Variational autoencoder (Kingma & Welling, 2014).

An encoder maps an image x to q(z|x) = N(mu(x), diag sigma(x)^2); a decoder maps a latent z
to p(x|z), Bernoulli (logits, for images in [0, 1] or binarized) or Gaussian (a mean per
pixel and one learned standard deviation). Training maximizes the evidence lower bound

    ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || N(0, I))

with one reparameterized sample z = mu + sigma * eps per image and the KL in closed form;
`beta` weighs the KL, and `kl_warmup_epochs` raises its weight from 0 linearly. Evaluations
report, in nats per image, `eval/neg_elbo` (= `eval/recon` + `eval/kl`, also `eval/loss`,
which picks best.pt) and, with ``nll_samples = K > 0`` (``gymkit eval --nll-samples K``), the
importance-weighted estimate of the negative log-likelihood (Burda et al., 2016)

    -log p(x) ~ -log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x),   z_k ~ q(z|x),

which is at most the negative ELBO in expectation and tightens as K grows. One train_step
is one epoch (or what is left of the budget in steps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from generative.image_trainer import ImageTrainer, check_halves_twice
from toolkit import progress
from toolkit.config import TrainerConfig, check_activation, check_range, check_sizes, param
from toolkit.data import Dataset
from toolkit.data.loader import binarized, binarized_for_evaluation
from toolkit.errors import ConfigError
from toolkit.images import image_grid
from toolkit.nets.mlp import MLP, activation_class
from toolkit.trainer import TrainerContext

#: Images scored per forward pass in evaluations (bounds the memory of K importance samples).
EVAL_CHUNK = 500
#: Decoded images per pass of the importance-weighted NLL (samples times images): bounds its
#: memory at about 150 MB of MNIST images whatever --nll-samples is.
IW_DECODED = 50_000


@dataclass
class VAEConfig(TrainerConfig):
    architecture: str = param("mlp", "encoder and decoder: mlp, or conv (two stride-2 "
                                     "convolutions; image sides divisible by 4)")
    hidden: list[int] = param([400], "hidden layer sizes of the MLP encoder (the decoder "
                                     "mirrors them)")
    channels: list[int] = param([32, 64], "channels of the conv encoder's two layers (the "
                                          "decoder mirrors them)")
    latent_dim: int = param(20, "size of the latent code z")
    likelihood: str = param("bernoulli", "p(x|z): bernoulli (logits) or gaussian (a mean per "
                                         "pixel, one learned standard deviation)")
    binarize: str = param("dynamic", "images for a Bernoulli likelihood: dynamic (a fresh "
                                     "draw per batch; evaluations use one fixed draw), "
                                     "threshold (0.5) or none (grey levels as probabilities)")
    beta: float = param(1.0, "weight of the KL term (beta-VAE)")
    kl_warmup_epochs: float = param(0.0, "epochs over which the KL weight rises linearly from "
                                         "0 to beta (0: no warm-up)")
    optimizer: str = param("adam", "adam, or rmsprop (Keras' defaults: rho 0.9, eps 1e-7)")
    lr: float = param(1e-3, "learning rate")
    batch_size: int = param(128, "images per optimizer step")
    activation: str = param("relu", "activation of the hidden layers")
    nll_samples: int = param(0, "importance samples K for eval/nll_iw in evaluations "
                                "(0: none; gymkit eval --nll-samples K sets it)")

    def validate(self) -> None:
        check_activation(self)
        for key, options in (("architecture", ("mlp", "conv")),
                             ("likelihood", ("bernoulli", "gaussian")),
                             ("binarize", ("dynamic", "threshold", "none")),
                             ("optimizer", ("adam", "rmsprop"))):
            if getattr(self, key) not in options:
                raise ConfigError(f"{key} must be one of {', '.join(options)}, got "
                                  f"{getattr(self, key)!r}")
        check_range(self, "latent_dim", 1)
        check_range(self, "beta", 0)
        check_range(self, "kl_warmup_epochs", 0)
        check_range(self, "lr", 0, low_open=True)
        check_range(self, "batch_size", 1)
        check_range(self, "nll_samples", 0)
        check_sizes(self, "hidden", allow_empty=False)
        check_sizes(self, "channels", count=2)


class VAE(nn.Module):
    """q(z|x) and p(x|z) for samples of `shape` ``(C, H, W)``."""

    def __init__(self, shape: tuple[int, ...], cfg: VAEConfig) -> None:
        super().__init__()
        self.shape, self.latent_dim = shape, cfg.latent_dim
        size = math.prod(shape)
        if cfg.architecture == "mlp":
            self.encoder: nn.Module = nn.Sequential(nn.Flatten(),
                                                    MLP(size, cfg.hidden, cfg.activation))
            features = cfg.hidden[-1]
            self.decoder: nn.Module = nn.Sequential(
                MLP(cfg.latent_dim, cfg.hidden[::-1], cfg.activation, out_dim=size),
                nn.Unflatten(1, shape))
        else:
            self.encoder, features, self.decoder = conv_networks(shape, cfg)
        self.mean = nn.Linear(features, cfg.latent_dim)
        self.log_var = nn.Linear(features, cfg.latent_dim)
        self.gaussian = cfg.likelihood == "gaussian"
        #: log sigma of a Gaussian p(x|z), shared by every pixel.
        self.log_sigma = nn.Parameter(torch.zeros(())) if self.gaussian else None

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.encoder(x)
        return self.mean(features), self.log_var(features)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Bernoulli logits, or the Gaussian's means, ``(B, C, H, W)``."""
        return self.decoder(z)

    def log_likelihood(self, x: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        """log p(x|z) per image, summed over pixels, from the decoder's `output`."""
        if self.log_sigma is None:
            return -F.binary_cross_entropy_with_logits(output, x, reduction="none").flatten(1
                                                                                        ).sum(1)
        variance = (2 * self.log_sigma).exp()
        per_pixel = -0.5 * ((x - output) ** 2 / variance + math.log(2 * math.pi)) - self.log_sigma
        return per_pixel.flatten(1).sum(1)

    def mean_image(self, output: torch.Tensor) -> torch.Tensor:
        """E[x|z] from the decoder's output, clipped to [0, 1] for display."""
        return (output if self.gaussian else torch.sigmoid(output)).clamp(0.0, 1.0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Decoder output at the posterior means, and the posterior (for `--summary`)."""
        mean, log_var = self.encode(x)
        return self.decode(mean), mean, log_var


def conv_networks(shape: tuple[int, ...], cfg: VAEConfig) -> tuple[nn.Module, int, nn.Module]:
    """The conv encoder (two 4x4 stride-2 convolutions), its feature size, and the decoder
    that mirrors it with transposed convolutions."""
    check_halves_twice(shape, "the conv VAE", "use --set architecture=mlp")
    channels, height, width = shape
    first, second = cfg.channels
    act = activation_class(cfg.activation)
    small = (second, height // 4, width // 4)
    encoder = nn.Sequential(nn.Conv2d(channels, first, 4, 2, 1), act(),
                            nn.Conv2d(first, second, 4, 2, 1), act(), nn.Flatten())
    decoder = nn.Sequential(nn.Linear(cfg.latent_dim, math.prod(small)), act(),
                            nn.Unflatten(1, small), nn.ConvTranspose2d(second, first, 4, 2, 1),
                            act(), nn.ConvTranspose2d(first, channels, 4, 2, 1))
    return encoder, math.prod(small), decoder


class VAETrainer(ImageTrainer):
    """Variational autoencoder: MLP or conv, Bernoulli or Gaussian pixels, beta, KL warm-up."""

    Config = VAEConfig
    cfg: VAEConfig
    model: VAE
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        # A Keras textbook's VAE: 784-256-2, RMSprop, batch 50, 20 epochs, binary
        # cross-entropy on grey levels. On MNIST: 404,244 parameters.
        "textbook": {"hidden": [256], "latent_dim": 2, "optimizer": "rmsprop", "lr": 1e-3,
                     "batch_size": 50, "binarize": "none", "epochs": 20},
        # pytorch/examples' vae/main.py: 784-400-20, Adam 1e-3, batch 128, 10 epochs.
        "pytorch-examples": {"hidden": [400], "latent_dim": 20, "optimizer": "adam",
                             "lr": 1e-3, "batch_size": 128, "binarize": "none", "epochs": 10},
    }

    def __init__(self, cfg: VAEConfig, source: Dataset, ctx: TrainerContext) -> None:
        super().__init__(cfg, source, ctx, name="vae", batch_size=cfg.batch_size)
        self.model = VAE(source.shape, cfg).to(self.device)
        self.optimizer: torch.optim.Optimizer = (
            self.adam(self.model.parameters(), cfg.lr) if cfg.optimizer == "adam"
            else torch.optim.RMSprop(self.model.parameters(), lr=cfg.lr, alpha=0.9, eps=1e-7,
                                     foreach=True))
        # The fixed inputs of the logged images: noise for samples, images to reconstruct.
        noise = torch.Generator().manual_seed(ctx.seed + 1)
        self.fixed_z = torch.randn(64, cfg.latent_dim, generator=noise).to(self.device)
        self.fixed_x = self.eval_data("validation")[0][:8]

    # -- data -------------------------------------------------------------------------

    def _bernoulli(self) -> bool:
        return self.cfg.likelihood == "bernoulli"

    def _train_batch(self, index: torch.Tensor) -> torch.Tensor:
        x = self.train_x[index]
        if self._bernoulli() and self.cfg.binarize != "none":
            x = binarized(x, self.cfg.binarize, self.generator if x.device.type == "cpu"
                          else None)
        return x

    def prepare_eval(self, x: torch.Tensor) -> torch.Tensor:
        """For a Bernoulli likelihood, binarized once: the same images in every run."""
        if not self._bernoulli() or self.cfg.binarize == "none":
            return x
        how = "dynamic" if self.cfg.binarize == "dynamic" else "threshold"
        return binarized_for_evaluation(x, how).to(self.device)

    # -- training ---------------------------------------------------------------------

    def kl_weight(self) -> float:
        """beta, scaled by the warm-up's progress (epochs, fractional)."""
        warmup = self.cfg.kl_warmup_epochs
        if warmup == 0:
            return self.cfg.beta
        return self.cfg.beta * min(1.0, self.epoch_fraction() / warmup)

    def train_step(self) -> dict[str, float]:
        model = self.model
        for index in self.batches():
            x = self._train_batch(index)
            mean, log_var = model.encode(x)
            eps = torch.randn(mean.shape, generator=self.generator).to(self.device)
            z = mean + (0.5 * log_var).exp() * eps
            recon = -model.log_likelihood(x, model.decode(z)).mean()
            kl = gaussian_kl(mean, log_var).mean()
            loss = recon + self.kl_weight() * kl
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.accumulate(torch.stack([loss.detach(), recon.detach(), kl.detach()]))
        means = self.means()
        if means is None:
            return {}
        loss_value, recon_value, kl_value = means
        return {"losses/loss": loss_value, "losses/recon": recon_value, "losses/kl": kl_value,
                "charts/kl_weight": self.kl_weight()}

    # -- evaluation -------------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self, episodes: int, seed: int) -> dict[str, float]:
        x, _ = self.eval_data(self.eval_split(seed))
        generator = torch.Generator().manual_seed(seed)
        recon_sum = kl_sum = nll_sum = 0.0
        with progress.task("importance-weighted NLL" if self.cfg.nll_samples else "evaluating",
                           len(x), "images") as bar:
            for chunk in x.split(EVAL_CHUNK):
                recon, kl, nll = self._evaluate_chunk(chunk, generator)
                recon_sum, kl_sum, nll_sum = recon_sum + recon, kl_sum + kl, nll_sum + nll
                bar.advance(len(chunk))
        n = len(x)
        metrics = {"eval/neg_elbo": (recon_sum + kl_sum) / n, "eval/recon": recon_sum / n,
                   "eval/kl": kl_sum / n}
        metrics["eval/loss"] = metrics["eval/neg_elbo"]
        if self.cfg.nll_samples:
            metrics["eval/nll_iw"] = nll_sum / n
        return metrics

    def _evaluate_chunk(self, chunk: torch.Tensor, generator: torch.Generator
                        ) -> tuple[float, float, float]:
        """A chunk's summed reconstruction term, KL and (with nll_samples) IW-NLL."""
        mean, log_var = self.model.encode(chunk)
        eps = torch.randn(mean.shape, generator=generator).to(self.device)
        z = mean + (0.5 * log_var).exp() * eps
        recon = float(-self.model.log_likelihood(chunk, self.model.decode(z)).sum())
        kl = float(gaussian_kl(mean, log_var).sum())
        nll = 0.0
        if self.cfg.nll_samples:
            nll = float(self.importance_weighted_nll(chunk, self.cfg.nll_samples,
                                                     generator).sum())
        return recon, kl, nll

    @torch.no_grad()
    def importance_weighted_nll(self, x: torch.Tensor, samples: int,
                                generator: torch.Generator) -> torch.Tensor:
        """-log p(x) per image, estimated with `samples` importance samples from q(z|x)."""
        mean, log_var = self.model.encode(x)
        std = (0.5 * log_var).exp()
        # The K samples in passes of at most IW_DECODED images, each pass's log-sum-exp
        # combined at the end: memory stays bounded at any K (and the smaller tensors stay
        # in cache).
        per_pass = max(1, IW_DECODED // len(x))
        sums = []
        for start in range(0, samples, per_pass):
            k = min(per_pass, samples - start)
            eps = torch.randn((k, *mean.shape), generator=generator).to(self.device)
            z = mean + std * eps  # (k, B, latent)
            output = self.model.decode(z.flatten(0, 1))
            repeated = x.expand(k, *x.shape).flatten(0, 1)
            log_px_z = self.model.log_likelihood(repeated, output).view(k, len(x))
            log_pz = standard_normal_log_prob(z)
            log_qz = standard_normal_log_prob(eps) - std.log().sum(-1)
            sums.append(torch.logsumexp(log_px_z + log_pz - log_qz, dim=0))
        return -(torch.logsumexp(torch.stack(sums), dim=0) - math.log(samples))

    # -- images -----------------------------------------------------------------------

    @torch.no_grad()
    def sample(self, n: int, seed: int) -> np.ndarray:
        z = torch.randn(n, self.cfg.latent_dim, generator=torch.Generator().manual_seed(seed))
        return self.model.mean_image(self.model.decode(z.to(self.device))).cpu().numpy()

    @torch.no_grad()
    def images(self) -> dict[str, np.ndarray]:
        model = self.model
        scale = self.image_scale
        originals = self.fixed_x
        recon = model.mean_image(model.decode(model.encode(originals)[0]))
        pairs = torch.cat([originals, recon]).cpu().numpy()
        samples = model.mean_image(model.decode(self.fixed_z)).cpu().numpy()
        result = {"samples/reconstructions": image_grid(pairs, columns=len(originals),
                                                        scale=scale),
                  "samples/generated": image_grid(samples, scale=scale)}
        if self.cfg.latent_dim == 2:
            side = 15
            # The latent plane at the prior's quantiles 5% ... 95%.
            ticks = torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(0.05, 0.95, side))
            grid = torch.stack([ticks.repeat(side), ticks.flip(0).repeat_interleave(side)], 1)
            manifold = model.mean_image(model.decode(grid.to(self.device))).cpu().numpy()
            result["samples/manifold"] = image_grid(manifold, columns=side, padding=0,
                                                    scale=scale)
            x, y = self.eval_data("validation")
            means = torch.cat([model.encode(chunk)[0] for chunk in x.split(EVAL_CHUNK)])
            result["images/latent_scatter"] = scatter_image(
                means.cpu().numpy(), None if y is None else y.cpu().numpy())
        return result

    # -- the rest of the interface ----------------------------------------------------

    def networks(self) -> dict[str, tuple[Any, tuple[Any, ...]]]:
        return {"vae": (self.model, (self.train_x[:1],))}

    def summary(self) -> dict[str, Any]:
        return {"parameters": sum(p.numel() for p in self.model.parameters())}


def gaussian_kl(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(log_var)) || N(0, I)) per row, in closed form."""
    return 0.5 * (mean.pow(2) + log_var.exp() - 1.0 - log_var).sum(-1)


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I), summed over the last dimension."""
    return -0.5 * (z.pow(2) + math.log(2 * math.pi)).sum(-1)


#: Ten distinct colours (Tableau 10) for the classes of a latent scatter.
_PALETTE = np.array([[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40],
                     [148, 103, 189], [140, 86, 75], [227, 119, 194], [127, 127, 127],
                     [188, 189, 34], [23, 190, 207]], dtype=np.uint8)


def scatter_image(points: np.ndarray, labels: np.ndarray | None, size: int = 256) -> np.ndarray:
    """2-D points as 3x3 dots on a white HWC uint8 image, coloured by label."""
    image = np.full((size, size, 3), 255, dtype=np.uint8)
    low, high = points.min(axis=0), points.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    pixels = ((points - low) / span * (size - 5) + 2).round().astype(int)
    colours = _PALETTE[(labels if labels is not None else np.zeros(len(points), int)) % 10]
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            image[size - 1 - (pixels[:, 1] + dy), pixels[:, 0] + dx] = colours
    return image
