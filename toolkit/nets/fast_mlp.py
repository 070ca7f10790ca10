"""A plain MLP encoder run as functional calls (``F.linear``, ``torch.tanh``,
``torch.relu``) instead of module calls: the same operations on the same weights, so the
same numbers, without nn.Module's per-call overhead, which is most of the cost of a forward
pass of a small network on a small batch (an agent's acting step, its gradient steps).

`mlp_plan` looks at an encoder once and says whether it can be run so; `run_encoder` runs
it, through the plan when there is one and as a module otherwise. Module hooks do not see
the functional calls. Used by the actor-critic network and DQN's Q-network.

`LinearChain` runs such layers (and more Linear layers after them, a head) with the
weights' transposes made once, for the calls during which no parameter is replaced, and has
their backward pass without autograd, for a caller that computes a loss's gradients itself:
each gradient comes from the operations that autograd's backward runs for these layers
(``mm``, ``sum``, ``threshold_backward``, ``tanh_backward``, on the same operands), so it
has the same bits, without the cost of recording a graph and of the engine that runs it,
which on a small network are a large part of a gradient step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, cast

import torch
from gymnasium import spaces
from torch import nn
from torch.nn import functional as F

from toolkit.nets.encoders import ObservationEncoder
from toolkit.nets.mlp import MLP
from toolkit.nets.preprocess import Preprocessor

Activation = Callable[[torch.Tensor], torch.Tensor]

#: Activation modules whose forward is exactly this function of the input.
ACTIVATION_FUNCTIONS: dict[type[nn.Module], Activation] = {nn.Tanh: torch.tanh, nn.ReLU: torch.relu}

#: Per activation function: its backward as autograd computes it, from the gradient of the
#: output and the output (derivatives.yaml: ``threshold_backward(grad, result, 0)`` for relu,
#: ``tanh_backward(grad, result)`` for tanh).
ACTIVATION_BACKWARD: dict[Activation, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    torch.relu: lambda grad, result: torch.ops.aten.threshold_backward(grad, result, 0),
    torch.tanh: torch.ops.aten.tanh_backward}

#: Per activation function: its in-place form (the same values), which `LinearChain` applies
#: to a Linear layer's fresh output instead of allocating another tensor.
IN_PLACE: dict[Activation, Activation] = {torch.relu: torch.relu_, torch.tanh: torch.tanh_}

Layer = dict[str, Any] | Activation


class Plan(NamedTuple):
    """How `run_encoder` goes through a plain MLP encoder without calling its modules."""

    #: Per layer: a Linear's own parameter dict (``linear._parameters``, read at each call,
    #: so it is never stale), or an activation's function.
    layers: tuple[Layer, ...]
    #: The encoder's preprocessing leaves a float32 batch ``(B, D)`` as it is (a Box of
    #: vectors: ``obs.float().flatten(1)``).
    float_vectors: bool


def linear_params(linear: nn.Linear) -> dict[str, Any]:
    """A Linear's parameter dict, read by `F.linear` calls as `Plan` reads it (the live
    entries: a parameter put in place of another is seen)."""
    return cast(dict[str, Any], linear._parameters)


def mlp_plan(encoder: nn.Module) -> Plan | None:
    """The plan of an `ObservationEncoder` whose core is an `MLP` of Linear layers and
    activations of `ACTIVATION_FUNCTIONS`; None for any other encoder."""
    if type(encoder) is not ObservationEncoder or type(encoder.core) is not MLP:
        return None
    layers: list[Layer] = []
    for layer in encoder.core.layers:
        if type(layer) is nn.Linear:
            layers.append(linear_params(layer))
        elif type(layer) in ACTIVATION_FUNCTIONS:
            layers.append(ACTIVATION_FUNCTIONS[type(layer)])
        else:
            return None
    preprocess = encoder.preprocess
    float_vectors = (type(preprocess) is Preprocessor and type(preprocess.space) is spaces.Box
                     and len(preprocess.space.shape) == 1)
    return Plan(tuple(layers), float_vectors)


def run_encoder(encoder: nn.Module, plan: Plan | None, obs: torch.Tensor,
                preprocessed: torch.Tensor | None = None) -> torch.Tensor:
    """`encoder(obs)`, through `plan` when there is one (from `preprocessed`, the output of
    the encoder's preprocessing, when it is given)."""
    if plan is None:
        return encoder(obs)
    x = preprocess_batch(encoder, plan, obs) if preprocessed is None else preprocessed
    for layer in plan.layers:
        x = F.linear(x, layer["weight"], layer["bias"]) if isinstance(layer, dict) else layer(x)
    return x


def preprocess_batch(encoder: nn.Module, plan: Plan, obs: torch.Tensor) -> torch.Tensor:
    """What the encoder's preprocessing makes of a batch."""
    if plan.float_vectors and obs.dtype == torch.float32 and obs.dim() == 2:
        return obs
    return cast(ObservationEncoder, encoder).preprocess(obs)


class _Linear(NamedTuple):
    weight: torch.Tensor
    bias: torch.Tensor | None
    weight_t: torch.Tensor  # weight.t(), made once


class _Activation(NamedTuple):
    function: Activation  # as the plan has it: ACTIVATION_BACKWARD's key
    apply: Activation  # what the chain calls: the in-place form after a Linear layer


class LinearChain:
    """Linear layers and activations (a `Plan`'s, then a head, say) for the calls during
    which no parameter is replaced (a rollout, a train_step's acting, a round of gradient
    steps), without autograd.

    Each Linear layer is ``torch.addmm`` with its weight's transpose, made once (``mm``
    without a bias): what ``F.linear`` computes, less a transpose and a dispatch per layer
    and call. The transposes are views, which see the weights' in-place updates (an
    optimizer's step), not a parameter put in place of another. An activation after a
    Linear layer is applied in place (`IN_PLACE`): one tensor less to allocate, which for
    a large batch (a round's target values) means fresh memory less to fault in.

    `forward_keeping` and `backward` are the forward and backward pass of a caller that
    computes a loss's gradients itself (see the module docstring)."""

    def __init__(self, layers: Sequence[Layer]) -> None:
        self.layers: list[_Linear | _Activation] = []
        for layer in layers:
            if isinstance(layer, dict):
                self.layers.append(_Linear(layer["weight"], layer["bias"], layer["weight"].t()))
            else:
                after_linear = bool(self.layers) and isinstance(self.layers[-1], _Linear)
                self.layers.append(_Activation(layer, IN_PLACE.get(layer, layer) if after_linear
                                               else layer))

    def parameters(self) -> list[torch.Tensor]:
        """The Linear layers' weights and biases."""
        return [p for layer in self.layers if isinstance(layer, _Linear)
                for p in (layer.weight, layer.bias) if p is not None]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = _linear(layer, x) if isinstance(layer, _Linear) else layer.apply(x)
        return x

    def forward_keeping(self, x: torch.Tensor) -> list[torch.Tensor]:
        """`x` and each layer's output (the last one is ``self(x)``), for `backward`. (A
        Linear layer's output is then its activation's, applied in place: the backward of a
        Linear layer needs its input, an activation's its result.)"""
        outputs = [x]
        with torch.no_grad():
            for layer in self.layers:
                x = _linear(layer, x) if isinstance(layer, _Linear) else layer.apply(x)
                outputs.append(x)
        return outputs

    def backward(self, outputs: list[torch.Tensor], grad: torch.Tensor
                 ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The parameters of the Linear layers and the gradients that autograd's backward
        from the last output (given its gradient `grad`) would add to them; `outputs` is
        `forward_keeping`'s. The input (an observation batch) gets no gradient.

        ``F.linear`` is ``addmm(bias, x, weight.t())`` (``mm`` without a bias), whose
        backward is ``mm_mat1_backward`` for ``x`` and ``mm_mat2_backward`` for
        ``weight.t()`` (each picks its product by the operand's layout, as below), then the
        bias's broadcast summed away (``sum_to_size``); an activation's is
        `ACTIVATION_BACKWARD`'s."""
        params: list[torch.Tensor] = []
        grads: list[torch.Tensor] = []
        with torch.no_grad():
            for i in reversed(range(len(self.layers))):
                layer, x = self.layers[i], outputs[i]
                if not isinstance(layer, _Linear):
                    grad = ACTIVATION_BACKWARD[layer.function](grad, outputs[i + 1])
                    continue
                params.append(layer.weight)
                grads.append(grad.t().mm(x) if _column_major(layer.weight_t)
                             else x.t().mm(grad).t())
                if layer.bias is not None:
                    params.append(layer.bias)
                    grads.append(grad.sum(0))
                if i == 0:
                    break
                grad = (layer.weight_t.mm(grad.t()).t() if _column_major(x)
                        else grad.mm(layer.weight))
        return params, grads


def _linear(layer: _Linear, x: torch.Tensor) -> torch.Tensor:
    if layer.bias is None:
        return torch.mm(x, layer.weight_t)
    return torch.addmm(layer.bias, x, layer.weight_t)


def _column_major(matrix: torch.Tensor) -> bool:
    """The layout test of autograd's ``mm_mat1_backward`` and ``mm_mat2_backward``."""
    return matrix.stride(0) == 1 and matrix.stride(1) == matrix.size(0)
