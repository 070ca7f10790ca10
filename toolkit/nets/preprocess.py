"""Raw observation batches -> float tensors a network can take, given the gymnasium space.

=================  ================================  ==========================================
space              raw batch                         preprocessed batch
=================  ================================  ==========================================
Discrete(n)        (B,) integers                     (B, n) one-hot floats (``start`` honoured)
MultiDiscrete      (B, k) integers                   (B, sum(nvec)) concatenated one-hots
MultiBinary        (B, ...) 0/1                      (B, prod(shape)) floats
Box, not 3 dims    (B, ...)                          (B, prod(shape)) floats
Box, 3 dims        (B, H, W, C) or (B, C, H, W)      (B, C, H, W) floats; uint8 divided by 255
=================  ================================  ==========================================

A Box with three dimensions is an image. Its layout is read from the shape: it is
channels-last (HWC) when the last dimension is smaller than the first, else channels-first
(CHW), PyTorch's own layout. So (84, 84, 4), (64, 64, 3) and MinAtar's (10, 10, 4) and
(10, 10, 7) are HWC, and frame-stacked Atari (4, 84, 84) is CHW; an ambiguous shape such as
(10, 10, 10) is taken as CHW. This agrees with Stable-Baselines3's rule (the channel axis is
the smallest) except where the middle dimension is the smallest. Pass ``layout="hwc"`` or
``"chw"`` to override it. Only image uint8 values are scaled (by 1/255); a uint8 vector, such
as Atari RAM, is only cast to float. A 2-D Box is a vector, not a one-channel image: give it a
channel axis (e.g. ``gymnasium.wrappers.ReshapeObservation``) to use a CNN.

Any other space (Dict, Tuple, Text, Graph, ...) raises a ValueError.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

Layout = Literal["auto", "hwc", "chw"]

SUPPORTED_SPACES = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)


def is_image_space(space: spaces.Space) -> bool:
    """Whether gymkit treats `space` as an image: a Box with three dimensions."""
    return isinstance(space, spaces.Box) and len(space.shape) == 3


def image_layout(shape: tuple[int, ...], layout: Layout = "auto") -> Literal["hwc", "chw"]:
    """The layout of an image of `shape`: ``"hwc"`` when the last dimension is smaller than
    the first, else ``"chw"``; `layout` other than ``"auto"`` is returned as it is."""
    if len(shape) != 3:
        raise ValueError(f"an image shape has 3 dimensions, got {shape}")
    if layout == "auto":
        return "hwc" if shape[2] < shape[0] else "chw"
    if layout not in ("hwc", "chw"):
        raise ValueError(f"unknown image layout {layout!r}; valid: 'auto', 'hwc', 'chw'")
    return layout


def check_space(space: spaces.Space) -> None:
    """Raise a one-line ValueError if gymkit's encoders cannot take observations of `space`."""
    if not isinstance(space, SUPPORTED_SPACES):
        raise ValueError(
            f"gymkit encoders cannot take observations of {space}: only Box, Discrete, "
            "MultiDiscrete and MultiBinary are supported; flatten the space first "
            "(gymnasium.wrappers.FlattenObservation for Dict and Tuple) or write an encoder for it")
    if isinstance(space, spaces.MultiDiscrete) and space.nvec.ndim != 1:
        raise ValueError(f"gymkit encoders take only 1-D MultiDiscrete spaces, got {space}; "
                         "flatten it first (gymnasium.wrappers.FlattenObservation)")


class Preprocessor(nn.Module):
    """A parameter-free module: raw observation batch (a tensor) -> float tensor.

    See the module docstring for what each space becomes. `output_shape` is the shape of one
    preprocessed observation: ``(D,)`` for vectors, ``(C, H, W)`` for images.

    With ``preprocessed_input=True`` the batch is taken to be the output of Stable-Baselines3's
    ``preprocess_obs`` (floats; Discrete and MultiDiscrete already one-hot; images already
    divided by 255 where SB3 chose to): values are left alone and only the layout changes
    (flattening vectors, HWC images to CHW).
    """

    def __init__(self, space: spaces.Space, *, layout: Layout = "auto",
                 preprocessed_input: bool = False) -> None:
        super().__init__()
        check_space(space)
        self.space = space
        self.preprocessed_input = preprocessed_input
        self.is_image = is_image_space(space)
        self.channels_last = False
        self.divisor = 1.0
        if isinstance(space, spaces.Discrete):
            self.output_shape: tuple[int, ...] = (int(space.n),)
        elif isinstance(space, spaces.MultiDiscrete):
            self.output_shape = (int(space.nvec.sum()),)
        elif isinstance(space, spaces.Box) and self.is_image:
            self.channels_last = image_layout(space.shape, layout) == "hwc"
            h, w, c = space.shape if self.channels_last else np.roll(space.shape, -1)
            self.output_shape = (int(c), int(h), int(w))
            if space.dtype == np.uint8 and not preprocessed_input:
                self.divisor = 255.0
        else:
            self.output_shape = (math.prod(space.shape or ()),)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        space = self.space
        if self.preprocessed_input:
            x = obs.float()
        elif isinstance(space, spaces.Discrete):
            if obs.dim() != 1:
                raise ValueError(f"a batch of {space} observations has shape (B,), got "
                                 f"{tuple(obs.shape)}")
            x = one_hot(obs.long() - int(space.start), int(space.n))
        elif isinstance(space, spaces.MultiDiscrete):
            index = obs.long() - torch.as_tensor(space.start, device=obs.device)
            x = torch.cat([one_hot(index[:, i], int(n)) for i, n in enumerate(space.nvec)],
                          dim=1)
        else:
            x = obs.float()
        if self.is_image:
            if self.channels_last:
                x = x.permute(0, 3, 1, 2)
            return x / self.divisor if self.divisor != 1.0 else x
        return x.flatten(1)

    def extra_repr(self) -> str:
        return f"{self.space}, output_shape={self.output_shape}"


def one_hot(index: torch.Tensor, n: int) -> torch.Tensor:
    """``F.one_hot(index, n).float()`` as a comparison with ``arange(n)``: F.one_hot reads
    the values to check their range, which a compiled update cannot do (dynamo stops on a
    data-dependent shape). An index outside ``[0, n)`` gives a row of zeros."""
    return (index.unsqueeze(-1) == torch.arange(n, device=index.device)).float()
