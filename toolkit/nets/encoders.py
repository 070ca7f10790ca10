"""Encoders built from a gymnasium observation space: raw observation batch -> features.

`make_encoder(space, kind)` picks a network for the space and puts the preprocessing of
`toolkit.nets.preprocess` in front of it, so the encoder takes what the env returns
(``torch.as_tensor(obs)``, uint8 images and integer states included) and every encoder
exposes ``output_dim``, the size of its feature vector.

Kinds:

- ``"flat"``: no learned layers; the preprocessed observation, flattened. For Discrete(n)
  this is exactly the one-hot (``output_dim == n``): the input of a linear Q-network that
  is equivalent to a Q-table.
- ``"mlp"``: `MLP` over the flattened preprocessed observation.
- ``"cnn"``: for images, `NatureCNN` when height and width are both at least 36, else
  `SmallCNN` (MinAtar-sized frames).
- ``"auto"``: ``"flat"`` for Discrete (a layer on a one-hot is a table lookup, which the
  agent's head already is), ``"cnn"`` for images, ``"mlp"`` otherwise.
- ``"lstm"``: a `RecurrentEncoder` over the encoder of kind `base` (default ``"auto"``), or
  over `base` itself when it is a module.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from gymnasium import spaces
from torch import nn

from toolkit.nets.cnn import NatureCNN, SmallCNN
from toolkit.nets.lstm import RecurrentEncoder
from toolkit.nets.mlp import MLP
from toolkit.nets.preprocess import Layout, Preprocessor

KINDS = ("auto", "flat", "mlp", "cnn", "lstm")

#: Smallest height and width NatureCNN takes; smaller images get SmallCNN.
NATURE_CNN_MIN_SIZE = 36


class ObservationEncoder(nn.Module):
    """`preprocess` then `core`: raw observation batch ``(B, ...)`` -> ``(B, output_dim)``."""

    def __init__(self, preprocess: Preprocessor, core: nn.Module, output_dim: int) -> None:
        super().__init__()
        self.preprocess = preprocess
        self.core = core
        self.output_dim: int = output_dim

    @property
    def observation_space(self) -> spaces.Space:
        """The space this encoder was built for."""
        return self.preprocess.space

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.core(self.preprocess(obs))


def resolve_kind(observation_space: spaces.Space, kind: str) -> str:
    """The concrete kind ``"auto"`` stands for with this space; other kinds are checked."""
    if kind not in KINDS:
        raise ValueError(f"unknown encoder kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    if kind != "auto":
        return kind
    if isinstance(observation_space, spaces.Discrete):
        return "flat"
    if isinstance(observation_space, spaces.Box) and len(observation_space.shape) == 3:
        return "cnn"
    return "mlp"


def make_encoder(observation_space: spaces.Space, kind: str = "auto", *,
                 layout: Layout = "auto", preprocessed_input: bool = False,
                 base: str | nn.Module | None = None, hidden_size: int | None = None,
                 num_layers: int | None = None,
                 **kwargs: Any) -> ObservationEncoder | RecurrentEncoder:
    """An encoder for batches of `observation_space` observations; see the module docstring.

    `layout` overrides how an image's layout is read (``"hwc"``, ``"chw"``);
    `preprocessed_input` says the batch has already been through Stable-Baselines3's
    ``preprocess_obs`` (see `Preprocessor`). `kwargs` go to the network's constructor:
    `MLP` (``hidden``, ``activation``, ``ortho_init``), `NatureCNN` or `SmallCNN`
    (``out_dim``, ``channels``, ``ortho_init``). With ``kind="lstm"``, `base`, `hidden_size`
    (default 128) and `num_layers` (default 1) shape the recurrent core, `kwargs` go to the
    base encoder, and ``ortho_init`` also to the LSTM.
    """
    kind = resolve_kind(observation_space, kind)
    if kind == "lstm":
        if isinstance(base, nn.Module):
            if kwargs.keys() - {"ortho_init"}:
                raise ValueError(f"make_encoder got {sorted(kwargs)} with a base module; "
                                 "build the base encoder with them instead")
            encoder = base
        else:
            base_kind = base or "auto"
            if base_kind == "lstm":
                raise ValueError("base='lstm' is not valid: an LSTM's base is a feedforward "
                                 "encoder kind: auto, flat, mlp or cnn")
            encoder = make_encoder(observation_space, base_kind, layout=layout,
                                   preprocessed_input=preprocessed_input, **kwargs)
        return RecurrentEncoder(encoder, hidden_size=hidden_size or 128,
                                num_layers=num_layers or 1,
                                ortho_init=bool(kwargs.get("ortho_init", False)))
    given = [name for name, value in (("base", base), ("hidden_size", hidden_size),
                                      ("num_layers", num_layers)) if value is not None]
    if given:
        raise ValueError(f"{', '.join(given)} only apply to kind='lstm', not kind={kind!r}")

    preprocess = Preprocessor(observation_space, layout=layout,
                              preprocessed_input=preprocessed_input)
    shape = preprocess.output_shape
    flat_dim = math.prod(shape)
    if kind == "flat":
        if kwargs.keys() - {"ortho_init"}:  # no weights to initialise
            raise ValueError(f"kind='flat' has no settings, got {sorted(kwargs)}")
        return ObservationEncoder(preprocess, nn.Flatten(), flat_dim)
    if kind == "mlp":
        mlp = MLP(flat_dim, **kwargs)
        core: nn.Module = nn.Sequential(nn.Flatten(), mlp) if len(shape) > 1 else mlp
        return ObservationEncoder(preprocess, core, mlp.output_dim)
    if not preprocess.is_image:
        raise ValueError(f"kind='cnn' needs an image (a Box with 3 dimensions), got "
                         f"{observation_space}; use kind='mlp' or 'auto'")
    channels, height, width = shape
    cnn: NatureCNN | SmallCNN
    if min(height, width) >= NATURE_CNN_MIN_SIZE:
        cnn = NatureCNN((channels, height, width), **kwargs)
    else:
        cnn = SmallCNN((channels, height, width), **kwargs)
    return ObservationEncoder(preprocess, cnn, cnn.output_dim)
