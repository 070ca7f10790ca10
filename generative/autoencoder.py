"""The autoencoder family: one trainer, six variants of what is learned and how.

An encoder f maps an image x to a code h = f(x) and a decoder g maps it back; training
minimizes the binary cross-entropy between x and g(h) (nats per image, summed over pixels;
sigmoid outputs, images in [0, 1]) plus the variant's penalty:

- ``undercomplete``: one hidden layer, the code narrower than the image (784-64-784 on MNIST);
- ``deep``: 784-128-64-128-784;
- ``conv``: two 3x3 convolutions with 2x2 max pooling, mirrored by stride-2 transposed
  convolutions (image sides divisible by 4);
- ``sparse``: undercomplete, plus an L1 penalty on the code (``sparsity`` * sum |h|). The
  default, 0.1, is about the weight of the Keras blog post the textbook presets follow
  ("Building Autoencoders in Keras": ``l1(10e-5)`` next to a cross-entropy averaged over
  784 pixels, 1e-4 * 784 = 0.08 here, where it is summed): on MNIST it halves the mean code
  activation (4.3 to 2.4 after 3 epochs; the post reports 7.30 to 3.33 after 100), on
  digits it lowers it by a quarter, for about 1 nat more reconstruction error;
- ``denoising``: undercomplete, fed x + Gaussian noise (``noise_mean``, ``noise_std``)
  clipped to [0, 1], and asked for the clean x;
- ``contractive``: undercomplete with a sigmoid code, plus ``contraction`` times the squared
  Frobenius norm of the encoder's Jacobian, sum_j (h_j (1 - h_j))^2 sum_i W_ji^2 in closed
  form (Rifai et al., 2011).

Evaluations report `eval/recon` (cross-entropy, nats per image; also `eval/loss`),
`eval/mse` (per pixel) and `eval/code_mean` (the code's mean activation, which the sparse
variant lowers) on the validation split, the test split at the end; the denoising
variant measures the reconstruction of noisy inputs (a fixed draw) against the clean images,
and `eval/identity_mse`, what returning the noisy input would score.
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
from toolkit.errors import ConfigError
from toolkit.images import image_grid
from toolkit.nets.mlp import MLP
from toolkit.trainer import TrainerContext

VARIANTS = ("undercomplete", "deep", "conv", "sparse", "denoising", "contractive")
#: The noise of the denoising variant's evaluations comes from this seed, not the run's.
EVAL_NOISE_SEED = 20_080_705


@dataclass
class AutoencoderConfig(TrainerConfig):
    variant: str = param("undercomplete", f"one of {', '.join(VARIANTS)}")
    code_size: int = param(64, "size of the code (the innermost layer of the MLP variants)")
    deep_hidden: int = param(128, "the deep variant's layer between the image and the code")
    channels: list[int] = param([32, 64], "the conv variant's two convolutions' channels")
    sparsity: float = param(0.1, "the sparse variant's L1 weight on the code, against the "
                                 "cross-entropy summed over pixels")
    noise_mean: float = param(0.5, "the denoising variant's Gaussian noise: its mean")
    noise_std: float = param(0.5, "the denoising variant's Gaussian noise: its standard "
                                  "deviation")
    contraction: float = param(1e-4, "the contractive variant's weight on the Jacobian's "
                                     "squared Frobenius norm")
    lr: float = param(1e-3, "Adam learning rate")
    batch_size: int = param(256, "images per optimizer step")

    def validate(self) -> None:
        if self.variant not in VARIANTS:
            raise ConfigError(f"variant must be one of {', '.join(VARIANTS)}, got "
                              f"{self.variant!r}")
        check_range(self, "code_size", 1)
        check_range(self, "deep_hidden", 1)
        check_range(self, "sparsity", 0)
        check_range(self, "noise_std", 0)
        check_range(self, "contraction", 0)
        check_range(self, "lr", 0, low_open=True)
        check_range(self, "batch_size", 1)
        check_sizes(self, "channels", count=2)


class Autoencoder(nn.Module):
    """Encoder and decoder of the variant; the decoder outputs logits."""

    def __init__(self, shape: tuple[int, ...], cfg: AutoencoderConfig) -> None:
        super().__init__()
        size = math.prod(shape)
        code_activation: type[nn.Module] = nn.Sigmoid if cfg.variant == "contractive" else nn.ReLU
        if cfg.variant == "conv":
            self.encoder, self.decoder = conv_autoencoder(shape, cfg.channels)
        elif cfg.variant == "deep":
            self.encoder = nn.Sequential(nn.Flatten(), MLP(size, [cfg.deep_hidden, cfg.code_size],
                                                           "relu"))
            self.decoder = nn.Sequential(MLP(cfg.code_size, [cfg.deep_hidden], "relu",
                                             out_dim=size), nn.Unflatten(1, shape))
        else:
            self.encoder = nn.Sequential(nn.Flatten(), MLP(size, [cfg.code_size],
                                                           code_activation))
            self.decoder = nn.Sequential(nn.Linear(cfg.code_size, size), nn.Unflatten(1, shape))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits of the reconstruction, and the code."""
        code = self.encoder(x)
        return self.decoder(code), code

    def code_layer(self) -> nn.Linear:
        """The Linear layer that makes a one-layer encoder's code (for the contraction)."""
        assert isinstance(self.encoder, nn.Sequential)
        mlp = self.encoder[1]
        assert isinstance(mlp, MLP)
        layer = mlp.layers[0]
        assert isinstance(layer, nn.Linear)
        return layer


def conv_autoencoder(shape: tuple[int, ...], channels: list[int]
                     ) -> tuple[nn.Module, nn.Module]:
    check_halves_twice(shape, "the conv autoencoder", "use --set variant=undercomplete")
    in_channels = shape[0]
    first, second = channels
    encoder = nn.Sequential(nn.Conv2d(in_channels, first, 3, padding=1), nn.ReLU(),
                            nn.MaxPool2d(2), nn.Conv2d(first, second, 3, padding=1), nn.ReLU(),
                            nn.MaxPool2d(2))
    decoder = nn.Sequential(nn.ConvTranspose2d(second, second, 2, stride=2), nn.ReLU(),
                            nn.ConvTranspose2d(second, first, 2, stride=2), nn.ReLU(),
                            nn.Conv2d(first, in_channels, 3, padding=1))
    return encoder, decoder


def contraction_penalty(code: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
    """||d code / d x||_F^2 per image for code = sigmoid(W x + b): sum_j (h_j (1 - h_j))^2
    sum_i W_ji^2."""
    slope = (code * (1 - code)) ** 2  # (B, J)
    return slope @ layer.weight.pow(2).sum(dim=1)


def reconstruction_nats(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy per image, summed over pixels."""
    return F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(1).sum(1)


class AutoencoderTrainer(ImageTrainer):
    """Autoencoders: undercomplete, deep, conv, sparse, denoising, contractive."""

    Config = AutoencoderConfig
    cfg: AutoencoderConfig
    model: Autoencoder

    def __init__(self, cfg: AutoencoderConfig, source: Dataset, ctx: TrainerContext) -> None:
        super().__init__(cfg, source, ctx, name="autoencoder", batch_size=cfg.batch_size)
        self.model = Autoencoder(source.shape, cfg).to(self.device)
        self.optimizer = self.adam(self.model.parameters(), cfg.lr)

    def corrupted(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The denoising variant's input: x plus Gaussian noise, clipped to [0, 1]; x itself
        for the others."""
        if self.cfg.variant != "denoising":
            return x
        noise = torch.randn(x.shape, generator=generator).to(self.device)
        return (x + self.cfg.noise_mean + self.cfg.noise_std * noise).clamp(0.0, 1.0)

    def penalty(self, code: torch.Tensor) -> torch.Tensor:
        """The variant's regularizer per image (zeros for those without one)."""
        if self.cfg.variant == "sparse":
            return self.cfg.sparsity * code.abs().sum(dim=1)
        if self.cfg.variant == "contractive":
            return self.cfg.contraction * contraction_penalty(code, self.model.code_layer())
        return code.new_zeros(len(code))

    def train_step(self) -> dict[str, float]:
        for index in self.batches():
            x = self.train_x[index]
            logits, code = self.model(self.corrupted(x, self.generator))
            recon = reconstruction_nats(logits, x).mean()
            penalty = self.penalty(code).mean()
            self.optimizer.zero_grad(set_to_none=True)
            (recon + penalty).backward()
            self.optimizer.step()
            self.accumulate(torch.stack([recon.detach(), penalty.detach()]))
        means = self.means()
        if means is None:
            return {}
        recon_value, penalty_value = means
        return {"losses/recon": recon_value, "losses/penalty": penalty_value}

    def _inputs(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """An evaluation split's clean images and the inputs the model gets for them."""
        x, _ = self.eval_data(split)
        return x, self.corrupted(x, torch.Generator().manual_seed(EVAL_NOISE_SEED))

    @torch.no_grad()
    def evaluate(self, episodes: int, seed: int) -> dict[str, float]:
        x, inputs = self._inputs(self.eval_split(seed))
        logits, code = self.model(inputs)
        recon = float(reconstruction_nats(logits, x).mean())
        metrics = {"eval/recon": recon, "eval/loss": recon,
                   "eval/mse": float(F.mse_loss(torch.sigmoid(logits), x)),
                   "eval/code_mean": float(code.mean())}
        if self.cfg.variant == "denoising":
            metrics["eval/identity_mse"] = float(F.mse_loss(inputs, x))
        return metrics

    @torch.no_grad()
    def images(self) -> dict[str, np.ndarray]:
        """Inputs above their reconstructions (noisy inputs for the denoising variant)."""
        _, inputs = self._inputs("validation")
        logits, _ = self.model(inputs[:8])
        rows = torch.cat([inputs[:8], torch.sigmoid(logits)]).cpu().numpy()
        return {"samples/reconstructions": image_grid(rows, columns=8, scale=self.image_scale)}

    def networks(self) -> dict[str, tuple[Any, tuple[Any, ...]]]:
        return {"autoencoder": (self.model, (self.train_x[:1],))}

    def summary(self) -> dict[str, Any]:
        return {"parameters": sum(p.numel() for p in self.model.parameters())}
