"""Small image helpers for TensorBoard: scalar fields as colour heatmaps."""

from __future__ import annotations

import numpy as np

# Viridis sampled at 8 points; linear interpolation between them is close enough
# for a heatmap and saves a matplotlib dependency.
_VIRIDIS = np.array([
    [68, 1, 84], [70, 50, 127], [54, 92, 141], [39, 127, 142],
    [31, 161, 135], [74, 194, 109], [159, 218, 58], [253, 231, 37],
], dtype=np.float64)


def heatmap(values: np.ndarray, *, cell: int = 32) -> np.ndarray:
    """A 2-D array -> HWC uint8 image, each entry drawn as a `cell`-pixel square."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"heatmap needs a 2-D array, got shape {values.shape}")
    low, high = float(values.min()), float(values.max())
    scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
    position = scaled * (len(_VIRIDIS) - 1)
    index = np.clip(np.floor(position).astype(int), 0, len(_VIRIDIS) - 2)
    frac = (position - index)[..., None]
    rgb = _VIRIDIS[index] * (1 - frac) + _VIRIDIS[index + 1] * frac
    image = np.repeat(np.repeat(rgb, cell, axis=0), cell, axis=1)
    return np.ascontiguousarray(image.round().astype(np.uint8))
