"""Deep belief network classifier (Hinton, Osindero & Teh, 2006; Hinton & Salakhutdinov,
2006): RBMs pretrained greedily, layer by layer, whose weights then initialize a feed-forward
classifier that is fine-tuned by backpropagation. The model is `generative.dbn_model`'s
`DeepBeliefNet`; `generative.dbn_sklearn` wraps the same model for scikit-learn.

**How --epochs counts.** Every pass over the training split is one epoch, in both phases,
and one train_step does one of them:

1. pretraining, the first ``P = len(hidden) * rbm_epochs`` epochs: RBM i is trained by CD-k
   for `rbm_epochs` epochs (layer 0's first, then layer 1's, ...) on the hidden
   probabilities p(h | v) of the trained RBMs below it. The first RBM's Bernoulli visibles
   take the grey levels in [0, 1] as probabilities (no binarization). Each RBM starts with
   the guide's visible biases log(p_i / (1 - p_i)) of its own training data, and learns
   with SGD, momentum 0.5 for 5 epochs then 0.9, and L2 weight decay `weight_decay_rbm`
   on its weights (`LayerPretraining`); with the batch means over B rows
   v0 (data), p0 = p(h | v0), vk (the chain's visible probabilities after k steps) and
   pk = p(h | vk), CD-k ascends dW = v0^T p0 / B - vk^T pk / B (db and dc likewise).
   When the last pretraining epoch ends, the Linear layers take the RBMs' weights:
   layer i computes c_i + x W_i (`DeepBeliefNet.initialize_from_rbms`, called once);
2. fine-tuning, the remaining epochs: plain minibatch SGD at `lr` on the cross-entropy
   -log softmax(f(x))_y of the network x -> act(c_0 + x W_0) -> dropout -> ... -> head,
   the head a fresh Linear layer onto the classes.

So ``--epochs 120`` with the defaults (two layers, 10 RBM epochs each) is 20 pretraining
epochs and 100 of fine-tuning; a budget of P epochs or fewer never fine-tunes (the summary
says so), and ``rbm_epochs=0`` skips pretraining: the network keeps its random
initialization, the baseline that shows what pretraining is worth.

Metrics: ``losses/recon_error`` (the CD reconstructions' squared error per image, summed
over the units of the layer's visibles), ``charts/layer`` while pretraining;
``losses/loss`` (cross-entropy) and ``charts/train_accuracy`` while fine-tuning;
``charts/phase`` (0: pretraining, 1: fine-tuning) always. Evaluations (the validation split;
the test split at the end) report ``eval/accuracy``, ``eval/loss`` (cross-entropy in nats
per image, which picks best.pt; before fine-tuning it is that of an untrained head) and
``eval/recon_error``, the first RBM's mean-field reconstruction error
|v - E[v | p(h | v)]|^2 per image. The first RBM's filters (its weights into each hidden
unit, each scaled to [0, 1]) are logged as an image grid.

A checkpoint holds the network (RBMs, Linear layers, head), the fine-tuning optimizer, the
layer in progress's `LayerPretraining` state (its momentum buffers and epoch count), the
pretraining epochs done, the data order and both generators (the trainer's, which draws
the fine-tuning batches and seeds each fine-tuning epoch's dropout masks, and pretraining's,
which orders its rows and draws its Gibbs chains): a resumed run continues bit for bit on
the CPU. The training data of RBM i > 0 is not saved: it is recomputed from the
(finished, fixed) RBMs below.

Measured on digits (CPU, one thread, seeds 0 / 1 / 2; the final evaluation, on the test
split; about 7 s a run)::

    gymkit run generative dbn --dataset digits --preset classifier --seed S

gives test accuracy 0.967 / 0.972 / 0.967 and cross-entropy 0.107 / 0.145 / 0.120; without
pretraining (``--set rbm_epochs=0 --epochs 100``) 0.961 / 0.972 / 0.961 and 0.173 / 0.150 /
0.185. ``--preset sigmoid-classic``: 0.961 / 0.961 / 0.956 (0.131 / 0.188 / 0.170), without
pretraining 0.956 / 0.972 / 0.956 (0.210 / 0.161 / 0.210). Pretraining matters most early:
after 10 fine-tuning epochs the sigmoid network is at 0.950 / 0.961 / 0.950 validation
accuracy pretrained and 0.244 / 0.244 / 0.283 from a random initialization
(`tests/test_dbn_plugin.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch.nn import functional as F

from generative.dbn_model import DeepBeliefNet, LayerPretraining, set_data_visible_bias
from generative.image_trainer import ImageTrainer
from generative.rbm_model import RBM
from toolkit.config import TrainerConfig, check_range, check_sizes, param
from toolkit.data import Dataset
from toolkit.denormals import flush_denormals
from toolkit.errors import ConfigError, GymkitError
from toolkit.images import image_grid
from toolkit.seeding import global_rng_from
from toolkit.trainer import TrainerContext

#: Filters of the first RBM drawn in the logged image, at most.
FILTERS_SHOWN = 100
#: Images per forward pass in evaluations.
EVAL_CHUNK = 1000
#: The activations a fine-tuned layer may use.
ACTIVATIONS = ("relu", "sigmoid")


@dataclass
class DBNConfig(TrainerConfig):
    hidden: list[int] = param([256, 256], "sizes of the RBM stack's hidden layers (and of the "
                                          "classifier's hidden layers they initialize)")
    lr_rbm: float = param(0.05, "RBM learning rate (of the batch-mean CD gradient, momentum "
                                "0.5 for 5 epochs then 0.9)")
    lr: float = param(0.1, "fine-tuning learning rate (plain SGD on the cross-entropy)")
    rbm_epochs: int = param(10, "pretraining epochs per RBM layer; --epochs counts them: the "
                                "first len(hidden) * rbm_epochs epochs pretrain, the rest "
                                "fine-tune (0: no pretraining, random initialization)")
    k: int = param(1, "Gibbs steps per CD-k gradient estimate")
    batch_size: int = param(32, "rows per update, in pretraining and fine-tuning")
    activation: str = param("relu", "activation of the fine-tuned hidden layers: relu, or "
                                    "sigmoid (the RBMs' own units)")
    dropout: float = param(0.2, "dropout probability after each hidden layer while "
                                "fine-tuning")
    weight_decay_rbm: float = param(0.0, "L2 weight decay on the RBMs' weights (not biases)")

    def validate(self) -> None:
        check_sizes(self, "hidden", allow_empty=False)
        check_range(self, "lr_rbm", 0, low_open=True)
        check_range(self, "lr", 0, low_open=True)
        check_range(self, "rbm_epochs", 0)
        check_range(self, "k", 1)
        check_range(self, "batch_size", 1)
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"activation must be one of {', '.join(ACTIVATIONS)}, got "
                              f"{self.activation!r}")
        check_range(self, "dropout", 0, 1, high_open=True)
        check_range(self, "weight_decay_rbm", 0)

    def pretraining_epochs(self) -> int:
        """P = len(hidden) * rbm_epochs: the epochs of the budget spent pretraining."""
        return len(self.hidden) * self.rbm_epochs


#: The textbook's settings (the `deep-belief-network` package's classifier example, as in
#: `generative.dbn_sklearn.PRESETS["classifier"]`): 100 backpropagation epochs after
#: 2 x 10 RBM epochs.
_CLASSIFIER: dict[str, Any] = {"hidden": [256, 256], "lr_rbm": 0.05, "lr": 0.1,
                               "rbm_epochs": 10, "k": 1, "batch_size": 32,
                               "activation": "relu", "dropout": 0.2, "epochs": 2 * 10 + 100}


class DBNTrainer(ImageTrainer):
    """Deep belief network: greedy RBM pretraining, then a fine-tuned classifier."""

    Config = DBNConfig
    cfg: DBNConfig
    model: DeepBeliefNet
    # One train_step is one whole epoch of either phase: a pretraining epoch cannot stop
    # part-way, so the budget is in epochs only.
    budget_units: ClassVar[tuple[str, ...]] = ("epochs",)
    default_budget: ClassVar[tuple[str, int]] = ("epochs", _CLASSIFIER["epochs"])
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "classifier": _CLASSIFIER,
        # The same with sigmoid units and a larger fine-tuning rate: the network in which
        # pretraining was first shown to matter (compare with --set rbm_epochs=0).
        "sigmoid-classic": {**_CLASSIFIER, "activation": "sigmoid", "lr": 1.0},
    }

    def __init__(self, cfg: DBNConfig, source: Dataset, ctx: TrainerContext) -> None:
        super().__init__(cfg, source, ctx, name="dbn", batch_size=cfg.batch_size)
        if self.train_y is None or source.classes is None:
            raise GymkitError(f"dbn fine-tunes a classifier, so it needs labelled images, and "
                              f"{source.name} has no labels; pick a labelled --dataset "
                              "(digits, mnist, ...)")
        self.train_labels: torch.Tensor = self.train_y
        self.classes = source.classes
        self.train_v = self.train_x.flatten(1)
        # The RBMs' initial weights N(0, 0.01^2) from the run's generator; the Linear layers
        # and the head from torch's global RNG, which the launcher seeds.
        self.model = DeepBeliefNet(self.train_v.shape[1], cfg.hidden, self.classes,
                                   activation=cfg.activation, dropout=cfg.dropout,
                                   generator=self.generator).to(self.device)
        parameters = [*self.model.layers.parameters()]
        assert self.model.head is not None
        parameters += [*self.model.head.parameters()]
        self.optimizer = torch.optim.SGD(parameters, lr=cfg.lr)
        #: Pretraining's draws (the rows' order and the Gibbs chains) on the device, as
        #: contrastive divergence draws them there.
        self.sampler = torch.Generator(device=self.device).manual_seed(ctx.seed + 1)
        #: Pretraining epochs done, 0 ... P; fine-tuning epochs are `shuffled.epochs`.
        self.pretrained = 0
        #: The RBM being pretrained and its optimizer; None between layers and after.
        self.pretraining: LayerPretraining | None = None
        #: (layer, that layer's training data), recomputed from the net when needed.
        self._layer_data: tuple[int, torch.Tensor] | None = None

    # -- phases and counters ----------------------------------------------------------

    @property
    def pretraining_epochs(self) -> int:
        """P: the first P epochs of the budget pretrain."""
        return self.cfg.pretraining_epochs()

    @property
    def phase(self) -> str:
        return "pretraining" if self.pretrained < self.pretraining_epochs else "fine-tuning"

    @property
    def layer(self) -> int:
        """The RBM the next pretraining epoch trains (len(hidden) once pretraining is done)."""
        if self.cfg.rbm_epochs == 0:
            return len(self.cfg.hidden)
        return self.pretrained // self.cfg.rbm_epochs

    def progress(self) -> dict[str, int]:
        return {"epochs": self.pretrained + self.shuffled.epochs, "steps": self.steps}

    def layer_data(self, layer: int) -> torch.Tensor:
        """What RBM `layer` is trained on: the images as rows (layer 0), or the hidden
        probabilities of the RBMs below."""
        if self._layer_data is None or self._layer_data[0] != layer:
            self._layer_data = (layer, self.model.up(self.train_v, layer))
        return self._layer_data[1]

    # -- training ---------------------------------------------------------------------

    def train_step(self) -> dict[str, float]:
        """One epoch: of pretraining while its P epochs last, then of fine-tuning."""
        if self.phase == "pretraining":
            return self._pretraining_epoch()
        return self._fine_tuning_epoch()

    def _pretraining_epoch(self) -> dict[str, float]:
        cfg, layer = self.cfg, self.layer
        data = self.layer_data(layer)
        if self.pretraining is None:  # the layer's first epoch
            rbm = self.model.rbms[layer]
            assert isinstance(rbm, RBM)
            set_data_visible_bias(rbm, data)
            self.pretraining = LayerPretraining(rbm, lr=cfg.lr_rbm, k=cfg.k,
                                                weight_decay=cfg.weight_decay_rbm)
        with flush_denormals(self.device):
            error = self.pretraining.epoch(data, cfg.batch_size, self.sampler)
        self.pretrained += 1
        self.steps += self.shuffled.batches_per_epoch
        if self.pretraining.epochs == cfg.rbm_epochs:  # the layer is done
            self.pretraining = None
            if self.pretrained == self.pretraining_epochs:
                self._layer_data = None
                self.model.initialize_from_rbms()
        return {"losses/recon_error": error, "charts/layer": float(layer),
                "charts/phase": 0.0}

    def _fine_tuning_epoch(self) -> dict[str, float]:
        model = self.model
        model.train()
        with global_rng_from(self.generator, self.device):
            for index in self.batches():
                logits = model(self.train_x[index])
                labels = self.train_labels[index]
                loss = F.cross_entropy(logits, labels)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                accuracy = (logits.argmax(1) == labels).float().mean()
                self.accumulate(torch.stack([loss.detach(), accuracy]))
        means = self.means()
        if means is None:
            return {}
        loss_value, accuracy_value = means
        return {"losses/loss": loss_value, "charts/train_accuracy": accuracy_value,
                "charts/phase": 1.0}

    # -- evaluation -------------------------------------------------------------------

    @torch.no_grad()
    def predictions(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (dropout off) and labels of a split."""
        x, y = self.eval_data(split)
        assert y is not None
        self.model.eval()
        try:
            logits = torch.cat([self.model(chunk) for chunk in x.split(EVAL_CHUNK)])
        finally:
            self.model.train()
        return logits, y

    @torch.no_grad()
    def evaluate(self, episodes: int, seed: int) -> dict[str, float]:
        split = self.eval_split(seed)
        logits, y = self.predictions(split)
        v = self.eval_data(split)[0].flatten(1)
        first = self.model.rbms[0]
        assert isinstance(first, RBM)
        recon = first.visible_mean(first.hidden_probabilities(v))
        return {"eval/accuracy": float((logits.argmax(1) == y).float().mean()),
                "eval/loss": float(F.cross_entropy(logits, y)),
                "eval/recon_error": float((v - recon).pow(2).sum(1).mean())}

    @torch.no_grad()
    def images(self) -> dict[str, np.ndarray]:
        """The first RBM's filters W[:, j], each scaled to [0, 1], as images."""
        first = self.model.rbms[0]
        assert isinstance(first, RBM)
        filters = first.weight.t()[:FILTERS_SHOWN]
        low = filters.min(1, keepdim=True).values
        span = (filters.max(1, keepdim=True).values - low).clamp_min(1e-12)
        pictures = ((filters - low) / span).view(-1, *self.dataset.shape).cpu().numpy()
        return {"samples/filters": image_grid(pictures, columns=10, scale=self.image_scale)}

    # -- state ------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "pretrained": self.pretrained,
                "layer": None if self.pretraining is None else self.pretraining.state_dict(),
                "sampler": self.sampler.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        pretrained = int(state["pretrained"])
        if pretrained > self.pretraining_epochs:
            raise GymkitError(f"this checkpoint has {pretrained} pretraining epochs done, more "
                              f"than this config's {self.pretraining_epochs}; resume it with "
                              "the config it was trained with")
        self.pretrained = pretrained
        self._layer_data = None
        self.pretraining = None
        if state["layer"] is not None:
            if self.phase != "pretraining":
                raise GymkitError("this checkpoint holds an RBM in training after pretraining "
                                  "ended; resume it with the config it was trained with")
            rbm = self.model.rbms[self.layer]
            assert isinstance(rbm, RBM)
            self.pretraining = LayerPretraining(rbm, lr=self.cfg.lr_rbm, k=self.cfg.k,
                                                weight_decay=self.cfg.weight_decay_rbm)
            self.pretraining.load_state_dict(state["layer"])
        self.sampler.set_state(state["sampler"])

    # -- the rest of the interface ----------------------------------------------------

    def networks(self) -> dict[str, tuple[Any, tuple[Any, ...]]]:
        return {"dbn": (self.model, (self.train_x[:1],))}

    def budget_warning(self) -> str | None:
        """Why fine-tuning never starts under this budget, or None when it does."""
        budget, total = self.ctx.budget.amount, self.pretraining_epochs
        if budget > total:
            return None
        return (f"fine-tuning never starts: the budget of {budget} epochs is spent on "
                f"pretraining ({len(self.cfg.hidden)} layers x rbm_epochs "
                f"{self.cfg.rbm_epochs} = {total} epochs), so the classifier is untrained; "
                f"give --epochs more than {total}")

    def summary(self) -> dict[str, Any]:
        facts: dict[str, Any] = {
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "pretraining_epochs": self.pretraining_epochs,
            "fine_tuning_epochs": max(0, self.ctx.budget.amount - self.pretraining_epochs)}
        warning = self.budget_warning()
        if warning is not None:
            facts["warning"] = warning
        return facts

    def panels(self) -> list[tuple[str, str]]:
        warning = self.budget_warning()
        return [] if warning is None else [("warning", warning)]
