"""The partition function of an RBM: enumeration against brute force, AIS against the exact
answer, the unbiasedness of AIS's importance weights, and the interval."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from generative.ais import (
    ais_log_partition,
    base_log_partition,
    configurations,
    exact_log_likelihood,
    exact_log_partition,
    interval,
    linear_betas,
)
from generative.rbm import RBMTrainer
from generative.rbm_model import RBM, data_visible_bias
from toolkit.testing import make_trainer
from toolkit.trainer import Budget

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def random_rbm(visible: int, hidden: int, scale: float, seed: int = 0, *,
               gaussian: bool = False) -> RBM:
    """An RBM in float64 with weights N(0, scale^2) and biases N(0, 1) (Gaussian visibles:
    weights N(0, scale^2 / visible), so that Z stays finite and moderate)."""
    generator = torch.Generator().manual_seed(seed)
    rbm = RBM(visible, hidden, gaussian=gaussian).double()
    with torch.no_grad():
        weight_scale = scale / math.sqrt(visible) if gaussian else scale
        rbm.weight.copy_(torch.randn(visible, hidden, generator=generator,
                                     dtype=torch.float64) * weight_scale)
        rbm.visible_bias.copy_(torch.randn(visible, generator=generator, dtype=torch.float64))
        rbm.hidden_bias.copy_(torch.randn(hidden, generator=generator, dtype=torch.float64))
    return rbm


def brute_force_log_z(rbm: RBM) -> float:
    """log sum_{v, h} exp(-E(v, h)) over every joint configuration."""
    v, h = configurations(rbm.visible), configurations(rbm.hidden)
    pairs_v = v.repeat_interleave(len(h), 0)
    pairs_h = h.repeat(len(v), 1)
    return float(torch.logsumexp(-rbm.energy(pairs_v, pairs_h), 0))


def test_configurations_enumerate_every_binary_vector_once() -> None:
    states = configurations(4)
    assert states.shape == (16, 4)
    assert len({tuple(row) for row in states.tolist()}) == 16
    assert configurations(4, start=3, stop=5).tolist() == [[1, 1, 0, 0], [0, 0, 1, 0]]


@pytest.mark.parametrize(("visible", "hidden"), [(5, 7), (7, 5)],
                         ids=["over-visible", "over-hidden"])
def test_exact_log_z_is_the_sum_over_the_joint(visible: int, hidden: int) -> None:
    rbm = random_rbm(visible, hidden, scale=1.0)
    assert float(exact_log_partition(rbm)) == pytest.approx(brute_force_log_z(rbm), abs=1e-9)


def test_the_exact_likelihood_sums_to_one() -> None:
    rbm = random_rbm(6, 9, scale=1.5)
    total = exact_log_likelihood(rbm, configurations(6)).exp().sum()
    assert float(total) == pytest.approx(1.0, abs=1e-9)


def test_the_exact_gaussian_log_z_is_the_integral() -> None:
    """Z = sum_h int exp(-E(v, h)) dv, here by a fine grid over a 2-D v (the rectangle rule
    on a smooth integrand that is negligible outside [-12, 12]^2)."""
    rbm = random_rbm(2, 5, scale=1.0, gaussian=True)
    axis = torch.linspace(-12.0, 12.0, 961, dtype=torch.float64)
    grid = torch.cartesian_prod(axis, axis)
    step = float(axis[1] - axis[0])
    numeric = float(torch.logsumexp(-rbm.free_energy(grid), 0)) + 2 * math.log(step)
    assert float(exact_log_partition(rbm)) == pytest.approx(numeric, abs=1e-6)


def test_linear_betas_run_evenly_from_zero_to_one() -> None:
    betas = linear_betas(5)
    assert betas.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert len(linear_betas(10_000)) == 10_000
    with pytest.raises(ValueError, match="at least 2 betas"):
        linear_betas(1)
    with pytest.raises(ValueError, match="from 0 to 1"):
        ais_log_partition(random_rbm(3, 2, 1.0), 5, torch.linspace(0, 0.9, 5,
                                                                   dtype=torch.float64),
                          None, torch.zeros(3))


def test_the_base_models_log_z() -> None:
    rbm = random_rbm(3, 4, scale=1.0)
    bias = torch.tensor([0.0, 1.0, -2.0])
    expected = math.log(2) + math.log(1 + math.e) + math.log(1 + math.exp(-2)) + 4 * math.log(2)
    assert base_log_partition(rbm, bias) == pytest.approx(expected)
    # An RBM with no weights and the base's biases is the base model: its exact log Z.
    with torch.no_grad():
        rbm.weight.zero_()
        rbm.hidden_bias.zero_()
        rbm.visible_bias.copy_(bias)
    assert float(exact_log_partition(rbm)) == pytest.approx(expected)
    gaussian = random_rbm(3, 4, scale=1.0, gaussian=True)
    assert base_log_partition(gaussian, None) == pytest.approx(1.5 * math.log(2 * math.pi)
                                                               + 4 * math.log(2))


def test_the_importance_weights_are_unbiased_for_z() -> None:
    """E[w] = Z / Z_A exactly, for any schedule of betas: with 6 betas, the mean of 200,000
    weights lands within 3 standard errors of the exact Z / Z_A (measured: 1.10 standard
    errors below, log Z 6.7496 against 6.7518 exactly; the standard error is 0.2% of the
    mean). Any change to how the weights accumulate
    (a beta skipped, the last weight left out, a transition that does not leave p_beta
    invariant) biases it by many standard errors."""
    rbm = random_rbm(6, 4, scale=1.0)
    base = torch.tensor([0.5, -0.5, 0.0, 1.0, -1.0, 0.2], dtype=torch.float64)
    estimate = ais_log_partition(rbm, 200_000, linear_betas(6),
                                 torch.Generator().manual_seed(0), base)
    weights = (estimate.log_weights - estimate.log_weights.max()).exp()
    shift = float(estimate.log_weights.max()) + estimate.log_z_base
    exact = float(exact_log_partition(rbm))
    mean, error = float(weights.mean()), float(weights.std()) / math.sqrt(len(weights))
    assert abs(mean - math.exp(exact - shift)) < 3 * error
    assert error < 0.01 * mean  # the check has power: the spread is small against the mean


def test_ais_is_within_half_a_nat_of_the_exact_log_z_of_a_trained_rbm() -> None:
    """A 64-20 RBM trained 20 epochs on digits (CD-1, learning rate 0.05): log Z exactly by
    the 2^20 hidden configurations, 68.104 (measured); AIS with 100 runs and 10,000 betas
    from the data's base-rate model (log Z_A 42.58), seed 0, gives 68.097 within
    [68.082, 68.113]. Stated tolerance: 0.5 nats, and the exact value inside the estimate's
    interval widened by 0.1."""
    trainer = make_trainer(RBMTrainer, "digits", {"hidden": 20, "lr": 0.05,
                                                  "lr_schedule": "constant"},
                           budget=Budget("epochs", 20))
    assert isinstance(trainer, RBMTrainer) and trainer.base_bias is not None
    while trainer.budget_left() > 0:
        trainer.train_step()
    model = trainer.model
    exact = float(exact_log_partition(model))
    estimate = ais_log_partition(model, 100, linear_betas(10_000),
                                 torch.Generator().manual_seed(0), trainer.base_bias)
    assert abs(estimate.log_z - exact) < 0.5
    assert estimate.log_z_low - 0.1 < exact < estimate.log_z_high + 0.1
    # Training moved it far from the base model, so the agreement is not trivial.
    assert exact - estimate.log_z_base > 20


@pytest.mark.parametrize(("visible", "hidden", "scale", "gaussian"),
                         [(16, 20, 1.0, False), (30, 12, 0.5, False), (10, 16, 1.0, True)],
                         ids=["16x20", "30x12", "gaussian-10x16"])
def test_ais_is_within_half_a_nat_of_the_exact_log_z(visible: int, hidden: int, scale: float,
                                                     gaussian: bool) -> None:
    """Random RBMs, 100 runs, 10,000 betas, seed 0; the base model has the biases of a
    sample of 500 draws from a random product of Bernoullis. Stated tolerance 0.5 nats.
    Measured, AIS against exact: 16x20 47.624 against 47.622, 30x12 36.479 against 36.480,
    Gaussian 10x16 29.136 against 29.140."""
    rbm = random_rbm(visible, hidden, scale, gaussian=gaussian)
    generator = torch.Generator().manual_seed(0)
    base = None
    if not gaussian:
        data = torch.bernoulli(torch.rand(visible, generator=generator).expand(500, -1),
                               generator=generator)
        base = data_visible_bias(data).double()
    estimate = ais_log_partition(rbm, 100, linear_betas(10_000), generator, base)
    assert abs(estimate.log_z - float(exact_log_partition(rbm))) < 0.5


def test_the_interval_is_log_of_mean_plus_minus_three_standard_errors() -> None:
    log_w = torch.tensor([0.3, -1.2, 2.5, 0.0, 1.1], dtype=torch.float64)
    w = np.exp(log_w.numpy())
    spread = 3 * w.std(ddof=1) / math.sqrt(len(w))
    low, high = interval(log_w)
    assert high == pytest.approx(math.log(w.mean() + spread))
    assert low == -math.inf  # this spread exceeds the mean: the lower end is undefined
    tight = torch.tensor([1000.0, 1000.1, 999.9, 1000.05], dtype=torch.float64)
    w = np.exp(tight.numpy() - 1000.0)
    spread = 3 * w.std(ddof=1) / 2
    low, high = interval(tight)  # no overflow at log weights of 1,000
    assert low == pytest.approx(1000.0 + math.log(w.mean() - spread))
    assert high == pytest.approx(1000.0 + math.log(w.mean() + spread))


def test_enumeration_refuses_too_many_configurations() -> None:
    with pytest.raises(ValueError, match="2\\^25 configurations"):
        exact_log_partition(RBM(30, 25))
