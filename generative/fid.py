"""A "classifier FID": the Fréchet distance between real and generated images in the features
of a classifier trained on the same dataset, and the class histogram of the samples.

Inception weights cannot be downloaded here, and Inception features describe MNIST-like
images poorly anyway; a classifier of the dataset's own classes is a feature network that
knows what matters in them. The numbers are comparable only between models measured with
the same feature network (same dataset, same classifier), never with published Inception
FIDs. The feature network is any callable from a batch of images in [0, 1] to feature rows:
with Inception weights at hand, torchmetrics' ``FrechetInceptionDistance`` gives the
standard FID instead.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

Features = Callable[[torch.Tensor], torch.Tensor]


def frechet_distance(real: np.ndarray, fake: np.ndarray) -> float:
    """||mu_r - mu_f||^2 + Tr(S_r + S_f - 2 (S_r S_f)^(1/2)) between the Gaussians fitted to
    two sets of feature rows.

    Tr (S_r S_f)^(1/2) is computed as Tr (R S_f R)^(1/2) with R = S_r^(1/2), the two being
    equal for covariance matrices: symmetric square roots by eigendecomposition stay finite
    where the covariances are singular (fewer images than features), where scipy's
    ``sqrtm`` of the product warns and may return complex noise."""
    mu_r, mu_f = real.mean(axis=0), fake.mean(axis=0)
    sigma_r = np.atleast_2d(np.cov(real, rowvar=False))
    sigma_f = np.atleast_2d(np.cov(fake, rowvar=False))
    root_r = _psd_sqrt(sigma_r)
    cross = np.trace(_psd_sqrt(root_r @ sigma_f @ root_r))
    return float(((mu_r - mu_f) ** 2).sum() + np.trace(sigma_r) + np.trace(sigma_f)
                 - 2 * cross)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """The symmetric square root of a symmetric positive semi-definite matrix (rounding's
    negative eigenvalues taken as 0)."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


@torch.no_grad()
def features_of(features: Features, images: torch.Tensor, chunk: int = 1000) -> np.ndarray:
    return torch.cat([features(part) for part in images.split(chunk)]).double().cpu().numpy()


def class_histogram(logits: torch.Tensor, classes: int) -> np.ndarray:
    """The fraction of samples the classifier puts in each class."""
    counts = torch.bincount(logits.argmax(1), minlength=classes).double()
    return (counts / counts.sum()).cpu().numpy()


def classes_covered(histogram: np.ndarray, share: float = 0.2) -> int:
    """Classes that get at least `share` of a uniform share of the samples (mode collapse
    shows as few)."""
    return int((histogram >= share / len(histogram)).sum())
