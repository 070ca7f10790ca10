"""MNIST-format images for the benchmarks, with numpy alone (the plain programs that the
benchmarks time as whole processes read their data without importing torch): made here
from scikit-learn's digits, or MNIST's own read from its IDX file."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np


def read_idx_images(folder: Path) -> np.ndarray:
    """MNIST's training images (its IDX file, gzipped or not), as floats in [0, 1] of shape
    (N, 1, 28, 28)."""
    path = folder / "train-images-idx3-ubyte"
    if path.exists():
        raw = path.read_bytes()
    else:
        with gzip.open(folder / "train-images-idx3-ubyte.gz") as f:
            raw = f.read()
    data = np.frombuffer(raw, dtype=np.uint8, offset=16)
    return (data.reshape(-1, 1, 28, 28) / np.float32(255)).astype(np.float32)


def mnist_format(n: int, seed: int) -> np.ndarray:
    """`n` 28x28 images in [0, 1]: upscaled digits, shifted by up to 3 pixels, noised."""
    from sklearn.datasets import load_digits

    rng = np.random.default_rng(seed)
    digits = load_digits().images / 16.0
    big = digits.repeat(3, axis=1).repeat(3, axis=2)  # 24x24
    images = np.zeros((n, 28, 28), dtype=np.float32)
    which, dy, dx = rng.integers(len(big), size=n), rng.integers(5, size=n), rng.integers(5, size=n)
    for i in range(n):
        images[i, dy[i]:dy[i] + 24, dx[i]:dx[i] + 24] = big[which[i]]
    images += rng.normal(0.0, 0.05, images.shape).astype(np.float32)
    return np.clip(images, 0.0, 1.0)[:, None]
