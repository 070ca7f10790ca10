"""Convolutional encoders for image observations: Atari-sized frames and small grids.

Both take a float batch ``(B, C, H, W)``, already scaled (see `toolkit.nets.preprocess`),
and return ``(B, output_dim)`` features after a ReLU.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from toolkit.nets.mlp import layer_init


def _conv_output_size(convs: nn.Module, in_shape: tuple[int, int, int], name: str) -> int:
    """Flattened size of what `convs` makes of one ``in_shape`` (C, H, W) input."""
    try:
        with torch.no_grad():
            out = convs(torch.zeros(1, *in_shape))
    except RuntimeError as exc:
        raise ValueError(f"{name} cannot take images of shape (C, H, W) = {in_shape}: {exc}; "
                         "use a larger frame or the other CNN") from None
    return int(out[0].numel())


class _ConvEncoder(nn.Module):
    """Convolutions, flatten, then a linear layer and ReLU to `out_dim` features."""

    def __init__(self, convs: nn.Sequential, in_shape: tuple[int, int, int], out_dim: int,
                 ortho_init: bool) -> None:
        super().__init__()
        self.in_shape = in_shape
        self.convs = convs
        self.flat_dim = _conv_output_size(convs, in_shape, type(self).__name__)
        self.linear = nn.Linear(self.flat_dim, out_dim)
        self.activation = nn.ReLU()
        if ortho_init:
            for module in [*convs, self.linear]:
                if isinstance(module, nn.Conv2d | nn.Linear):
                    layer_init(module, math.sqrt(2))
        self.output_dim: int = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.linear(self.convs(x).flatten(1)))


class NatureCNN(_ConvEncoder):
    """The DQN network of Mnih et al. (2015) without its output layer, for 84x84 frames.

    Conv 32 8x8 stride 4, conv 64 4x4 stride 2, conv 64 3x3 stride 1 (each with ReLU), then a
    linear layer to `out_dim` (512) units with ReLU. Any frame of at least 36x36 fits.
    ``ortho_init=True`` uses orthogonal weights with gain sqrt(2) and zero biases.
    """

    def __init__(self, in_shape: tuple[int, int, int] = (4, 84, 84), out_dim: int = 512, *,
                 ortho_init: bool = False) -> None:
        channels = in_shape[0]
        convs = nn.Sequential(
            nn.Conv2d(channels, 32, kernel_size=8, stride=4), nn.ReLU(),
            nn.Conv2d(32, 64, kernel_size=4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=3, stride=1), nn.ReLU(),
        )
        super().__init__(convs, in_shape, out_dim, ortho_init)


class SmallCNN(_ConvEncoder):
    """A small conv stack for small frames such as MinAtar's 10x10xC grids.

    One unpadded 3x3 stride-1 convolution with ReLU per entry of `channels`, then a linear
    layer to `out_dim` units with ReLU. The default, one conv of 16 filters then 128 units,
    is the network of the MinAtar paper (Young & Tian, 2019). ``ortho_init=True`` uses
    orthogonal weights with gain sqrt(2) and zero biases.
    """

    def __init__(self, in_shape: tuple[int, int, int] = (4, 10, 10),
                 channels: Sequence[int] = (16,), out_dim: int = 128, *,
                 kernel_size: int = 3, ortho_init: bool = False) -> None:
        if not channels:
            raise ValueError("SmallCNN needs at least one conv layer: channels=() given")
        layers: list[nn.Module] = []
        width = in_shape[0]
        for size in channels:
            layers += [nn.Conv2d(width, size, kernel_size=kernel_size, stride=1), nn.ReLU()]
            width = size
        super().__init__(nn.Sequential(*layers), in_shape, out_dim, ortho_init)
