"""The RBM: its energies and conditionals against brute force, the CD/PCD gradient, the
guide's training recipe, the pseudo-likelihood against scikit-learn, learning on
bars-and-stripes, the plugin contract, images, errors and the command line."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from generative.ais import configurations, exact_log_likelihood, exact_log_partition
from generative.rbm import RBMTrainer
from generative.rbm_model import (
    RBM,
    contrastive_divergence,
    data_visible_bias,
    full_pseudo_log_likelihood,
    pseudo_log_likelihood,
)
from toolkit.cli import app
from toolkit.errors import ConfigError, GymkitError
from toolkit.testing import check_plugin, make_trainer
from toolkit.trainer import FINAL_EVAL_SEED, PERIODIC_EVAL_SEED, Budget

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def random_rbm(visible: int, hidden: int, *, gaussian: bool = False, seed: int = 0,
               scale: float = 1.0) -> RBM:
    """float64, weights N(0, scale^2), biases N(0, 1)."""
    generator = torch.Generator().manual_seed(seed)
    rbm = RBM(visible, hidden, gaussian=gaussian).double()
    with torch.no_grad():
        for parameter in rbm.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator,
                                        dtype=torch.float64))
        rbm.weight.mul_(scale)
    return rbm


def rbm_trainer(dataset: str = "digits", seed: int = 0, epochs: int = 10,
                budget: Budget | None = None, **overrides: object) -> RBMTrainer:
    trainer = make_trainer(RBMTrainer, dataset, overrides, seed=seed,
                           budget=budget or Budget("epochs", epochs))
    assert isinstance(trainer, RBMTrainer)
    return trainer


def train(trainer: RBMTrainer) -> RBMTrainer:
    while trainer.budget_left() > 0:
        trainer.train_step()
    return trainer


# -- the model ----------------------------------------------------------------------------


@pytest.mark.parametrize("gaussian", [False, True], ids=["bernoulli", "gaussian"])
def test_free_energy_and_hidden_conditionals_are_sums_over_the_hiddens(gaussian: bool) -> None:
    """F(v) = -log sum_h exp(-E(v, h)) and p(h_j = 1 | v) = sum_{h: h_j = 1} exp(-E) / sum_h
    exp(-E), by enumerating the 2^5 hidden configurations."""
    rbm = random_rbm(4, 5, gaussian=gaussian)
    v = configurations(4) if not gaussian else torch.randn(7, 4, dtype=torch.float64)
    h = configurations(5)
    energies = torch.stack([rbm.energy(v, row.expand(len(v), -1)) for row in h], 1)  # (B, 2^H)
    torch.testing.assert_close(rbm.free_energy(v), -torch.logsumexp(-energies, 1))
    posterior = torch.softmax(-energies, 1)
    torch.testing.assert_close(rbm.hidden_probabilities(v), posterior @ h)


def test_visible_conditionals_are_sums_over_the_visibles() -> None:
    rbm = random_rbm(4, 3)
    v, h = configurations(4), configurations(3)
    energies = torch.stack([rbm.energy(v, row.expand(len(v), -1)) for row in h])  # (2^H, 2^V)
    torch.testing.assert_close(rbm.visible_mean(h), torch.softmax(-energies, 1) @ v)
    gaussian = random_rbm(4, 3, gaussian=True)
    torch.testing.assert_close(gaussian.visible_mean(h),
                               gaussian.visible_bias + h @ gaussian.weight.t())


@pytest.mark.parametrize("k", [1, 2])
def test_cd_k_is_the_guides_recipe(k: int) -> None:
    """Replaying the draws: sampled hiddens drive the chain, the last visible state is its
    probabilities, and the statistics use hidden probabilities."""
    rbm = random_rbm(6, 4)
    v0 = torch.bernoulli(torch.full((9, 6), 0.5, dtype=torch.float64),
                         generator=torch.Generator().manual_seed(1))
    got = contrastive_divergence(rbm, v0, k, torch.Generator().manual_seed(2))
    generator = torch.Generator().manual_seed(2)
    w, b, c = rbm.weight, rbm.visible_bias, rbm.hidden_bias

    def draw(p: torch.Tensor) -> torch.Tensor:  # 1 where a uniform draw falls below p
        return (torch.rand(p.shape, generator=generator, dtype=p.dtype) < p).double()

    p0 = torch.sigmoid(c + v0 @ w)
    h = draw(p0)
    for _ in range(k - 1):
        v = draw(torch.sigmoid(b + h @ w.t()))
        h = draw(torch.sigmoid(c + v @ w))
    vk = torch.sigmoid(b + h @ w.t())
    pk = torch.sigmoid(c + vk @ w)
    torch.testing.assert_close(got.gradient["weight"], (v0.t() @ p0 - vk.t() @ pk) / 9)
    torch.testing.assert_close(got.gradient["visible_bias"], (v0 - vk).mean(0))
    torch.testing.assert_close(got.gradient["hidden_bias"], (p0 - pk).mean(0))
    torch.testing.assert_close(got.chain, vk)


def test_pcd_with_long_chains_estimates_the_exact_gradient() -> None:
    """The exact gradient of the mean log-likelihood by autograd through log Z (enumerated);
    PCD-200 from 20,000 chains estimates it within 0.02 (measured: 0.007, against entries
    up to 0.43)."""
    rbm = random_rbm(6, 4)
    generator = torch.Generator().manual_seed(0)
    v0 = torch.bernoulli(torch.full((50, 6), 0.5, dtype=torch.float64), generator=generator)
    for parameter in rbm.parameters():
        parameter.requires_grad_(True)
    mean_log_likelihood = exact_log_likelihood(rbm, v0).mean()
    exact = dict(zip([name for name, _ in rbm.named_parameters()],
                     torch.autograd.grad(mean_log_likelihood, list(rbm.parameters())),
                     strict=True))
    for parameter in rbm.parameters():
        parameter.requires_grad_(False)
    chains = torch.bernoulli(torch.full((20_000, 6), 0.5, dtype=torch.float64),
                             generator=generator)
    estimate = contrastive_divergence(rbm, v0, 200, generator, chains)
    for name, gradient in exact.items():
        assert float(gradient.abs().max()) > 0.1, name
        torch.testing.assert_close(estimate.gradient[name], gradient, atol=0.02, rtol=0)
    # The chain moved on and holds binary draws, as a persistent chain must.
    assert set(estimate.chain.unique().tolist()) == {0.0, 1.0}
    assert not torch.equal(estimate.chain, chains)


def test_the_pseudo_likelihood_is_sklearns_score_samples() -> None:
    """The same weights in scikit-learn's BernoulliRBM and the same flipped bits (drawn as
    score_samples draws them, from its random_state): the same values."""
    from sklearn.neural_network import BernoulliRBM

    rbm = RBM(64, 20)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in rbm.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    x = np.random.RandomState(1).binomial(1, 0.3, size=(40, 64)).astype(np.float64)
    sklearn_rbm = BernoulliRBM(n_components=20, random_state=7)
    sklearn_rbm.components_ = rbm.weight.detach().t().double().numpy()
    sklearn_rbm.intercept_hidden_ = rbm.hidden_bias.detach().double().numpy()
    sklearn_rbm.intercept_visible_ = rbm.visible_bias.detach().double().numpy()
    sklearn_rbm.n_features_in_ = 64
    expected = sklearn_rbm.score_samples(x)
    flip = torch.from_numpy(np.random.RandomState(7).randint(0, 64, 40))
    got = pseudo_log_likelihood(rbm, torch.from_numpy(x).float(), flip)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4, atol=1e-4)
    assert len(set(np.round(expected, 3))) > 30  # the rows differ: the check has power


def test_the_full_pseudo_likelihood_is_the_mean_over_the_flipped_pixel() -> None:
    """sum_i log p(v_i | v_-i): V times the mean of the one-pixel estimate over the pixel,
    and, on a 5-pixel RBM, the conditionals of the exact joint distribution."""
    rbm = random_rbm(5, 3)
    v = configurations(5)
    full = full_pseudo_log_likelihood(rbm, v, elements=40)  # 40 / (5 * 3): rows in chunks of 2
    each = torch.stack([pseudo_log_likelihood(rbm, v, torch.full((32,), i)) for i in range(5)])
    torch.testing.assert_close(full, each.mean(0))
    log_p = exact_log_likelihood(rbm, v)  # row n is configuration n: bit i of n is pixel i
    flipped = torch.arange(32)[:, None] ^ (1 << torch.arange(5))  # (32, 5)
    conditionals = log_p[:, None] - torch.logaddexp(log_p[:, None], log_p[flipped])
    torch.testing.assert_close(full, conditionals.sum(1))
    with pytest.raises(ValueError, match="binary visibles"):
        full_pseudo_log_likelihood(RBM(3, 2, gaussian=True), torch.zeros(1, 3))


# -- the trainer --------------------------------------------------------------------------


def test_initialization_follows_the_guide() -> None:
    trainer = rbm_trainer(hidden=200)
    weight = trainer.model.weight
    assert abs(float(weight.std()) - 0.01) < 0.0005 and abs(float(weight.mean())) < 0.0005
    assert torch.equal(trainer.model.hidden_bias, torch.zeros(200))
    p = torch.as_tensor(trainer.dataset.split("train").x).flatten(1).mean(0)
    p = p.clamp(1e-3, 1 - 1e-3)
    torch.testing.assert_close(trainer.model.visible_bias, torch.log(p / (1 - p)))
    assert float(trainer.model.visible_bias.min()) < -6  # a corner pixel, never on


def test_visible_bias_init_zero_starts_the_visible_biases_at_zero() -> None:
    # As scikit-learn's BernoulliRBM (benchmarks/rbm.py compares the two so).
    zero = rbm_trainer(hidden=20, visible_bias_init="zero")
    assert torch.equal(zero.model.visible_bias, torch.zeros(64))
    guided = rbm_trainer(hidden=20)
    assert float(guided.model.visible_bias.min()) < -6
    assert torch.equal(zero.model.weight, guided.model.weight)


def test_a_train_step_logs_its_last_update_relative_to_the_weights() -> None:
    """Bars-and-stripes in batches of 10: 3 updates an epoch. A train_step keeps its last
    update, W after it minus W before it, and logs its norm over the weights' norm."""
    trainer = rbm_trainer("bars-and-stripes", epochs=3, batch_size=10, hidden=8)
    before: list[torch.Tensor] = []
    trainer.optimizer.register_step_pre_hook(
        lambda *_: before.append(trainer.model.weight.clone()))
    for epoch in range(2):
        metrics = trainer.train_step()
        assert len(before) == 3 * (epoch + 1)
        update = trainer.model.weight - before[-1]
        assert trainer.last_update is not None and torch.equal(trainer.last_update, update)
        assert float(update.abs().max()) > 0
        assert metrics["charts/update_ratio"] == pytest.approx(
            float(update.norm() / trainer.model.weight.norm()))


def test_a_checkpoint_from_before_the_maximizing_optimizer_resumes_alike() -> None:
    """Checkpoints written before 2026-11-24 hold optimizer groups that minimize (the trainer
    negated the CD estimate then; now the SGD maximizes it): loaded, the optimizer still
    maximizes, and the run goes on as one that was never saved."""
    def trainer() -> RBMTrainer:
        return rbm_trainer("bars-and-stripes", epochs=4, batch_size=10, hidden=8)

    original = trainer()
    original.train_step()
    state = copy.deepcopy(original.state_dict())
    for group in state["optimizer"]["param_groups"]:
        group.update(maximize=False, fused=None)
    resumed = trainer()
    resumed.load_state_dict(state)
    assert [group["maximize"] for group in resumed.optimizer.param_groups] == [True, True]
    original.train_step()
    resumed.train_step()
    assert torch.equal(resumed.model.weight, original.model.weight)


def test_momentum_is_half_for_five_epochs_then_nine_tenths() -> None:
    trainer = rbm_trainer("bars-and-stripes", epochs=7, batch_size=10)
    momenta = [trainer.train_step()["charts/momentum"] for _ in range(7)]
    assert momenta == [0.5] * 5 + [0.9] * 2
    assert [group["momentum"] for group in trainer.optimizer.param_groups] == [0.9, 0.9]


def test_weight_decay_acts_on_the_weights_only() -> None:
    """One update of two trainers that draw the same numbers, one with weight decay 0.5:
    the weights differ by lr * 0.5 * W0, the biases (the visible ones far from 0 on digits)
    not at all."""
    def one_update(weight_decay: float) -> tuple[RBMTrainer, torch.Tensor]:
        trainer = rbm_trainer(budget=Budget("steps", 1), lr=0.1, lr_schedule="constant",
                              weight_decay=weight_decay)
        initial = trainer.model.weight.clone()
        trainer.train_step()
        return trainer, initial

    plain, initial = one_update(0.0)
    decayed, _ = one_update(0.5)
    torch.testing.assert_close(plain.model.weight - decayed.model.weight, 0.1 * 0.5 * initial)
    assert float(initial.abs().max()) > 0.02 and float(plain.model.visible_bias.abs().max()) > 5
    assert torch.equal(plain.model.visible_bias, decayed.model.visible_bias)
    assert torch.equal(plain.model.hidden_bias, decayed.model.hidden_bias)


def test_the_linear_schedule_falls_to_zero_over_the_budget() -> None:
    """Bars-and-stripes in batches of 10: 3 updates an epoch; the rate of update i (from 0)
    of n is lr (1 - i / n), and a train_step reports its last one's."""
    by_epochs = rbm_trainer("bars-and-stripes", epochs=2, batch_size=10, lr=0.1)
    rates = [by_epochs.train_step()["charts/lr"] for _ in range(2)]
    assert rates == pytest.approx([0.1 * (1 - 2 / 6), 0.1 * (1 - 5 / 6)])
    by_steps = rbm_trainer("bars-and-stripes", budget=Budget("steps", 4), batch_size=10,
                           lr=0.1)
    rates = [by_steps.train_step()["charts/lr"] for _ in range(2)]
    assert rates == pytest.approx([0.1 * (1 - 2 / 4), 0.1 * (1 - 3 / 4)])
    constant = rbm_trainer("bars-and-stripes", epochs=2, lr=0.1, lr_schedule="constant")
    assert constant.train_step()["charts/lr"] == 0.1


def test_a_sparsity_target_sets_the_hidden_activity() -> None:
    """5 epochs on digits: mean p(h | v) on the validation images 0.486 without a target,
    0.045 (measured) with a target of 0.05 at cost 1."""
    free = train(rbm_trainer(epochs=5))
    sparse = train(rbm_trainer(epochs=5, sparsity_target=0.05, sparsity_cost=1.0))
    x, _ = free.eval_data("validation")
    assert float(free.model.hidden_probabilities(x).mean()) > 0.4
    assert float(sparse.model.hidden_probabilities(x).mean()) < 0.07


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_on_bars_and_stripes_both_learn_and_pcd_beats_cd1(seed: int) -> None:
    """16 hidden units, batches of 10, learning rate 0.01 falling linearly to 0 over 2,000
    epochs (6,000 updates), the guide's momentum and weight decay. The exact average
    log-likelihood of the 30 images starts at -11.09 (16 log 1/2; the best possible is
    -log 30 = -3.40). Measured over seeds 0-19: CD-1 ends between -6.01 and -5.29 (seeds
    0-2: -5.36, -5.76, -5.29), PCD-1 between -4.66 and -3.97 (seeds 0-2: -4.44, -4.37,
    -4.23); PCD is ahead in every seed, by 0.92 to 1.85 nats. Stated margins: both gain at
    least 4.5 nats (CD-1 gained 5.08 at worst), PCD at least 6 (6.43 at worst), and PCD
    beats CD-1 by at least 0.5 nats in each seed."""
    final = {}
    for persistent in (False, True):
        trainer = rbm_trainer("bars-and-stripes", seed=seed, epochs=2000, hidden=16,
                              batch_size=10, lr=0.01, persistent=persistent)
        x = trainer.train_v
        before = float(exact_log_likelihood(trainer.model, x).mean())
        assert before == pytest.approx(16 * math.log(0.5), abs=0.01)
        final[persistent] = float(exact_log_likelihood(train(trainer).model, x).mean())
    assert final[False] > before + 4.5
    assert final[True] > before + 6.0
    assert final[True] > final[False] + 0.5
    assert final[True] < -math.log(30)


def test_evaluation_metrics_on_bars_and_stripes() -> None:
    """Every split holds the same 30 images: the free-energy gap is 0, and AIS (100 runs,
    10,000 betas) lands within 0.5 nats of the exact average log-likelihood (measured:
    -9.625 within [-9.630, -9.620], exactly -9.627)."""
    trainer = train(rbm_trainer("bars-and-stripes", epochs=300, hidden=16, batch_size=10,
                                lr=0.02, persistent=True))
    trainer.cfg.ais_runs = 100
    seed = trainer.seed + FINAL_EVAL_SEED
    metrics = trainer.evaluate(1, seed)
    x, _ = trainer.eval_data("test")
    exact = float(exact_log_likelihood(trainer.model, x).mean())
    assert metrics["eval/free_energy_gap"] == 0.0
    assert abs(metrics["eval/ais_ll"] - exact) < 0.5
    assert metrics["eval/ais_ll_low"] <= metrics["eval/ais_ll"] <= metrics["eval/ais_ll_high"]
    log_z = float(exact_log_partition(trainer.model))
    assert abs(metrics["eval/ais_log_z"] - log_z) < 0.5
    assert metrics["eval/ais_ll"] == pytest.approx(-metrics["eval/free_energy"]
                                                   - metrics["eval/ais_log_z"], abs=1e-4)
    flip = torch.randint(0, 16, (30,), generator=torch.Generator().manual_seed(seed))
    expected = float(pseudo_log_likelihood(trainer.model, x, flip).mean())
    assert metrics["eval/pseudo_ll"] == pytest.approx(expected, abs=1e-5)
    full = float(full_pseudo_log_likelihood(trainer.model, x).mean())
    assert metrics["eval/pseudo_ll_full"] == pytest.approx(full, abs=1e-5)
    assert metrics["eval/loss"] == -metrics["eval/ais_ll_short"]
    assert abs(metrics["eval/ais_ll_short"] - exact) < 0.5  # the short AIS: 64 x 500
    trainer.cfg.select_ais_runs = 0
    assert trainer.evaluate(1, seed)["eval/loss"] == -metrics["eval/pseudo_ll_full"]
    trainer.cfg.select_ais_runs = 64
    recon = trainer.model.visible_mean(trainer.model.hidden_probabilities(x))
    assert metrics["eval/recon_error"] == pytest.approx(float((x - recon).pow(2).sum(1).mean()))
    trainer.cfg.ais_runs = 0
    assert "eval/ais_ll" not in trainer.evaluate(1, seed)
    # Three runs, no annealing (2 betas): the weights' spread exceeds their mean, so the
    # interval's upper end for the log-likelihood is undefined and left out, never infinite.
    trainer.cfg.ais_runs, trainer.cfg.ais_betas = 3, 2
    rough = trainer.evaluate(1, seed)
    assert "eval/ais_ll_high" not in rough and "eval/ais_log_z_low" not in rough
    assert all(math.isfinite(value) for value in rough.values())


@pytest.mark.slow
def test_the_metric_that_picks_best_pt_follows_the_likelihood() -> None:
    """best.pt is the checkpoint of the lowest ``eval/loss``, minus a short AIS's
    log-likelihood (64 runs, 500 betas): a long AIS (200 runs, 5,000 betas) must find that
    epoch's log-likelihood within both intervals of the best epoch's, and so of last.pt's.

    The config (learning rate 0.5, 100 hidden units, 10 epochs on digits, seed 0) is one whose
    likelihood peaks before the end: by the long AIS per epoch -25.43, -25.10, -25.02, -24.93,
    -24.76 (epoch 5), then -29.93 after momentum rises to 0.9, back to -25.61 at epoch 10.
    The pseudo-likelihood, which picked best.pt before, peaks at epoch 3 (-21.94), 0.26 nats
    below epoch 5 by the long AIS: far outside the intervals (about 0.05)."""
    from generative.ais import ais_log_partition, linear_betas

    trainer = rbm_trainer(epochs=10, lr=0.5, hidden=100)
    x, _ = trainer.eval_data("validation")
    losses, lls = [], []
    while trainer.budget_left() > 0:
        trainer.train_step()
        losses.append(trainer.evaluate(1, trainer.seed + PERIODIC_EVAL_SEED)["eval/loss"])
        estimate = ais_log_partition(trainer.model, 200, linear_betas(5000),
                                     torch.Generator().manual_seed(7), trainer.base_bias)
        log_p = -float(trainer.model.free_energy(x).double().mean())
        lls.append((log_p - estimate.log_z, estimate.log_z_high - estimate.log_z_low))
    picked = losses.index(min(losses))  # what the runner keeps as best.pt
    top = max(range(len(lls)), key=lambda epoch: lls[epoch][0])
    assert lls[picked][0] >= lls[top][0] - (lls[picked][1] + lls[top][1]), (picked, lls)
    assert lls[picked][0] >= lls[-1][0] - (lls[picked][1] + lls[-1][1])  # best vs last


def test_evaluations_measure_fixed_binary_images_of_the_right_split() -> None:
    trainer = rbm_trainer(epochs=1)
    train(trainer)
    test, validation = (trainer.evaluate(1, trainer.seed + offset) for offset in
                        (FINAL_EVAL_SEED, PERIODIC_EVAL_SEED))
    assert test["eval/free_energy"] != validation["eval/free_energy"]
    x, _ = trainer.eval_data("test")
    assert set(x.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(x, rbm_trainer(seed=5, epochs=1).eval_data("test")[0])
    # The same draw as the VAE's: every model is measured on the same binary images.
    from generative.vae import VAETrainer

    vae = make_trainer(VAETrainer, "digits")
    assert isinstance(vae, VAETrainer)
    assert torch.equal(x, vae.eval_data("test")[0].flatten(1))


def test_the_gaussian_rbm_standardizes_and_learns() -> None:
    """Digits, standardized per pixel: in 10 epochs the AIS log-likelihood (100 runs, 2,000
    betas) rises from -82.72 to -79.45 nats per standardized image, the reconstruction error
    falls from 47.5 to 7.6 (measured). Stated margins: 2.5 nats, and half the error."""
    trainer = rbm_trainer(visible="gaussian", ais_runs=100, ais_betas=2000)
    assert float(trainer.train_v.mean(0).abs().max()) < 1e-5
    stds = trainer.train_v.std(0)
    varied = torch.as_tensor(trainer.dataset.split("train").x).flatten(1).std(0) >= 0.1
    torch.testing.assert_close(stds[varied], torch.ones(int(varied.sum())))
    seed = trainer.seed + PERIODIC_EVAL_SEED
    before = trainer.evaluate(1, seed)
    after = train(trainer).evaluate(1, seed)
    assert "eval/pseudo_ll" not in after and after["eval/loss"] == after["eval/recon_error"]
    assert after["eval/ais_ll"] > before["eval/ais_ll"] + 2.5
    assert after["eval/recon_error"] < 0.5 * before["eval/recon_error"]
    samples = trainer.sample(4, seed=1)
    assert samples.shape == (4, 1, 8, 8) and samples.min() >= 0 and samples.max() <= 1


@pytest.mark.parametrize("overrides", [
    {}, {"persistent": True, "k": 2, "sparsity_target": 0.1},
    {"visible": "gaussian", "persistent": True},
    {"ais_runs": 3, "ais_betas": 20, "binarize": "threshold", "lr_schedule": "constant"},
], ids=["cd1", "pcd2-sparse", "gaussian-pcd", "ais-threshold"])
def test_the_rbm_keeps_the_plugin_contract(overrides: dict[str, object]) -> None:
    check_plugin(RBMTrainer, "digits", overrides={"hidden": 32, **overrides})


def test_the_rbm_keeps_the_contract_on_binary_data_without_binarizing() -> None:
    check_plugin(RBMTrainer, "bars-and-stripes",
                 overrides={"binarize": "none", "persistent": True, "batch_size": 7})


def test_images_and_samples() -> None:
    trainer = rbm_trainer(hidden=30)
    state = copy.deepcopy(trainer.state_dict())
    images = trainer.images()
    assert set(images) == {"samples/filters", "samples/gibbs_chains", "samples/reconstructions",
                           "weights/weights"}
    trainer.train_step()
    images = trainer.images()
    assert "weights/update_ratio_log10" in images
    for image in images.values():
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    # 30 filters, 10 to a row, drawn 7 times larger: 3 rows of 56-pixel images.
    assert images["samples/filters"].shape[0] == 2 + 3 * (56 + 2)
    # 8 chains by 4 snapshots (after 1, 10, 100 and 1,000 steps).
    assert images["samples/gibbs_chains"].shape[:2] == (2 + 8 * 58, 2 + 4 * 58)
    samples = trainer.sample(5, seed=3)
    assert samples.shape == (5, 1, 8, 8) and samples.min() >= 0 and samples.max() <= 1
    assert np.array_equal(samples, trainer.sample(5, seed=3))
    # Drawing images and samples leaves the training's random numbers alone.
    fresh = rbm_trainer(hidden=30)
    fresh.load_state_dict(state)
    fresh.train_step()
    assert torch.equal(fresh.model.weight, trainer.model.weight)


def test_bad_input_is_refused_in_one_line() -> None:
    with pytest.raises(ConfigError, match=r"hidden must be in \[1, inf\], got 0"):
        rbm_trainer(hidden=0)
    with pytest.raises(ConfigError, match=r"k must be in \[1, inf\], got 0"):
        rbm_trainer(k=0)
    with pytest.raises(ConfigError, match="visible must be one of bernoulli, gaussian"):
        rbm_trainer(visible="poisson")
    with pytest.raises(ConfigError, match="visible_bias_init must be one of data, zero, got "
                                          "'sklearn'"):
        rbm_trainer(visible_bias_init="sklearn")
    with pytest.raises(ConfigError, match=r"ais_betas must be in \[2, inf\], got 1"):
        rbm_trainer(ais_betas=1)
    with pytest.raises(ConfigError, match=r"momentum_end must be in \[0, 1\), got 1.0"):
        rbm_trainer(momentum_end=1.0)
    with pytest.raises(GymkitError, match="needs 0/1 pixels, but digits holds grey levels; "
                                          "use --set binarize=dynamic or threshold"):
        rbm_trainer(binarize="none")
    from toy_generative import ToyGaussian, registered  # with a dataset of 2-D points

    with registered("toy-gaussian", ToyGaussian), pytest.raises(GymkitError,
                                                                match="rbm needs images"):
        make_trainer(RBMTrainer, "toy-points")
    persistent = rbm_trainer(persistent=True).state_dict()
    with pytest.raises(GymkitError, match="another value of persistent"):
        rbm_trainer().load_state_dict(persistent)
    with pytest.raises(ValueError, match="k >= 1"):
        contrastive_divergence(RBM(3, 2), torch.zeros(1, 3), 0, None)


def test_data_visible_bias_is_the_log_odds() -> None:
    x = torch.tensor([[1.0, 0.0, 1.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    torch.testing.assert_close(data_visible_bias(x), torch.tensor(
        [math.log(3), math.log(1e-3 / (1 - 1e-3)), -math.log(3)]))


# -- the command line ---------------------------------------------------------------------


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_the_cli_trains_evaluates_with_ais_and_samples(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    code, out = invoke("run", "generative", "rbm", "--dataset", "bars-and-stripes",
                       "--epochs", "3", "--set", "hidden=8", "-q", "--summary",
                       "--runs-dir", str(runs))
    assert code == 0 and "rbm: rbm" in out, out
    (run,) = runs.iterdir()
    code, out = invoke("eval", str(run), "--ais-runs", "20", "--ais-betas", "200")
    assert code == 0, out
    for row in ("ais ll", "ais ll low", "ais ll high", "ais log z", "pseudo ll",
                "pseudo ll full", "free energy gap", "recon error"):
        assert row in out, (row, out)
    code, out = invoke("eval", str(run))
    assert code == 0 and "pseudo ll" in out and "ais ll short" in out, out
    assert "ais log z" not in out  # the long AIS only with --ais-runs
    code, out = invoke("sample", str(run), "--n", "4", "--out", str(tmp_path / "s.png"))
    assert code == 0 and (tmp_path / "s.png").stat().st_size > 0, out


@pytest.mark.parametrize(("flags", "message"), [
    (("--ais-runs", "0"), "--ais-runs must be positive, got 0"),
    (("--ais-runs", "5", "--ais-betas", "1"), "--ais-betas must be at least 2 (0 and 1), got 1"),
    (("--ais-betas", "50"), "--ais-betas sets the schedule of the AIS runs; add --ais-runs R"),
])
def test_the_cli_refuses_bad_ais_options(tmp_path: Path, flags: tuple[str, ...],
                                         message: str) -> None:
    code, out = invoke("run", "generative", "rbm", "--dataset", "bars-and-stripes",
                       "--epochs", "1", "-q", "--runs-dir", str(tmp_path))
    assert code == 0, out
    (run,) = tmp_path.iterdir()
    code, out = invoke("eval", str(run), *flags)
    assert code == 2 and message in " ".join(out.split()), out


def test_ais_options_need_an_energy_model(tmp_path: Path) -> None:
    code, out = invoke("run", "generative", "autoencoder", "--epochs", "1", "-q",
                       "--runs-dir", str(tmp_path))
    assert code == 0, out
    (run,) = tmp_path.iterdir()
    code, out = invoke("eval", str(run), "--ais-runs", "10")
    assert code == 2 and "autoencoder has no AIS likelihood estimate" in out, out
    code, out = invoke("run", "generative", "rbm", "--set", "hidden=0", "--runs-dir",
                       str(tmp_path / "bad"))
    assert code == 2 and "hidden must be in [1, inf], got 0" in " ".join(out.split()), out


@pytest.mark.parametrize("k", [1, 2])
def test_pcd_k_runs_on_from_the_chains_hidden_draw(k: int) -> None:
    """Replaying the draws: PCD-k starts from the kept hidden state h (not a fresh draw from
    p(h | chain)), draws every state, and hands back vk and a draw from p(h | vk)."""
    rbm = random_rbm(6, 4)
    make = torch.Generator().manual_seed(1)
    v0 = torch.bernoulli(torch.full((9, 6), 0.5, dtype=torch.float64), generator=make)
    chain = torch.bernoulli(torch.full((5, 6), 0.5, dtype=torch.float64), generator=make)
    chain_hidden = torch.bernoulli(torch.full((5, 4), 0.5, dtype=torch.float64), generator=make)
    got = contrastive_divergence(rbm, v0, k, torch.Generator().manual_seed(2), chain,
                                 chain_hidden=chain_hidden)
    generator = torch.Generator().manual_seed(2)
    w, b, c = rbm.weight, rbm.visible_bias, rbm.hidden_bias

    def draw(p: torch.Tensor) -> torch.Tensor:
        return (torch.rand(p.shape, generator=generator, dtype=p.dtype) < p).double()

    p0, h = torch.sigmoid(c + v0 @ w), chain_hidden
    for step in range(k):
        v = draw(torch.sigmoid(b + h @ w.t()))
        if step < k - 1:
            h = draw(torch.sigmoid(c + v @ w))
    pk = torch.sigmoid(c + v @ w)
    torch.testing.assert_close(got.gradient["weight"], v0.t() @ p0 / 9 - v.t() @ pk / 5)
    torch.testing.assert_close(got.gradient["visible_bias"], v0.mean(0) - v.mean(0))
    torch.testing.assert_close(got.gradient["hidden_bias"], p0.mean(0) - pk.mean(0))
    torch.testing.assert_close(got.chain, v)
    assert got.chain_hidden is not None and got.reconstruction is None
    torch.testing.assert_close(got.chain_hidden, draw(pk))


def test_pcd_keeps_its_chains_hidden_states_between_updates() -> None:
    # Kept, the next update starts from them and skips a matrix product (benchmarks/rbm.py).
    trainer = rbm_trainer(hidden=12, persistent=True, batch_size=50)
    assert trainer.chain_hidden is None
    trainer.train_step()
    hidden = trainer.chain_hidden
    assert hidden is not None and hidden.shape == (50, 12)
    assert set(hidden.unique().tolist()) <= {0.0, 1.0}
    assert "chain_hidden" in trainer.state_dict()
