"""Multi-layer perceptron: the encoder for vector observations and the body of most heads."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

#: Activations that may be given by name.
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "leaky_relu": nn.LeakyReLU,
    "sigmoid": nn.Sigmoid,
}

ActivationSpec = str | type[nn.Module]


def activation_class(activation: ActivationSpec) -> type[nn.Module]:
    """Resolve an activation given by name (``"tanh"``, ``"relu"``, ...) or as a module class."""
    if isinstance(activation, str):
        try:
            return ACTIVATIONS[activation.lower()]
        except KeyError:
            raise ValueError(f"unknown activation {activation!r}; valid names: "
                             f"{', '.join(ACTIVATIONS)}, or pass an nn.Module class") from None
    if isinstance(activation, type) and issubclass(activation, nn.Module):
        return activation
    raise TypeError(f"activation must be a name or an nn.Module class, got {activation!r}")


def layer_init(layer: nn.Module, gain: float = math.sqrt(2), bias: float = 0.0) -> nn.Module:
    """Orthogonal weights scaled by `gain` and constant biases, as PPO implementations do.

    CleanRL and SB3 use gain sqrt(2) for hidden layers, 0.01 for a policy's output layer
    and 1 for a value head. Returns the layer, so it can wrap a constructor call.
    """
    weight = getattr(layer, "weight", None)
    if isinstance(weight, torch.Tensor):
        nn.init.orthogonal_(weight, gain)
    layer_bias = getattr(layer, "bias", None)
    if isinstance(layer_bias, torch.Tensor):
        nn.init.constant_(layer_bias, bias)
    return layer


class MLP(nn.Module):
    """Linear layers, each followed by an activation, optionally ending in a linear output layer.

    Without `out_dim` the network is a feature encoder: every layer, the last included, is
    followed by the activation and `output_dim` is ``hidden[-1]``. With `out_dim` a final
    linear layer without activation is added (a head) and `output_dim` is `out_dim`. With
    ``hidden=()`` and no `out_dim` the network is the identity and `output_dim` is `in_dim`.

    Weights use PyTorch's default initialisation; ``ortho_init=True`` switches to orthogonal
    weights with gain sqrt(2) for hidden layers, `out_gain` for the output layer, and zero
    biases (as in PPO implementations).

    Input is ``(..., in_dim)``; output is ``(..., output_dim)``.
    """

    def __init__(self, in_dim: int, hidden: Sequence[int] = (64, 64),
                 activation: ActivationSpec = "tanh", out_dim: int | None = None, *,
                 ortho_init: bool = False, out_gain: float = 1.0) -> None:
        super().__init__()
        if in_dim < 1 or any(size < 1 for size in hidden) or (out_dim is not None and out_dim < 1):
            raise ValueError(f"MLP sizes must be positive: in_dim={in_dim}, hidden={tuple(hidden)},"
                             f" out_dim={out_dim}")
        act = activation_class(activation)
        layers: list[nn.Module] = []
        width = in_dim
        for size in hidden:
            linear = nn.Linear(width, size)
            if ortho_init:
                layer_init(linear, math.sqrt(2))
            layers += [linear, act()]
            width = size
        if out_dim is not None:
            linear = nn.Linear(width, out_dim)
            if ortho_init:
                layer_init(linear, out_gain)
            layers.append(linear)
            width = out_dim
        self.layers = nn.Sequential(*layers)
        self.in_dim = in_dim
        self.output_dim: int = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
