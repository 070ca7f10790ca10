"""scikit-learn estimators of deep belief networks: `DBNClassifier`, `DBNRegressor` and
`DBNTransformer` (fit / predict / predict_proba / transform, `get_params` / `set_params`),
so that a DBN goes into a `Pipeline` or a grid search:

    Pipeline([("dbn", DBNTransformer(hidden_layers=(256,))),
              ("logistic", LogisticRegression())])

Each fit pretrains the RBMs greedily (`generative.dbn_model.pretrain`); the classifier and
the regressor then fine-tune the network they initialize by backpropagation (plain SGD,
minibatches, dropout), the transformer outputs the top layer's hidden probabilities.
Inputs in [0, 1] feed Bernoulli visibles as probabilities; others (``visible="auto"``
decides) are standardized per feature and feed unit-variance Gaussian visibles. The
regressor standardizes its targets too, and predicts on their scale. `random_state` fixes
a fit: the weights, the batches and dropout are drawn from it (torch's global RNG is left
as it was).

`PRESETS` holds a textbook's settings, e.g. ``DBNClassifier(**PRESETS["classifier"])``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data
from torch.nn import functional as F

from generative.dbn_model import DeepBeliefNet, pretrain
from toolkit.seeding import global_rng_from

#: A textbook's DBN settings (those of the `deep-belief-network` package's examples).
PRESETS: dict[str, dict[str, Any]] = {
    "classifier": {"hidden_layers": (256, 256), "learning_rate_rbm": 0.05,
                   "learning_rate": 0.1, "n_epochs_rbm": 10, "n_iter_backprop": 100,
                   "batch_size": 32, "activation": "relu", "dropout": 0.2},
    "regressor": {"hidden_layers": (100,), "learning_rate_rbm": 0.01, "learning_rate": 0.01,
                  "n_epochs_rbm": 20, "n_iter_backprop": 200, "batch_size": 20,
                  "activation": "relu", "dropout": 0.0},
}

#: The least standard deviation a feature is divided by when it is standardized.
MIN_SCALE = 1e-8


class _DBNBase(BaseEstimator):
    """What the three estimators share: parameters, input scaling, pretraining."""

    def __init__(self, hidden_layers: tuple[int, ...] = (256,), learning_rate_rbm: float = 0.05,
                 learning_rate: float = 0.1, n_epochs_rbm: int = 10, n_iter_backprop: int = 100,
                 batch_size: int = 32, activation: str = "sigmoid", dropout: float = 0.0,
                 k: int = 1, visible: str = "auto", random_state: int | None = None,
                 device: str = "cpu") -> None:
        self.hidden_layers = hidden_layers
        self.learning_rate_rbm = learning_rate_rbm
        self.learning_rate = learning_rate
        self.n_epochs_rbm = n_epochs_rbm
        self.n_iter_backprop = n_iter_backprop
        self.batch_size = batch_size
        self.activation = activation
        self.dropout = dropout
        self.k = k
        self.visible = visible
        self.random_state = random_state
        self.device = device

    def _check_params(self) -> None:
        problems = []
        if not self.hidden_layers or any(int(h) < 1 for h in self.hidden_layers):
            problems.append(f"hidden_layers must be positive sizes, got {self.hidden_layers!r}")
        for name in ("n_epochs_rbm", "n_iter_backprop"):
            if int(getattr(self, name)) < 0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)!r}")
        for name in ("batch_size", "k"):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if not 0 <= self.dropout < 1:
            problems.append(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.visible not in ("auto", "bernoulli", "gaussian"):
            problems.append(f"visible must be auto, bernoulli or gaussian, got {self.visible!r}")
        if problems:
            raise ValueError("; ".join(problems))

    def _scale_fit(self, x: np.ndarray, unlabeled: Any = None) -> np.ndarray:
        """Chooses the visibles and remembers the scaling of the training inputs (`x`, then
        the rows of `unlabeled`, if any); returns them scaled."""
        if unlabeled is not None:
            more = validate_data(self, unlabeled, dtype=np.float64, reset=False)
            x = np.concatenate([x, more])
        gaussian = (self.visible == "gaussian" or
                    (self.visible == "auto" and (x.min() < 0 or x.max() > 1)))
        if self.visible == "bernoulli" and (x.min() < 0 or x.max() > 1):
            raise ValueError("visible='bernoulli' needs inputs in [0, 1]; scale them (e.g. "
                             "MinMaxScaler) or use visible='gaussian'")
        self.gaussian_visible_ = bool(gaussian)
        self.mean_ = x.mean(0) if gaussian else np.zeros(x.shape[1])
        self.scale_ = np.maximum(x.std(0), MIN_SCALE) if gaussian else np.ones(x.shape[1])
        return self._scaled(x)

    def _scaled(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean_) / self.scale_).astype(np.float32)

    def _tensor(self, x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(x, dtype=torch.float32, device=self.device)

    def _build_and_pretrain(self, x: np.ndarray, outputs: int,
                            generator: torch.Generator) -> torch.Tensor:
        """The network, pretrained on the scaled inputs `x`; returns them as a tensor."""
        self._check_params()
        data = self._tensor(x)
        self.net_ = DeepBeliefNet(x.shape[1], [int(h) for h in self.hidden_layers], outputs,
                                  gaussian_visible=self.gaussian_visible_,
                                  activation=self.activation, dropout=self.dropout,
                                  generator=generator).to(self.device)
        self.pretraining_errors_ = pretrain(
            self.net_, data, epochs=int(self.n_epochs_rbm), lr=self.learning_rate_rbm,
            batch_size=int(self.batch_size), generator=generator, k=int(self.k))
        return data

    def _generator(self) -> torch.Generator:
        seed = check_random_state(self.random_state).randint(np.iinfo(np.int32).max)
        return torch.Generator().manual_seed(int(seed))

    def _fine_tune(self, data: torch.Tensor, targets: torch.Tensor, classify: bool,
                   generator: torch.Generator) -> None:
        """`n_iter_backprop` epochs of minibatch SGD on cross-entropy or squared error."""
        net = self.net_
        optimizer = torch.optim.SGD(net.parameters(), lr=self.learning_rate)
        self.loss_curve_: list[float] = []
        net.train()
        for _ in range(int(self.n_iter_backprop)):
            order = torch.randperm(len(data), generator=generator).to(data.device)
            total = 0.0
            for start in range(0, len(data), int(self.batch_size)):
                index = order[start:start + int(self.batch_size)]
                output = net(data[index])
                loss = (F.cross_entropy(output, targets[index]) if classify
                        else F.mse_loss(output, targets[index]))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(index)
            self.loss_curve_.append(total / len(data))
        net.eval()

    @torch.no_grad()
    def _outputs(self, x: np.ndarray) -> torch.Tensor:
        check_is_fitted(self, "net_")
        x = validate_data(self, x, reset=False)
        self.net_.eval()
        return self.net_(self._tensor(self._scaled(x))).cpu()

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.random_state is None
        return tags


class DBNClassifier(ClassifierMixin, _DBNBase):
    """A DBN pretrained on the inputs, then fine-tuned as a softmax classifier."""

    def fit(self, X: Any, y: Any, X_unlabeled: Any = None) -> DBNClassifier:
        """Pretrains on `X` and `X_unlabeled` (more inputs without labels, if any), then
        fine-tunes on `X` and its labels `y`."""
        x, labels = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(labels)
        self.classes_, encoded = np.unique(labels, return_inverse=True)
        generator = self._generator()
        with global_rng_from(generator, self.device):
            data = self._build_and_pretrain(self._scale_fit(x, X_unlabeled),
                                            len(self.classes_), generator)
            targets = torch.as_tensor(encoded, dtype=torch.long, device=self.device)
            self._fine_tune(data[:len(x)], targets, classify=True, generator=generator)
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        return F.softmax(self._outputs(X).double(), dim=1).numpy()

    def predict(self, X: Any) -> np.ndarray:
        best = self._outputs(X).argmax(1).numpy()
        return self.classes_[best]


class DBNRegressor(RegressorMixin, _DBNBase):
    """A DBN pretrained on the inputs, then fine-tuned on the (standardized) targets by
    squared error."""

    def fit(self, X: Any, y: Any) -> DBNRegressor:
        x, targets = validate_data(self, X, y, dtype=np.float64, y_numeric=True,
                                   multi_output=True)
        self._single_output = targets.ndim == 1
        targets = targets.reshape(len(targets), -1)
        self.target_mean_ = targets.mean(0)
        self.target_scale_ = np.maximum(targets.std(0), MIN_SCALE)
        scaled = (targets - self.target_mean_) / self.target_scale_
        generator = self._generator()
        with global_rng_from(generator, self.device):
            data = self._build_and_pretrain(self._scale_fit(x), targets.shape[1], generator)
            self._fine_tune(data, self._tensor(scaled), classify=False, generator=generator)
        return self

    def predict(self, X: Any) -> np.ndarray:
        out = self._outputs(X).double().numpy() * self.target_scale_ + self.target_mean_
        return out[:, 0] if self._single_output else out

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


class DBNTransformer(TransformerMixin, _DBNBase):
    """Greedy layer-wise pretraining only; `transform` gives the top layer's hidden
    probabilities (unsupervised features)."""

    def fit(self, X: Any, y: Any = None) -> DBNTransformer:
        x = validate_data(self, X, dtype=np.float64)
        generator = self._generator()
        with global_rng_from(generator, self.device):
            self._build_and_pretrain(self._scale_fit(x), 0, generator)
        self.n_features_out_ = int(self.hidden_layers[-1])
        return self

    def transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "net_")
        x = validate_data(self, X, reset=False)
        return self.net_.up(self._tensor(self._scaled(x))).cpu().double().numpy()
