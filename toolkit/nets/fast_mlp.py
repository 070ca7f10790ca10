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

from collections.abc import Callable, Mapping, Sequence
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

#: The same backward ops, writing into a given tensor (their ``grad_input`` overloads).
ACTIVATION_BACKWARD_INTO: dict[Activation, Callable[..., torch.Tensor]] = {
    torch.relu: lambda grad, result, out: torch.ops.aten.threshold_backward.grad_input(
        grad, result, 0, grad_input=out),
    torch.tanh: lambda grad, result, out: torch.ops.aten.tanh_backward.grad_input(
        grad, result, grad_input=out)}

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
    computes a loss's gradients itself (see the module docstring).

    With `reuse_outputs`, each Linear layer's output (and in `backward` each layer's
    gradient of its input) is written into a tensor of its own, kept from one call to the
    next (made again when the batch's size changes), so that a call's outputs are
    overwritten by the next call's: for a caller that is done with them by then (an
    action's argmax, a round's target values, a gradient step's backward). The same ops,
    given their output. A freshly allocated output is memory that is new to the process
    and the cache: on the 1,024-row batches of DQN's target values, the copy of the bias
    into a fresh output took about 300 µs under torch's profiler, into a kept one about
    45, where the product itself takes about 700."""

    def __init__(self, layers: Sequence[Layer], reuse_outputs: bool = False) -> None:
        self.reuse_outputs = reuse_outputs
        self._kept: dict[tuple[str, int], torch.Tensor] = {}
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
        for i, layer in enumerate(self.layers):
            x = self._linear(i, layer, x) if isinstance(layer, _Linear) else layer.apply(x)
        return x

    def _out(self, kind: str, index: int, like: torch.Tensor, *shape: int
             ) -> torch.Tensor | None:
        """With `reuse_outputs`, the kept tensor of this `kind` ("output", "grad") for layer
        `index`, of `shape` and `like`'s dtype and device; else None."""
        if not self.reuse_outputs:
            return None
        out = self._kept.get((kind, index))
        if out is None or out.shape != shape or out.dtype != like.dtype \
                or out.device != like.device:
            out = self._kept[kind, index] = like.new_empty(shape)
        return out

    def _linear(self, index: int, layer: _Linear, x: torch.Tensor) -> torch.Tensor:
        """The layer's ``addmm`` (``mm`` without a bias), into the layer's kept output with
        `reuse_outputs`."""
        out = self._out("output", index, x, x.shape[0], layer.weight.shape[0])
        if out is None:
            return _linear(layer, x)
        if layer.bias is None:
            return torch.mm(x, layer.weight_t, out=out)
        return torch.addmm(layer.bias, x, layer.weight_t, out=out)

    def forward_keeping(self, x: torch.Tensor) -> list[torch.Tensor]:
        """`x` and each layer's output (the last one is ``self(x)``), for `backward`. (A
        Linear layer's output is then its activation's, applied in place: the backward of a
        Linear layer needs its input, an activation's its result.)"""
        outputs = [x]
        with torch.no_grad():
            for i, layer in enumerate(self.layers):
                x = self._linear(i, layer, x) if isinstance(layer, _Linear) else layer.apply(x)
                outputs.append(x)
        return outputs

    def backward(self, outputs: list[torch.Tensor], grad: torch.Tensor,
                 into: Mapping[torch.Tensor, torch.Tensor] | None = None
                 ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The parameters of the Linear layers and the gradients that autograd's backward
        from the last output (given its gradient `grad`) would add to them; `outputs` is
        `forward_keeping`'s. The input (an observation batch) gets no gradient.

        `into` maps parameters to tensors of their shape (an optimizer's gradient buffers,
        `agents.gradient_step.GradientStep.buffers`) that their gradients are written into
        and returned as: the same product or sum, with its output given, which also saves
        allocating the output, and the caller's copy.

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
                    # (Into a row-major tensor where autograd's output is one too.)
                    out = self._out("grad", i, grad, *grad.shape) if grad.is_contiguous() \
                        else None
                    grad = (ACTIVATION_BACKWARD[layer.function](grad, outputs[i + 1])
                            if out is None else
                            ACTIVATION_BACKWARD_INTO[layer.function](grad, outputs[i + 1], out))
                    continue
                params.append(layer.weight)
                out = None if into is None else into.get(layer.weight)
                if not _column_major(layer.weight_t):
                    grads.append(_written(x.t().mm(grad).t(), out))
                elif out is None:
                    grads.append(grad.t().mm(x))
                else:
                    grads.append(torch.mm(grad.t(), x, out=out))
                if layer.bias is not None:
                    params.append(layer.bias)
                    out = None if into is None else into.get(layer.bias)
                    grads.append(grad.sum(0) if out is None else torch.sum(grad, 0, out=out))
                if i == 0:
                    break
                if _column_major(x):  # a column-major gradient, as autograd's
                    grad = layer.weight_t.mm(grad.t()).t()
                else:
                    out = self._out("grad", i, grad, grad.shape[0], layer.weight.shape[1])
                    grad = grad.mm(layer.weight) if out is None else torch.mm(
                        grad, layer.weight, out=out)
        return params, grads


def _written(value: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
    """`value`, copied into `out` where it is given (a copy keeps every bit)."""
    return value if out is None else out.copy_(value)


def _linear(layer: _Linear, x: torch.Tensor) -> torch.Tensor:
    if layer.bias is None:
        return torch.mm(x, layer.weight_t)
    return torch.addmm(layer.bias, x, layer.weight_t)


def _column_major(matrix: torch.Tensor) -> bool:
    """The layout test of autograd's ``mm_mat1_backward`` and ``mm_mat2_backward``."""
    return matrix.stride(0) == 1 and matrix.stride(1) == matrix.size(0)
