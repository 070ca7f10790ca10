"""The image classifier: learning on digits, its features, the contract, its errors."""

from __future__ import annotations

import pytest

from generative.classifier import ClassifierTrainer
from toolkit.errors import ConfigError, GymkitError
from toolkit.testing import check_plugin, make_trainer
from toolkit.trainer import PERIODIC_EVAL_SEED, Budget


def classifier(epochs: int = 20, seed: int = 0, **overrides: object) -> ClassifierTrainer:
    made = make_trainer(ClassifierTrainer, "digits", overrides, seed=seed,
                        budget=Budget("epochs", epochs))
    assert isinstance(made, ClassifierTrainer)
    return made


@pytest.mark.slow
@pytest.mark.parametrize(("architecture", "bound"), [("mlp", 0.93), ("cnn", 0.95)])
def test_the_classifier_learns_digits(architecture: str, bound: float) -> None:
    """20 epochs, validation accuracy: mlp 0.961 / 0.956 / 0.950, cnn 0.978 / 0.972 / 0.978
    (seeds 0, 1, 2); chance is 0.1."""
    model = classifier(architecture=architecture)
    before = model.evaluate(1, model.seed + PERIODIC_EVAL_SEED)["eval/accuracy"]
    while model.budget_left() > 0:
        model.train_step()
    after = model.evaluate(1, model.seed + PERIODIC_EVAL_SEED)
    assert before < 0.3 and after["eval/accuracy"] > bound
    x, _ = model.eval_data("validation")
    assert model.model.features(x[:5]).shape == (5, 256)
    confusion = model.images()["images/confusion"]
    assert confusion.shape == (160, 160, 3)


@pytest.mark.parametrize("architecture", ["mlp", "cnn"])
def test_the_classifier_keeps_the_plugin_contract(architecture: str) -> None:
    check_plugin(ClassifierTrainer, "digits", overrides={"architecture": architecture})


def test_bad_input_is_refused_in_one_line() -> None:
    with pytest.raises(GymkitError, match="bars-and-stripes has no labels"):
        make_trainer(ClassifierTrainer, "bars-and-stripes")
    with pytest.raises(ConfigError, match="architecture must be mlp or cnn"):
        classifier(architecture="rnn")
    with pytest.raises(ConfigError, match="hidden sizes must be positive"):
        classifier(hidden=[])
