"""Deep belief networks: the model (`generative.dbn_model`) and the scikit-learn estimators
(`generative.dbn_sklearn`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_diabetes, load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import mean_squared_error
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.utils.estimator_checks import check_estimator

from generative.dbn_model import DeepBeliefNet, LayerPretraining, pretrain
from generative.dbn_sklearn import PRESETS, DBNClassifier, DBNRegressor, DBNTransformer
from generative.rbm_model import RBM

SMALL: dict[str, Any] = {"hidden_layers": (16,), "n_epochs_rbm": 2, "n_iter_backprop": 30,
                         "random_state": 0}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _digits(test_size: float = 0.2) -> list[np.ndarray]:
    x, y = load_digits(return_X_y=True)
    return train_test_split(x / 16.0, y, test_size=test_size, random_state=0, stratify=y)


# -- the model --------------------------------------------------------------------------


def test_the_layers_take_the_pretrained_weights_and_compute_the_hidden_probabilities() -> None:
    generator = torch.Generator().manual_seed(0)
    net = DeepBeliefNet(64, [32, 16], 10, activation="sigmoid", generator=generator)
    data = torch.as_tensor(_digits()[0][:200], dtype=torch.float32)
    errors = pretrain(net, data, epochs=3, lr=0.05, batch_size=20, generator=generator)
    assert [len(layer) for layer in errors] == [3, 3]
    for rbm, layer in zip(net.rbms, net.layers, strict=True):
        assert isinstance(rbm, RBM)
        assert torch.equal(layer.weight, rbm.weight.t())
        assert torch.equal(layer.bias, rbm.hidden_bias)
    # Without dropout, a sigmoid layer computes its RBM's hidden probabilities: the
    # network's top layer is the unsupervised features.
    net.head = None
    net.eval()
    assert torch.allclose(net(data), net.up(data), atol=1e-6)
    first = net.rbms[0]
    assert isinstance(first, RBM)
    assert torch.allclose(net.up(data, 1), first.hidden_probabilities(data))


def test_the_layer_above_is_pretrained_on_the_probabilities_below() -> None:
    generator = torch.Generator().manual_seed(1)
    net = DeepBeliefNet(64, [32, 16], 10, generator=generator)
    data = torch.as_tensor(_digits()[0][:100], dtype=torch.float32)
    pretrain(net, data, epochs=1, lr=0.05, batch_size=100, generator=generator)
    below = net.up(data, 1)
    # The second RBM's visible biases are the data's: log(p / (1 - p)) of layer 1's means.
    p = below.mean(0).clamp(1e-3, 1 - 1e-3)
    top = net.rbms[1]
    assert isinstance(top, RBM)
    # One batch of one epoch moved them by lr * (mean(v0) - mean(v1)) from that start.
    assert torch.allclose(top.visible_bias, torch.log(p / (1 - p)), atol=0.05)


def test_pretraining_lowers_the_reconstruction_error_and_momentum_switches() -> None:
    generator = torch.Generator().manual_seed(0)
    rbm = RBM(64, 32, generator=generator)
    layer = LayerPretraining(rbm, lr=0.1, switch_epochs=2)
    data = torch.as_tensor(_digits()[0], dtype=torch.float32)
    errors, momenta = [], []
    for _ in range(4):
        errors.append(layer.epoch(data, 20, generator))
        momenta.append(layer.optimizer.param_groups[0]["momentum"])
    assert momenta == [0.5, 0.5, 0.9, 0.9]
    assert errors[-1] < 0.7 * errors[0]


def test_without_pretraining_the_layers_keep_their_own_initialization() -> None:
    net = DeepBeliefNet(64, [32], 10, generator=torch.Generator().manual_seed(0))
    before = net.layers[0].weight.clone()
    assert pretrain(net, torch.rand(50, 64), epochs=0, lr=0.1, batch_size=10,
                    generator=torch.Generator()) == []
    assert torch.equal(net.layers[0].weight, before)


# -- the estimators -------------------------------------------------------------------------


def test_the_textbook_classifier_reaches_95_percent_on_digits() -> None:
    """Measured: 0.969 (random_state 0, 20% of digits held out; 4 s)."""
    x_train, x_test, y_train, y_test = _digits()
    classifier = DBNClassifier(**PRESETS["classifier"], random_state=0).fit(x_train, y_train)
    assert classifier.score(x_test, y_test) >= 0.95
    assert classifier.predict_proba(x_test).shape == (len(x_test), 10)
    assert np.allclose(classifier.predict_proba(x_test).sum(1), 1.0)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pretraining_beats_random_initialization_with_few_labels(seed: int) -> None:
    """The classic claim: a sigmoid network fine-tuned on 100 labelled digits (10 per
    class), pretrained on the other 1,157 training images without their labels, against
    the same network trained from its random initialization. Measured on held-out 30%
    (seeds 0/1/2): pretrained 0.878 / 0.906 / 0.887, random 0.293 / 0.276 / 0.294."""
    x_train, x_test, y_train, y_test = _digits(test_size=0.3)
    rng = np.random.default_rng(seed)
    labelled = np.concatenate([rng.choice(np.flatnonzero(y_train == c), 10, replace=False)
                               for c in range(10)])
    unlabelled = np.setdiff1d(np.arange(len(x_train)), labelled)
    params = {**PRESETS["classifier"], "activation": "sigmoid", "learning_rate": 1.0,
              "random_state": seed}
    scores = []
    for rbm_epochs in (10, 0):
        model = DBNClassifier(**{**params, "n_epochs_rbm": rbm_epochs})
        model.fit(x_train[labelled], y_train[labelled], X_unlabeled=x_train[unlabelled])
        scores.append(model.score(x_test, y_test))
    pretrained, random_init = scores
    assert pretrained >= 0.8
    assert pretrained > random_init + 0.3


def test_the_textbook_regressor_beats_predicting_the_mean_on_diabetes() -> None:
    """Measured (random_state 0, 20% held out): mean squared error 3,816 against 5,135 for
    the training targets' mean; R^2 0.26."""
    x, y = load_diabetes(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0)
    regressor = DBNRegressor(**PRESETS["regressor"], random_state=0).fit(x_train, y_train)
    assert regressor.gaussian_visible_  # standardized real inputs: Gaussian visibles
    ours = mean_squared_error(y_test, regressor.predict(x_test))
    mean = mean_squared_error(y_test, np.full_like(y_test, y_train.mean()))
    assert ours < 0.85 * mean


def test_the_transformer_goes_into_a_pipeline() -> None:
    """Measured: 0.942 and 0.942 (random_state 0 and 1); logistic regression on the pixels
    0.967 (1 s each)."""
    x_train, x_test, y_train, y_test = _digits()
    pipeline = Pipeline([
        ("dbn", DBNTransformer(hidden_layers=(256,), learning_rate_rbm=0.05, n_epochs_rbm=10,
                               batch_size=32, random_state=0)),
        ("logistic", LogisticRegression(max_iter=1000))]).fit(x_train, y_train)
    assert pipeline.score(x_test, y_test) >= 0.9
    features = pipeline.named_steps["dbn"].transform(x_test)
    assert features.shape == (len(x_test), 256)
    assert features.min() >= 0 and features.max() <= 1


@pytest.mark.parametrize("estimator", [DBNClassifier(**SMALL, learning_rate=0.1),
                                       DBNRegressor(**SMALL, learning_rate=0.05),
                                       DBNTransformer(**SMALL)],
                         ids=["classifier", "regressor", "transformer"])
def test_the_estimators_pass_scikit_learns_checks(estimator: Any) -> None:
    """scikit-learn's own `check_estimator`, every check but one that it skips itself
    (`check_array_api_input`, which runs only with SCIPY_ARRAY_API=1 and array-API
    libraries installed)."""
    results = check_estimator(estimator, on_fail=None)
    failed = [(r["check_name"], r["exception"]) for r in results if r["status"] == "failed"]
    assert failed == []
    skipped = {r["check_name"] for r in results if r["status"] == "skipped"}
    assert skipped <= {"check_array_api_input"}


def test_a_random_state_fixes_a_fit_and_leaves_torchs_global_rng_alone() -> None:
    x_train, x_test, y_train, _ = _digits()
    params = {**SMALL, "dropout": 0.3}
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first = DBNClassifier(**params).fit(x_train, y_train).predict_proba(x_test)
    assert torch.equal(torch.get_rng_state(), before)
    second = clone(DBNClassifier(**params)).fit(x_train, y_train).predict_proba(x_test)
    assert np.array_equal(first, second)
    other = DBNClassifier(**{**params, "random_state": 1}).fit(x_train, y_train)
    assert not np.array_equal(first, other.predict_proba(x_test))


@pytest.mark.parametrize("params, message", [
    ({"hidden_layers": ()}, "hidden_layers must be positive sizes"),
    ({"hidden_layers": (8, 0)}, "hidden_layers must be positive sizes"),
    ({"dropout": 1.0}, "dropout must be in [0, 1)"),
    ({"batch_size": 0}, "batch_size must be >= 1"),
    ({"visible": "binary"}, "visible must be auto, bernoulli or gaussian"),
])
def test_bad_parameters_are_named(params: dict[str, Any], message: str) -> None:
    x_train, _, y_train, _ = _digits()
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace(")", r"\)")
                       .replace("(", r"\(")):
        DBNClassifier(**{**SMALL, **params}).fit(x_train, y_train)


def test_bernoulli_visibles_refuse_inputs_outside_0_1() -> None:
    x_train, _, y_train, _ = _digits()
    with pytest.raises(ValueError, match="needs inputs in \\[0, 1\\]"):
        DBNClassifier(**SMALL, visible="bernoulli").fit(x_train * 16, y_train)


def test_real_inputs_are_standardized_for_gaussian_visibles() -> None:
    """Inputs outside [0, 1] are standardized per feature: a shift and a scale of each
    feature change nothing the network sees."""
    x, _ = load_diabetes(return_X_y=True)
    transformer = DBNTransformer(**SMALL)
    features = transformer.fit(x).transform(x)
    assert transformer.gaussian_visible_
    moved = x * np.linspace(1, 100, x.shape[1]) + 7.0
    assert np.allclose(DBNTransformer(**SMALL).fit(moved).transform(moved), features,
                       atol=1e-4)
