"""A deep belief network (Hinton, Osindero & Teh, 2006; Hinton & Salakhutdinov, 2006): a
stack of RBMs pretrained greedily, layer by layer, each on the hidden probabilities of the
one below, whose weights then initialize a feed-forward network that is fine-tuned by
backpropagation, or whose top hidden probabilities serve as features.

`DeepBeliefNet` holds both: ``rbms[i]`` (visible x hidden weights W_i, biases b_i, c_i) and
``layers[i]``, a Linear layer that computes c_i + x W_i once `initialize_from_rbms` has
copied the pretrained weights into it, then an activation and dropout; a Linear ``head``
maps the top layer to the outputs (class logits or regression targets). `LayerPretraining`
trains one RBM by CD-k with the guide's momentum and weight decay; `pretrain` runs them all.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import pairwise

import torch
from torch import nn

from generative.rbm_model import RBM, contrastive_divergence, data_visible_bias
from toolkit.nets.mlp import activation_class


class DeepBeliefNet(nn.Module):
    """RBMs of sizes ``visible -> hidden[0] -> hidden[1] ...`` and the network they
    initialize, with `outputs` outputs (0: no head, features only). The first RBM has
    unit-variance Gaussian visibles with ``gaussian_visible`` (for standardized real data),
    Bernoulli ones otherwise (data in [0, 1], read as probabilities); the RBMs above take
    hidden probabilities, in [0, 1]."""

    def __init__(self, visible: int, hidden: Sequence[int], outputs: int, *,
                 gaussian_visible: bool = False, activation: str = "sigmoid",
                 dropout: float = 0.0, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if not hidden:
            raise ValueError("a deep belief network needs at least one hidden layer")
        sizes = [visible, *hidden]
        self.rbms = nn.ModuleList(
            RBM(below, above, gaussian=gaussian_visible and i == 0, generator=generator)
            for i, (below, above) in enumerate(pairwise(sizes)))
        self.layers = nn.ModuleList(nn.Linear(below, above)
                                    for below, above in pairwise(sizes))
        self.activation = activation_class(activation)()
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(sizes[-1], outputs) if outputs > 0 else None

    @torch.no_grad()
    def initialize_from_rbms(self) -> None:
        """Each Linear layer takes its RBM's weights (transposed) and hidden biases."""
        for rbm, layer in zip(self.rbms, self.layers, strict=True):
            assert isinstance(rbm, RBM) and isinstance(layer, nn.Linear)
            layer.weight.copy_(rbm.weight.t())
            layer.bias.copy_(rbm.hidden_bias)

    @torch.no_grad()
    def up(self, x: torch.Tensor, layers: int | None = None) -> torch.Tensor:
        """The hidden probabilities of RBM ``layers - 1`` (all: the top), each RBM taking
        the probabilities of the one below: the unsupervised features, and the data each
        layer is pretrained on."""
        for rbm in list(self.rbms)[:layers]:
            assert isinstance(rbm, RBM)
            x = rbm.hidden_probabilities(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The fine-tuned network: outputs (logits or targets), or the top layer's
        activations when there is no head."""
        x = x.flatten(1)
        for layer in self.layers:
            x = self.dropout(self.activation(layer(x)))
        return x if self.head is None else self.head(x)


class LayerPretraining:
    """CD-k training of one RBM, an epoch at a time, with the guide's SGD: momentum
    `momentum_start` for the first `switch_epochs` epochs and `momentum_end` after, L2
    weight decay on the weights only. (torch's SGD buffer u = mu u + g + wd W and step
    -lr u are the guide's increment while lr is constant.)"""

    def __init__(self, rbm: RBM, *, lr: float, k: int = 1, weight_decay: float = 0.0,
                 momentum_start: float = 0.5, momentum_end: float = 0.9,
                 switch_epochs: int = 5) -> None:
        self.rbm, self.k = rbm, k
        self.momentum_start, self.momentum_end = momentum_start, momentum_end
        self.switch_epochs = switch_epochs
        self.epochs = 0
        self.optimizer = torch.optim.SGD(
            [{"params": [rbm.weight], "weight_decay": weight_decay},
             {"params": [rbm.visible_bias, rbm.hidden_bias], "weight_decay": 0.0}],
            lr=lr, momentum=momentum_start)

    @torch.no_grad()
    def epoch(self, data: torch.Tensor, batch_size: int, generator: torch.Generator) -> float:
        """One pass over `data` (rows in a fresh order drawn with `generator`); returns the
        mean squared reconstruction error per row."""
        momentum = self.momentum_start if self.epochs < self.switch_epochs else self.momentum_end
        for group in self.optimizer.param_groups:
            group["momentum"] = momentum
        total, rows = torch.zeros((), device=data.device), 0
        for batch in _shuffled(data, batch_size, generator):
            estimate = contrastive_divergence(self.rbm, batch, self.k, generator)
            assert estimate.reconstruction is not None  # CD-k always reconstructs
            for name, parameter in self.rbm.named_parameters():
                parameter.grad = -estimate.gradient[name]  # SGD descends; CD ascends
            self.optimizer.step()
            total += (batch - estimate.reconstruction).pow(2).sum()
            rows += len(batch)
        self.epochs += 1
        return float(total) / max(rows, 1)

    def state_dict(self) -> dict[str, object]:
        return {"optimizer": self.optimizer.state_dict(), "epochs": self.epochs}

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])  # type: ignore[arg-type]
        self.epochs = int(state["epochs"])  # type: ignore[call-overload]


def _shuffled(data: torch.Tensor, batch_size: int, generator: torch.Generator
              ) -> Iterator[torch.Tensor]:
    # Drawn on the generator's device: contrastive divergence draws with the same generator
    # on the data's device, so on a GPU it is a CUDA generator (on the CPU: the same bits).
    order = torch.randperm(len(data), generator=generator, device=generator.device
                           ).to(data.device)
    for start in range(0, len(data), batch_size):
        yield data[order[start:start + batch_size]]


def set_data_visible_bias(rbm: RBM, data: torch.Tensor) -> None:
    """The guide's initial visible biases log(p / (1 - p)) for Bernoulli visibles (Gaussian
    ones on standardized data keep 0)."""
    if not rbm.gaussian:
        with torch.no_grad():
            rbm.visible_bias.copy_(data_visible_bias(data))


def pretrain(net: DeepBeliefNet, data: torch.Tensor, *, epochs: int, lr: float,
             batch_size: int, generator: torch.Generator, k: int = 1,
             weight_decay: float = 0.0) -> list[list[float]]:
    """Greedy layer-wise pretraining: each RBM for `epochs` epochs on the hidden
    probabilities of the (trained) ones below; then the Linear layers take the weights.
    With 0 epochs nothing is trained and the Linear layers keep their own (random)
    initialization: the same network without pretraining. Returns each layer's
    reconstruction error per epoch."""
    errors: list[list[float]] = []
    if epochs == 0:
        return errors
    x = data.flatten(1)
    for rbm in net.rbms:
        assert isinstance(rbm, RBM)
        set_data_visible_bias(rbm, x)
        layer = LayerPretraining(rbm, lr=lr, k=k, weight_decay=weight_decay)
        errors.append([layer.epoch(x, batch_size, generator) for _ in range(epochs)])
        x = rbm.hidden_probabilities(x)
    net.initialize_from_rbms()
    return errors
