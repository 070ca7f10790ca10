"""A generated dataset: `--dataset template-blobs`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from toolkit.data import DATASETS, Dataset, Split, dataset_source

CENTRES = ((-3.0, 0.0), (3.0, 0.0), (0.0, 4.0))
WEIGHTS = (0.5, 0.3, 0.2)
STD = 0.6


@DATASETS.register("template-blobs")
@dataset_source(shape=(2,), size="3,000", origin="generated")
def blobs(data_dir: Path | None) -> Dataset:
    """3,000 2-D points from three Gaussian blobs, generated (the same on every call)."""
    rng = np.random.default_rng(0)
    which = rng.choice(len(WEIGHTS), size=3000, p=WEIGHTS)
    points = (np.asarray(CENTRES)[which] + STD * rng.standard_normal((3000, 2)))
    points = points.astype(np.float32)
    return Dataset("template-blobs", {"train": Split(points[:2400]),
                                        "validation": Split(points[2400:2700]),
                                        "test": Split(points[2700:])},
                   value_range=(float(points.min()), float(points.max())), origin="generated")
