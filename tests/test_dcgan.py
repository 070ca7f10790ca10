"""DCGAN and the classifier FID: sizes, the losses' pieces, learning on digits, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import linalg

from generative.dcgan import DCGANTrainer, Discriminator, Generator
from generative.fid import class_histogram, classes_covered, frechet_distance
from toolkit.errors import ConfigError, GymkitError
from toolkit.testing import check_plugin, make_trainer
from toolkit.trainer import PERIODIC_EVAL_SEED, Budget


def test_the_textbook_networks_have_the_books_sizes_on_mnist() -> None:
    generator, discriminator = Generator((1, 28, 28), 100, 0), Discriminator((1, 28, 28), 0)
    # Keras counts batch norm's moving mean and variance; torch keeps them as buffers.
    moving = sum(b.numel() for name, b in generator.named_buffers() if "running" in name)
    assert sum(p.numel() for p in generator.parameters()) + moving == 865_281
    assert sum(p.numel() for p in discriminator.parameters()) == 212_865
    assert generator(torch.rand(3, 100)).shape == (3, 1, 28, 28)


def test_the_frechet_distance() -> None:
    rng = np.random.default_rng(0)
    real = rng.normal(size=(2000, 3))
    assert frechet_distance(real, real) == pytest.approx(0.0, abs=1e-6)
    # Same covariance, means 2 apart in each of 3 dimensions: 3 * 2^2.
    assert frechet_distance(real, real + 2.0) == pytest.approx(12.0, abs=1e-6)
    # Against the usual formula with scipy's sqrtm of the product (well conditioned here).
    fake = rng.normal(size=(2000, 3)) @ np.array([[2.0, 0.5, 0.0], [0.0, 1.0, 0.3],
                                                  [0.0, 0.0, 0.7]]) + 1.0
    a, b = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    expected = (((real.mean(0) - fake.mean(0)) ** 2).sum()
                + np.trace(a + b - 2 * np.real(linalg.sqrtm(a @ b))))
    assert frechet_distance(real, fake) == pytest.approx(expected, rel=1e-9)
    # Fewer rows than features: singular covariances, still a finite distance.
    assert np.isfinite(frechet_distance(real[:5, :2].repeat(3, 1), fake[:5, :2].repeat(3, 1)))


def test_the_class_histogram_flags_mode_collapse() -> None:
    logits = torch.zeros(100, 10)
    logits[:, 3] = 1.0
    histogram = class_histogram(logits, 10)
    assert histogram[3] == 1.0 and classes_covered(histogram) == 1
    assert classes_covered(np.full(10, 0.1)) == 10


def gan(steps: int = 2, seed: int = 0, **overrides: object) -> DCGANTrainer:
    made = make_trainer(DCGANTrainer, "digits", overrides, seed=seed,
                        budget=Budget("steps", steps))
    assert isinstance(made, DCGANTrainer)
    return made


@pytest.mark.slow
def test_dcgan_learns_digits_far_below_an_untrained_generators_fid() -> None:
    """1,500 steps of the default config: classifier FID 62.3, 62.0 and 62.1 untrained,
    6.5, 5.1 and 8.2 trained, samples in 10, 10 and 9 classes (seeds 0, 1, 2)."""
    trainer = gan(steps=1500)
    validation = trainer.seed + PERIODIC_EVAL_SEED
    untrained = trainer.evaluate(1, validation)
    while trainer.budget_left() > 0:
        trainer.train_step()
    trained = trainer.evaluate(1, validation)
    assert untrained["eval/classes_covered"] <= 2
    assert trained["eval/fid"] < untrained["eval/fid"] / 4
    assert trained["eval/classes_covered"] >= 8


def test_a_conditional_gan_draws_the_classes_it_is_asked_for() -> None:
    trainer = gan(conditional=True)
    assert trainer.classes == 10
    labels = torch.tensor([0, 7])
    z = trainer.draw_noise(2, torch.Generator().manual_seed(0))
    assert trainer.generate(z, labels).shape == (2, 1, 8, 8)
    with torch.no_grad():
        trainer.generator_net.eval()
        other = trainer.generate(z, torch.tensor([1, 7]))
        same = trainer.generate(z, labels)
    assert not torch.equal(same[0], other[0]) and torch.equal(same[1], other[1])


def test_one_sided_label_smoothing_changes_only_the_real_images_target() -> None:
    # Same seed, same batch, same noise: only the real images' target differs (1 or 0.8).
    metrics = {smoothing: gan(steps=1, label_smoothing=smoothing).train_step()
               for smoothing in (0.0, 0.2)}
    assert metrics[0.2]["losses/d_loss"] != metrics[0.0]["losses/d_loss"]
    assert metrics[0.2]["charts/d_real"] == metrics[0.0]["charts/d_real"]


def test_an_epoch_of_steps_per_epoch_updates() -> None:
    trainer = make_trainer(DCGANTrainer, "digits", {"steps_per_epoch": 5, "batch_size": 500},
                           budget=Budget("epochs", 2))
    trainer.train_step()
    assert trainer.progress() == {"epochs": 1, "steps": 5}
    trainer.train_step()
    assert trainer.progress() == {"epochs": 2, "steps": 10} and trainer.budget_left() == 0
    assert trainer.shuffled.epochs == 3  # 1,437 images in batches of 500: three to a pass


@pytest.mark.parametrize("overrides", [
    {}, {"conditional": True, "label_smoothing": 0.1},
    {"noise": "gaussian", "dcgan_init": True, "steps_per_epoch": 2}],
    ids=["default", "conditional", "paper-init"])
def test_dcgan_keeps_the_plugin_contract(overrides: dict[str, object]) -> None:
    check_plugin(DCGANTrainer, "digits", overrides={"eval_samples": 50, **overrides})


def test_bad_input_is_refused_in_one_line() -> None:
    with pytest.raises(ConfigError, match="noise must be uniform or gaussian"):
        gan(noise="cauchy")
    with pytest.raises(GymkitError, match="bars-and-stripes has none"):
        make_trainer(DCGANTrainer, "bars-and-stripes", {"conditional": True})
    with pytest.raises(GymkitError, match="a classifier FID, which needs labels"):
        make_trainer(DCGANTrainer, "bars-and-stripes")  # before any training
