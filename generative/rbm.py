"""Restricted Boltzmann machine trained by contrastive divergence (Hinton, 2002) or persistent
contrastive divergence (Tieleman, 2008), following Hinton's "A practical guide to training
restricted Boltzmann machines" (2010). The model and the gradient estimate are in
`generative.rbm_model`, the partition function in `generative.ais`.

Visibles are binary (``visible=bernoulli``; grey images are binarized, by default with a
fresh draw per batch, while evaluations use one fixed draw) or Gaussian of unit variance
(``visible=gaussian``): then every pixel is standardized to mean 0 and variance 1 over the
training split (dividing by at least `MIN_STD`, 0.1: a pixel that hardly varies is not
blown up), the model is fit to the standardized data, and its densities are densities of
standardized images.

Training follows the guide: weights from N(0, 0.01^2), hidden biases 0, visible biases
log(p_i / (1 - p_i)) from the training data (binary visibles; 0 for standardized ones;
0 with ``visible_bias_init=zero``, as scikit-learn's BernoulliRBM starts), momentum
`momentum_start` for the first `momentum_switch_epochs` epochs and `momentum_end` after, L2
weight decay on the weights only, and optionally a sparsity target for the mean activity
of each hidden unit. One train_step is one epoch (or what is left of a budget in
steps).

Evaluations (validation split; the test split at the end and in ``gymkit eval``), per image:

- ``eval/recon_error``: |v - E[v | p(h | v)]|^2, the squared error of a mean-field
  reconstruction (the guide's diagnostic, not a likelihood);
- ``eval/pseudo_ll`` (binary visibles): scikit-learn's ``BernoulliRBM.score_samples``,
  V log sigmoid(F(v~) - F(v)) with v~ the image with one randomly chosen pixel flipped (the
  pixels are drawn from the evaluation's seed, so every periodic evaluation flips the same
  ones): comparable with scikit-learn, but noisy (one pixel stands for all V);
- ``eval/pseudo_ll_full`` (binary visibles): its expectation over the flipped pixel, the
  pseudo-log-likelihood sum_i log p(v_i | v_-i) itself, with every pixel flipped in turn,
  on the first `FULL_PLL_IMAGES` (1,000) images of the split;
- ``eval/ais_ll_short`` (binary visibles): the average log-likelihood mean(-F(v)) - log Z
  with log Z from a short AIS (`select_ais_runs` = 64 runs over `select_ais_betas` = 500
  betas, the same draws at every evaluation of the run). ``eval/loss``, which picks
  best.pt, is its negative; with ``select_ais_runs=0``, that of ``eval/pseudo_ll_full``;
  for Gaussian visibles, the reconstruction error. Why AIS and not the pseudo-likelihood:
  the pseudo-likelihood does not follow the likelihood. With ``--set hidden=500 --set
  batch_size=64`` on MNIST it rose at every epoch (-88.5 after the first, -77.1 after the
  fifth), while the log-likelihood by a long AIS (200 runs, 5,000 betas) was highest after
  the second epoch (-116.5) and fell after it (-120.0 after the fifth); the short AIS
  picked the second epoch too (-116.3; within about 1 nat of the long one on MNIST, 0.02
  on digits). It costs about 1.5 s per evaluation of that model on one core, 0.1 s on
  digits;
- ``eval/free_energy`` and ``eval/free_energy_gap``: the mean F(v) of the split, and that
  minus the mean F(v) of as many training images (a widening gap means overfitting, the
  guide's section 6);
- with ``ais_runs = R > 0`` (``gymkit eval RUN --ais-runs R --ais-betas M``): log Z by
  annealed importance sampling over M linear betas (``eval/ais_log_z`` within
  [``eval/ais_log_z_low``, ``eval/ais_log_z_high``]), and the average log-likelihood
  ``eval/ais_ll`` = mean(-F(v)) - log Z within [``eval/ais_ll_low``, ``eval/ais_ll_high``].
  Where the importance weights' spread exceeds their mean (few runs), the interval's lower
  end for Z is 0: then ``eval/ais_log_z_low`` and ``eval/ais_ll_high`` are left out rather
  than reported as infinite.

Missing values (masked mode). Samples may also be flat vectors ``(V,)`` in [0, 1] with NaN
where a value is missing, as ``--dataset movielens`` holds users' ratings (rating / 5; NaN
where the user did not rate the movie). Then each user is an RBM over the movies they rated,
all users sharing W, b and c (Salakhutdinov, Mnih & Hinton, 2007, here with one Bernoulli
unit per movie, the scaled rating its probability): ``contrastive_divergence(..., mask=m)``
drives the hiddens by the rated units only and masks both phases' visible statistics, so an
unrated movie's weights do not move for that user. The rule: data with NaN need
``binarize=none`` (the ratings are the Bernoulli probabilities, grey levels allowed; without
NaN, binarize=none still needs 0/1 data), ``visible=bernoulli``, ``persistent=false`` (a
fantasy chain has no user's mask) and ``ais_runs=0``; ``--preset recommender`` is Hinton's
textbook recommender (20 hidden units, CD-1, learning rate 0.6, batches of 100, 15 epochs).
Its evaluations (on the 1-5 star scale, MAX_STARS times the values):

- ``eval/rmse``: for each user of the split, a fixed share `HELD_OUT_FRACTION` (20%,
  round(0.2 n) of their n ratings, chosen by a draw from `HELD_OUT_SEED`, the same in every
  run and evaluation) is hidden, the rest is fed in, and each hidden rating r_ui is
  predicted as 5 E[v_i | p(h | v_observed)] = 5 sigmoid(b_i + W[i] . p(h | v_observed));
  ``eval/rmse`` = sqrt(mean over the hidden ratings of (prediction - r_ui)^2), and
  ``eval/loss`` (which picks best.pt) is it;
- ``eval/rmse_baseline``: the same for predicting each movie's mean training rating (the
  mean of all training ratings for a movie no training user rated): the bar to beat;
- ``eval/recon_error``: the reconstruction error over the fed-in ratings only.

The pseudo-likelihood, free energies and AIS are left out for masked data: F(v) of a vector
with missing units is not a likelihood of the observed ones. Nor are there images: the
logged images are the weight histograms, and ``gymkit sample`` refuses; ``gymkit recommend
RUN --user ID`` ranks a user's unrated movies by `RBMTrainer.predict_ratings`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from generative.ais import ais_log_partition, linear_betas
from generative.image_trainer import ImageTrainer
from generative.rbm_model import (
    RBM,
    CDEstimate,
    bernoulli,
    contrastive_divergence,
    data_visible_bias,
    full_pseudo_log_likelihood,
    pseudo_log_likelihood,
    sparsity_gradient,
)
from toolkit.config import TrainerConfig, check_range, param
from toolkit.data import Dataset
from toolkit.data.loader import binarized, binarized_for_evaluation
from toolkit.data.movielens import MAX_STARS
from toolkit.errors import ConfigError, GymkitError
from toolkit.images import image_grid
from toolkit.trainer import TrainerContext

#: Offset from the run's seed of the short AIS that picks best.pt: its draws are the same
#: at every evaluation of a run.
SELECT_AIS_SEED = 4_000_037
#: Rows of each batch whose reconstruction error PCD logs (CD-k has every row's for free;
#: PCD would pay a matrix product of the whole batch for a diagnostic).
PCD_RECON_ROWS = 16
#: The Gibbs chains drawn in the logged images: how many, and after how many steps.
CHAINS_SHOWN = 8
#: Filters drawn in the logged image, at most.
FILTERS_SHOWN = 100
#: eval/pseudo_ll_full scores the first this many images of a split: it costs V times a free
#: energy per image (MNIST with 500 hidden units: 5 s per 1,000 images on one CPU thread).
FULL_PLL_IMAGES = 1000
#: Gaussian visibles: the least standard deviation a pixel is divided by (on the [0, 1]
#: scale), so that a rare stroke in a pixel that hardly varies in the training split does not
#: become an outlier of dozens of standard deviations.
MIN_STD = 0.1
#: Masked data: the share of each evaluation user's ratings hidden and predicted, and the
#: seed of the draw that picks them (fixed: every run and evaluation hides the same ones).
HELD_OUT_FRACTION = 0.2
HELD_OUT_SEED = 20_070_620
#: The optimizer's settings beyond the guide's: see `RBMTrainer.__init__`.
SGD_FLAGS: dict[str, Any] = {"maximize": True, "fused": True, "foreach": None}


@dataclass
class RBMConfig(TrainerConfig):
    visible: str = param("bernoulli", "visible units: bernoulli (binary pixels) or gaussian "
                                      "(unit variance, on per-pixel standardized data)")
    hidden: int = param(100, "number of hidden units")
    k: int = param(1, "Gibbs steps per gradient estimate (CD-k, PCD-k)")
    persistent: bool = param(False, "persistent contrastive divergence: keep batch_size "
                                    "fantasy chains across updates (PCD-k) instead of "
                                    "starting at the data (CD-k)")
    lr: float = param(0.05, "learning rate (of the batch-mean gradient)")
    visible_bias_init: str = param("data", "initial visible biases: data (the guide's "
                                           "log(p / (1 - p)) of each unit's training mean; "
                                           "Gaussian visibles: the mean) or zero (scikit-"
                                           "learn's BernoulliRBM)")
    lr_schedule: str = param("linear", "constant, or linear: decayed linearly to 0 over the "
                                         "budget (Tieleman's PCD; the final model is then "
                                         "not one point of an oscillation)")
    batch_size: int = param(20, "images per update")
    momentum_start: float = param(0.5, "momentum for the first momentum_switch_epochs epochs")
    momentum_end: float = param(0.9, "momentum after them")
    momentum_switch_epochs: int = param(5, "epochs at momentum_start (Hinton's guide: 5)")
    weight_decay: float = param(2e-4, "L2 weight decay on the weights (not the biases)")
    sparsity_target: float = param(0.0, "desired mean activity of each hidden unit (0: no "
                                        "sparsity penalty)")
    sparsity_cost: float = param(0.1, "weight of the sparsity penalty")
    sparsity_decay: float = param(0.95, "decay of the running estimate of each hidden unit's "
                                        "mean activity")
    binarize: str = param("dynamic", "binary visibles on grey images: dynamic (a fresh draw "
                                     "per batch; evaluations use one fixed draw), threshold "
                                     "(0.5), or none (the data must be binary)")
    sample_steps: int = param(1000, "Gibbs steps from noise to a sample (gymkit sample, and "
                                    "the logged chains)")
    ais_runs: int = param(0, "AIS runs for eval/ais_ll in evaluations (0: none; gymkit eval "
                             "--ais-runs R sets it)")
    ais_betas: int = param(10_000, "inverse temperatures of AIS, linear from 0 to 1 (gymkit "
                                   "eval --ais-betas M sets it)")
    select_ais_runs: int = param(64, "runs of the short AIS in every evaluation whose "
                                     "log-likelihood picks best.pt (eval/ais_ll_short; 0: the "
                                     "pseudo-likelihood picks it)")
    select_ais_betas: int = param(500, "inverse temperatures of that short AIS")

    def validate(self) -> None:
        for key, options in (("visible", ("bernoulli", "gaussian")),
                             ("binarize", ("dynamic", "threshold", "none")),
                             ("lr_schedule", ("constant", "linear")),
                             ("visible_bias_init", ("data", "zero"))):
            if getattr(self, key) not in options:
                raise ConfigError(f"{key} must be one of {', '.join(options)}, got "
                                  f"{getattr(self, key)!r}")
        check_range(self, "hidden", 1)
        check_range(self, "k", 1)
        check_range(self, "lr", 0, low_open=True)
        check_range(self, "batch_size", 1)
        check_range(self, "momentum_start", 0, 1, high_open=True)
        check_range(self, "momentum_end", 0, 1, high_open=True)
        check_range(self, "momentum_switch_epochs", 0)
        check_range(self, "weight_decay", 0)
        check_range(self, "sparsity_target", 0, 1, high_open=True)
        check_range(self, "sparsity_cost", 0)
        check_range(self, "sparsity_decay", 0, 1, high_open=True)
        check_range(self, "sample_steps", 1)
        check_range(self, "ais_runs", 0)
        check_range(self, "ais_betas", 2)
        check_range(self, "select_ais_runs", 0)
        check_range(self, "select_ais_betas", 2)


class RBMTrainer(ImageTrainer):
    """Bernoulli- or Gaussian-Bernoulli RBM trained by CD-k or PCD-k."""

    Config = RBMConfig
    cfg: RBMConfig
    model: RBM
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        # Hinton & Salakhutdinov's rbm.m (Science, 2006): CD-1, learning rate 0.1, weight
        # cost 0.0002, momentum 0.5 then 0.9 after 5 epochs, batches of 100; 500 hidden
        # units as in their MNIST classifier's first layer; 50 epochs.
        "rbm-m": {"hidden": 500, "k": 1, "persistent": False, "lr": 0.1, "batch_size": 100,
                  "momentum_start": 0.5, "momentum_end": 0.9, "momentum_switch_epochs": 5,
                  "weight_decay": 2e-4, "lr_schedule": "constant", "epochs": 50},
        # scikit-learn's BernoulliRBM in its digits example: PCD-1, 100 hidden units,
        # learning rate 0.06, batches of 10, 10 epochs, no momentum, no weight decay
        # (scikit-learn trains on grey levels; here the pixels are binarized).
        "sklearn-digits": {"hidden": 100, "k": 1, "persistent": True, "lr": 0.06,
                           "batch_size": 10, "momentum_start": 0.0, "momentum_end": 0.0,
                           "weight_decay": 0.0, "lr_schedule": "constant", "epochs": 10},
        # The textbook recommender on MovieLens ratings (--dataset movielens): 20 hidden
        # units, CD-1, learning rate 0.6, batches of 100, 15 epochs, no momentum or weight
        # decay; the scaled ratings are the visibles' probabilities, unrated movies masked.
        "recommender": {"hidden": 20, "k": 1, "persistent": False, "lr": 0.6,
                        "batch_size": 100, "momentum_start": 0.0, "momentum_end": 0.0,
                        "weight_decay": 0.0, "lr_schedule": "constant", "binarize": "none",
                        "epochs": 15},
    }

    def __init__(self, cfg: RBMConfig, source: Dataset, ctx: TrainerContext) -> None:
        super().__init__(cfg, source, ctx, name="rbm", batch_size=cfg.batch_size, vectors=True)
        self.gaussian = cfg.visible == "gaussian"
        flat = self.train_x.flatten(1)
        missing = torch.isnan(flat)
        #: Masked mode: the data have missing (NaN) values, masked out of CD and the hiddens.
        self.masked = bool(missing.any())
        #: 1 where a training value is observed, 0 where missing (masked mode), else None.
        self.train_mask: torch.Tensor | None = None
        #: The visible biases of the base-rate model (binary visibles), else None.
        self.base_bias: torch.Tensor | None
        if not source.is_image:
            present = flat[~missing]
            if len(present) and not bool(((present >= 0) & (present <= 1)).all()):
                raise GymkitError(f"rbm needs images (C, H, W) or vectors of values in [0, 1] "
                                  f"(NaN where missing), but {source.name} holds values from "
                                  f"{float(present.min()):.3g} to {float(present.max()):.3g}; "
                                  "pick another --dataset")
        if self.masked:
            self._check_masked(source.name)
            self.train_mask = (~missing).to(flat.dtype)
            self.train_v = flat.nan_to_num(0.0)
            rated = self.train_mask.sum(0)
            overall = self.train_v.sum() / self.train_mask.sum()
            #: Each visible unit's mean observed training value (overall mean where none).
            self.unit_mean = torch.where(rated > 0, self.train_v.sum(0) / rated.clamp_min(1),
                                         overall)
            self.base_bias = data_visible_bias(self.unit_mean[None])
            visible_bias = self.base_bias.cpu()
        elif self.gaussian:
            self.data_mean = flat.mean(0)
            self.data_std = flat.std(0).clamp_min(MIN_STD)
            self.train_v = (flat - self.data_mean) / self.data_std
            self.base_bias = None
            visible_bias = self.train_v.mean(0).cpu()
        else:
            if cfg.binarize == "none" and not bool(((flat == 0) | (flat == 1)).all()):
                raise GymkitError(f"the bernoulli rbm with binarize=none needs 0/1 pixels, but "
                                  f"{source.name} holds grey levels; use --set "
                                  "binarize=dynamic or threshold, or --set visible=gaussian")
            self.train_v = flat
            expected = binarized(flat, "threshold") if cfg.binarize == "threshold" else flat
            self.base_bias = data_visible_bias(expected)
            visible_bias = self.base_bias.cpu()
        if cfg.visible_bias_init == "zero":
            visible_bias = torch.zeros_like(visible_bias)
        # Initial weights from the run's generator; the Gibbs chains' and binarization's
        # draws from a generator on the device, so that they need no copies.
        self.model = RBM(self.train_v.shape[1], cfg.hidden, gaussian=self.gaussian,
                         generator=self.generator, visible_bias=visible_bias).to(self.device)
        self.sampler = torch.Generator(device=self.device).manual_seed(ctx.seed + 1)
        # torch.optim.SGD with momentum is the guide's update: its buffer u = mu u + g + wd W
        # makes the step -lr u, and Hinton's increment Delta = mu Delta - lr (g + wd W) is
        # -lr u while lr is constant (under the linear schedule torch scales the whole buffer
        # by the current rate, Hinton only the new gradient: a difference of order 1/updates).
        # Two parameter groups put the weight decay on the weights only; `train_step` sets
        # the momentum and the learning rate per batch. CD estimates an ascent direction,
        # which the optimizer takes as the gradient with maximize (the decay still shrinks
        # the weights), in one fused kernel per step.
        model = self.model
        self.optimizer = torch.optim.SGD(
            [{"params": [model.weight], "weight_decay": cfg.weight_decay},
             {"params": [model.visible_bias, model.hidden_bias], "weight_decay": 0.0}],
            lr=cfg.lr, momentum=cfg.momentum_start, **SGD_FLAGS)
        #: PCD's fantasy particles, (batch_size, V); started from the base-rate model.
        self.chain: torch.Tensor | None = self.noise(cfg.batch_size, self.sampler) \
            if cfg.persistent else None
        #: Their hidden states, a draw from p(h | chain); None until the first update.
        self.chain_hidden: torch.Tensor | None = None
        #: The running estimate q of each hidden unit's mean activity (sparsity penalty).
        self.activity = torch.full((cfg.hidden,), cfg.sparsity_target, device=self.device)
        #: The last update of the weights (for the update/weight histogram); not saved.
        self.last_update: torch.Tensor | None = None
        self.fixed_x = self.eval_data("validation")[0][:8]

    def _check_masked(self, name: str) -> None:
        """Masked mode's rule (see the module's docstring), one line per breach."""
        cfg = self.cfg
        why = f"{name} has missing (NaN) values, which the rbm masks out"
        if cfg.visible != "bernoulli":
            raise GymkitError(f"{why}: that needs visible=bernoulli, not {cfg.visible}")
        if cfg.binarize != "none":
            raise GymkitError(f"{why}, using the values as Bernoulli probabilities: use --set "
                              f"binarize=none (not {cfg.binarize}), or --preset recommender")
        if cfg.persistent:
            raise GymkitError(f"{why}: persistent chains have no user's mask; use --set "
                              "persistent=false")
        if cfg.ais_runs:
            raise GymkitError(f"{why}: AIS and the pseudo-likelihood are not defined for "
                              "missing values; drop ais_runs (eval/rmse measures the model)")

    # -- data -------------------------------------------------------------------------

    def _train_batch(self, index: torch.Tensor) -> torch.Tensor:
        v = self.train_v.index_select(0, index)
        if not self.gaussian and self.cfg.binarize != "none":
            v = binarized(v, self.cfg.binarize, self.sampler)
        return v

    def prepare_eval(self, x: torch.Tensor) -> torch.Tensor:
        """Flat rows as the model takes them: standardized (Gaussian visibles), or binarized
        with one fixed draw (the same images in every run, and the VAE's)."""
        flat = x.flatten(1)
        if self.gaussian:
            return (flat - self.data_mean) / self.data_std
        if self.cfg.binarize == "none":
            return flat
        return binarized_for_evaluation(flat, self.cfg.binarize).to(self.device)

    def _need_images(self, what: str) -> None:
        if not self.dataset.is_image:
            hint = "; rank a user's movies with gymkit recommend" if self.masked else ""
            raise GymkitError(f"{self.dataset.name} holds vectors of shape {self.dataset.shape}, "
                              f"not images, and {what}{hint}")

    def noise(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """`n` draws from the base-rate model: the start of Gibbs chains."""
        if self.base_bias is None:
            return self.model.visible_bias.detach() + torch.randn(
                (n, self.model.visible), generator=generator, device=self.device)
        return bernoulli(torch.sigmoid(self.base_bias).to(self.device).expand(n, -1), generator)

    def to_images(self, v: torch.Tensor) -> np.ndarray:
        """Visible means as images (C, H, W) in [0, 1] (Gaussian: un-standardized)."""
        self._need_images("the rbm draws images of them")
        if self.gaussian:
            v = v * self.data_std + self.data_mean
        return v.clamp(0.0, 1.0).view(-1, *self.dataset.shape).cpu().numpy()

    # -- training ---------------------------------------------------------------------

    def momentum(self, done: int) -> float:
        """The momentum of the update after `done` updates: momentum_start in the first
        momentum_switch_epochs epochs, momentum_end after."""
        cfg = self.cfg
        early = done // self.shuffled.batches_per_epoch < cfg.momentum_switch_epochs
        return cfg.momentum_start if early else cfg.momentum_end

    def learning_rate(self, done: int) -> float:
        """The learning rate of the update after `done` updates: lr, or with the linear
        schedule lr (1 - done / total), total the budget in updates (a budget in epochs is
        epochs times the batches of an epoch)."""
        if self.cfg.lr_schedule == "constant":
            return self.cfg.lr
        budget = self.ctx.budget
        per_epoch = self.shuffled.batches_per_epoch if budget.unit == "epochs" else 1
        return self.cfg.lr * max(0.0, 1.0 - done / (budget.amount * per_epoch))

    @torch.no_grad()
    def train_step(self) -> dict[str, float]:
        """One epoch (or the rest of the budget). Logged: the mean over its batches of the
        hidden units' activity, and of the reconstruction error under CD-k (which draws
        h0 for the data anyway); under PCD-k, which draws none, the reconstruction error of
        the last batch's first `PCD_RECON_ROWS` rows, and for both the size of the last
        update relative to the weights (the guide's 1e-3 rule of thumb). Per batch, these
        two would cost a copy of the weights, their difference, two norms and, under PCD,
        a matrix product and a draw: the weights are copied before the last update only."""
        cfg, model = self.cfg, self.model
        momentum, lr = self.momentum(self.steps), self.learning_rate(self.steps)
        v0: torch.Tensor | None = None
        estimate: CDEstimate | None = None
        before: torch.Tensor | None = None  # the weights before the last update
        for index in self.batches():
            v0 = self._train_batch(index)
            # `batches` counted this update already.
            momentum, lr = self.momentum(self.steps - 1), self.learning_rate(self.steps - 1)
            for group in self.optimizer.param_groups:
                group["momentum"], group["lr"] = momentum, lr
            mask = None if self.train_mask is None else self.train_mask[index]
            estimate = contrastive_divergence(model, v0, cfg.k, self.sampler, self.chain,
                                              chain_hidden=self.chain_hidden, mask=mask)
            if cfg.persistent:
                self.chain, self.chain_hidden = estimate.chain, estimate.chain_hidden
            gradient = estimate.gradient
            if cfg.sparsity_target > 0:
                decay = cfg.sparsity_decay
                self.activity = decay * self.activity + (1 - decay) * estimate.hidden.mean(0)
                for name, term in sparsity_gradient(v0, self.activity, cfg.sparsity_target,
                                                    cfg.sparsity_cost).items():
                    gradient[name] = gradient[name] + term
            if self.ends_train_step():
                before = model.weight.clone()
            for name, parameter in model.named_parameters():
                parameter.grad = gradient[name]  # an ascent direction: the SGD maximizes
            self.optimizer.step()
            recon = torch.zeros((), device=self.device)
            if estimate.reconstruction is not None:
                error = v0 - estimate.reconstruction
                recon = (error if mask is None else error * mask).pow(2).sum(1).mean()
            self.accumulate(torch.stack([estimate.hidden.mean(), recon]))
        means = self.means()
        if means is None:
            return {}
        assert v0 is not None and estimate is not None and before is not None, \
            "a train_step has at least one batch"
        activity, recon_error = means
        if estimate.reconstruction is None:  # PCD draws no h0 for the data
            rows = v0[:PCD_RECON_ROWS]
            hidden = bernoulli(estimate.hidden[:PCD_RECON_ROWS], self.sampler)
            recon_error = float((rows - model.visible_mean(hidden)).pow(2).sum(1).mean())
        self.last_update = model.weight - before
        update_ratio = float(self.last_update.norm() / model.weight.norm().clamp_min(1e-12))
        return {"losses/recon_error": recon_error, "charts/update_ratio": update_ratio,
                "charts/hidden_activity": activity, "charts/momentum": momentum,
                "charts/lr": lr}

    # -- evaluation -------------------------------------------------------------------

    @torch.no_grad()
    def reconstruction_error(self, v: torch.Tensor) -> torch.Tensor:
        """|v - E[v | p(h | v)]|^2 per row: a mean-field reconstruction, no draws."""
        model = self.model
        return (v - model.visible_mean(model.hidden_probabilities(v))).pow(2).sum(1)

    @torch.no_grad()
    def predict_ratings(self, x: torch.Tensor) -> torch.Tensor:
        """E[v | p(h | v_observed)] = sigmoid(b + W p(h | m * v)) per row, (B, V): every
        unit's expected value given the observed (non-NaN) values of `x` (B, V) alone."""
        model = self.model
        observed = x.to(self.device).nan_to_num(0.0)  # a missing unit feeds no hidden unit
        return model.visible_mean(model.hidden_probabilities(observed))

    @torch.no_grad()
    def evaluate_masked(self, v: torch.Tensor) -> dict[str, float]:
        """eval/rmse, eval/rmse_baseline (stars) and eval/recon_error of the split `v`
        (NaN where missing) on its fixed held-out values (see the module's docstring)."""
        rated = ~torch.isnan(v)
        hidden = held_out(rated)
        if not bool(hidden.any()):
            raise GymkitError("no user of the evaluation split has 3 or more ratings, so none "
                              "can be held out to measure eval/rmse")
        fed = v.masked_fill(hidden, math.nan)
        mean = self.predict_ratings(fed)
        truth = MAX_STARS * v[hidden]
        predicted = MAX_STARS * mean[hidden]
        baseline = MAX_STARS * self.unit_mean.expand_as(v)[hidden]
        recon = (mean - v).masked_fill(~(rated & ~hidden), 0.0)
        rmse = float((predicted - truth).pow(2).mean().sqrt())
        return {"eval/rmse": rmse, "eval/loss": rmse,
                "eval/rmse_baseline": float((baseline - truth).pow(2).mean().sqrt()),
                "eval/recon_error": float(recon.pow(2).sum(1).mean())}

    @torch.no_grad()
    def evaluate(self, episodes: int, seed: int) -> dict[str, float]:
        model = self.model
        v, _ = self.eval_data(self.eval_split(seed))
        if self.masked:
            self._check_masked(self.dataset.name)  # `gymkit eval --ais-runs` sets ais_runs
            return self.evaluate_masked(v)
        train, _ = self.eval_data("train")
        generator = torch.Generator(device=self.device).manual_seed(seed)
        free_energy = model.free_energy(v)
        mean_free_energy = float(free_energy.mean())
        recon_error = float(self.reconstruction_error(v).mean())
        metrics = {"eval/recon_error": recon_error, "eval/free_energy": mean_free_energy,
                   "eval/free_energy_gap": mean_free_energy
                   - float(model.free_energy(train[:len(v)]).mean())}
        if self.gaussian:
            metrics["eval/loss"] = recon_error
        else:
            flip = torch.randint(0, model.visible, (len(v),), generator=generator,
                                 device=self.device)
            metrics["eval/pseudo_ll"] = float(pseudo_log_likelihood(model, v, flip).mean())
            full = float(full_pseudo_log_likelihood(model, v[:FULL_PLL_IMAGES]).mean())
            metrics["eval/pseudo_ll_full"] = full
            metrics["eval/loss"] = -full
            if self.cfg.select_ais_runs:
                # The same draws at every evaluation (common random numbers): the
                # estimates of two checkpoints differ by the models more than by the noise.
                draws = torch.Generator(device=self.device).manual_seed(self.seed
                                                                        + SELECT_AIS_SEED)
                short = ais_log_partition(model, self.cfg.select_ais_runs,
                                          linear_betas(self.cfg.select_ais_betas), draws,
                                          self.base_bias)
                log_p = -float(free_energy.double().mean())
                metrics["eval/ais_ll_short"] = log_p - short.log_z
                metrics["eval/loss"] = short.log_z - log_p
        if self.cfg.ais_runs:
            estimate = ais_log_partition(model, self.cfg.ais_runs,
                                         linear_betas(self.cfg.ais_betas), generator,
                                         self.base_bias)
            log_p = -float(free_energy.double().mean())
            ais = {"eval/ais_log_z": estimate.log_z, "eval/ais_log_z_low": estimate.log_z_low,
                   "eval/ais_log_z_high": estimate.log_z_high,
                   "eval/ais_ll": log_p - estimate.log_z,
                   "eval/ais_ll_low": log_p - estimate.log_z_high,
                   "eval/ais_ll_high": log_p - estimate.log_z_low}
            # Where the interval reaches Z = 0, its open ends are left out, not infinite.
            metrics.update({tag: value for tag, value in ais.items() if math.isfinite(value)})
        return metrics

    # -- images -----------------------------------------------------------------------

    @torch.no_grad()
    def chain_snapshots(self, n: int, steps: list[int], generator: torch.Generator
                        ) -> list[torch.Tensor]:
        """E[v | h] of `n` Gibbs chains from base-rate noise after each of `steps` (sorted)."""
        v = self.noise(n, generator)
        snapshots, done = [], 0
        for target in steps:
            v, mean = self.model.gibbs(v, target - done, generator)
            done = target
            snapshots.append(mean)
        return snapshots

    def sample(self, n: int, seed: int) -> np.ndarray:
        self._need_images("gymkit sample draws images")
        generator = torch.Generator(device=self.device).manual_seed(seed)
        (mean,) = self.chain_snapshots(n, [self.cfg.sample_steps], generator)
        return self.to_images(mean)

    @torch.no_grad()
    def images(self) -> dict[str, np.ndarray]:
        model = self.model
        result = {"weights/weights": histogram_image(model.weight.cpu().numpy().ravel())}
        if self.last_update is not None:
            ratio = (self.last_update.abs() / model.weight.abs().clamp_min(1e-12))
            result["weights/update_ratio_log10"] = histogram_image(
                ratio.clamp_min(1e-12).log10().cpu().numpy().ravel())
        if not self.dataset.is_image:  # vectors: no filters, chains or reconstructions
            return result
        scale = self.image_scale
        filters = model.weight.t()[:FILTERS_SHOWN]
        low = filters.min(1, keepdim=True).values
        span = (filters.max(1, keepdim=True).values - low).clamp_min(1e-12)
        filter_images = ((filters - low) / span).view(-1, *self.dataset.shape).cpu().numpy()
        # The same chains at every evaluation: their generator starts from a fixed seed.
        generator = torch.Generator(device=self.device).manual_seed(self.seed + 2)
        steps = sorted({min(s, self.cfg.sample_steps) for s in (1, 10, 100, 1000)})
        snapshots = self.chain_snapshots(CHAINS_SHOWN, steps, generator)
        chains = torch.stack(snapshots, 1).flatten(0, 1)  # chain by chain, steps across
        originals = self.fixed_x
        recon = model.visible_mean(model.hidden_probabilities(originals))
        result.update({
            "samples/filters": image_grid(filter_images, columns=10, scale=scale),
            "samples/gibbs_chains": image_grid(self.to_images(chains), columns=len(steps),
                                               scale=scale),
            "samples/reconstructions": image_grid(self.to_images(torch.cat([originals, recon])),
                                                  columns=len(originals), scale=scale),
        })
        return result

    # -- state ------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "sampler": self.sampler.get_state(),
                "chain": None if self.chain is None else self.chain.clone(),
                "chain_hidden": None if self.chain_hidden is None else self.chain_hidden.clone(),
                "activity": self.activity.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        for group in self.optimizer.param_groups:  # the checkpoint's groups replaced them
            group.update(SGD_FLAGS)
        self.sampler.set_state(state["sampler"])
        chain = state["chain"]
        if (chain is None) != (self.chain is None):
            raise GymkitError("this checkpoint was written with another value of persistent; "
                              "resume it with the config it was trained with")
        self.chain = None if chain is None else chain.to(self.device)
        hidden = state.get("chain_hidden")  # absent from checkpoints before 2026-11-24
        self.chain_hidden = None if hidden is None else hidden.to(self.device)
        self.activity = state["activity"].to(self.device)

    def networks(self) -> dict[str, tuple[Any, tuple[Any, ...]]]:
        return {"rbm": (self.model, (self.train_v[:1],))}

    def summary(self) -> dict[str, Any]:
        return {"parameters": sum(p.numel() for p in self.model.parameters())}


def held_out(rated: torch.Tensor, fraction: float = HELD_OUT_FRACTION,
             seed: int = HELD_OUT_SEED) -> torch.Tensor:
    """The values held out of each row for eval/rmse, a bool mask like `rated` (B, V): of row
    u's n_u rated (True) entries, the floor(fraction n_u + 1/2) with the smallest of uniform
    scores drawn from `seed` (the same for every run and evaluation: it depends on the
    split's shape only)."""
    scores = torch.rand(rated.shape, generator=torch.Generator().manual_seed(seed))
    scores = scores.to(rated.device).masked_fill(~rated, 2.0)  # unrated entries rank last
    rank = scores.argsort(1).argsort(1)
    count = torch.floor(fraction * rated.sum(1, keepdim=True) + 0.5)
    return (rank < count) & rated


def histogram_image(values: np.ndarray, bins: int = 48, height: int = 96, bar: int = 4
                    ) -> np.ndarray:
    """A histogram of `values` as an HWC uint8 image, `bins` bars of `bar` pixels, tallest
    `height` pixels, with the range written under it (TensorBoard shows it with the images;
    gymkit's logger writes no histogram summaries)."""
    from PIL import Image, ImageDraw

    counts, edges = np.histogram(values, bins=bins)
    tops = np.round(counts / max(int(counts.max()), 1) * height).astype(int)
    rows = np.arange(height)[:, None]
    columns = np.arange(bins * bar)
    filled = (rows >= height - tops[columns // bar][None, :]) & (columns % bar != bar - 1)
    image = np.full((height + 14, bins * bar, 3), 255, dtype=np.uint8)
    image[:height][filled] = (31, 119, 180)
    picture = Image.fromarray(image)
    ImageDraw.Draw(picture).text((2, height + 2), f"{edges[0]:.3g} .. {edges[-1]:.3g}",
                                 fill=(0, 0, 0))
    return np.asarray(picture).copy()
