"""A generated dataset: `--dataset template-blobs`."""

from __future__ import annotations

import torch
from toolkit.data import DATASETS

CENTRES = ((-3.0, 0.0), (3.0, 0.0), (0.0, 4.0))
WEIGHTS = (0.5, 0.3, 0.2)
STD = 0.6


@DATASETS.register("template-blobs")
def blobs() -> dict[str, torch.Tensor]:
    """3,000 2-D points from three Gaussian blobs, generated (the same on every call)."""
    generator = torch.Generator().manual_seed(0)
    which = torch.multinomial(torch.tensor(WEIGHTS), 3000, replacement=True,
                              generator=generator)
    points = torch.tensor(CENTRES)[which] + STD * torch.randn(3000, 2, generator=generator)
    return {"train": points[:2400], "test": points[2400:]}
