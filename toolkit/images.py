"""Small image helpers for TensorBoard: scalar fields as colour heatmaps, image grids."""

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


def display_scale(side: int) -> int:
    """How many times larger to draw images of `side` pixels in a grid: to about 56 pixels
    (8x8 digits 7 times larger, 28x28 images twice)."""
    return max(1, 56 // side)


def image_grid(images: np.ndarray, *, columns: int = 8, padding: int = 2, scale: int = 1,
               pad_value: float = 1.0) -> np.ndarray:
    """A batch ``(N, C, H, W)`` of values in [0, 1] (C = 1 or 3) -> one HWC uint8 RGB image,
    `columns` to a row, `padding` pixels between them, each pixel drawn `scale` times.

    What torchvision's ``make_grid`` does; torchvision is an optional dependency (its PyPI
    wheels cannot be imported beside a CPU-only torch build), and this is a few lines."""
    images = np.asarray(images, dtype=np.float64)
    if images.ndim != 4 or images.shape[1] not in (1, 3) or len(images) == 0:
        raise ValueError(f"image_grid needs a batch (N, 1 or 3, H, W), got shape {images.shape}")
    if images.shape[1] == 1:
        images = np.repeat(images, 3, axis=1)
    images = np.repeat(np.repeat(np.clip(images, 0.0, 1.0), scale, axis=2), scale, axis=3)
    n, _, height, width = images.shape
    columns = min(columns, n)
    rows = -(-n // columns)
    step_y, step_x = height + padding, width + padding
    grid = np.full((3, rows * step_y + padding, columns * step_x + padding), pad_value)
    for i, image in enumerate(images):
        y, x = padding + (i // columns) * step_y, padding + (i % columns) * step_x
        grid[:, y:y + height, x:x + width] = image
    return np.ascontiguousarray((grid.transpose(1, 2, 0) * 255).round().astype(np.uint8))
