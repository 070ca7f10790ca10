"""Metrics to TensorBoard and to metrics.jsonl.

TensorBoard tags keep fixed prefixes: ``charts/`` (episodes, exploration),
``losses/``, ``eval/``, ``time/`` (throughput), ``samples/`` and ``images/``
(pictures), ``weights/`` (histograms). metrics.jsonl holds one JSON object per
logging event and leaves out ``time/`` tags, so that two runs with one seed
write identical files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.tensorboard import SummaryWriter

TAG_PREFIXES = ("charts/", "losses/", "eval/", "time/", "samples/", "images/", "weights/")
WALL_CLOCK_PREFIX = "time/"


class RunLogger:
    """Writes scalars, images and the hyperparameter table of one run."""

    def __init__(self, run_path: Path, metrics_path: Path, *, resume_step: int | None = None,
                 keep_metric_lines: int | None = None) -> None:
        # purge_step drops events a crashed process wrote after its last checkpoint; those at
        # the checkpoint's own step were written before it and are kept.
        purge = None if resume_step is None else resume_step + 1
        self.writer = SummaryWriter(log_dir=str(run_path), purge_step=purge)
        if keep_metric_lines is not None and metrics_path.exists():
            lines = metrics_path.read_text().splitlines(keepends=True)[:keep_metric_lines]
            metrics_path.write_text("".join(lines))
        self._metrics = metrics_path.open("a")
        self.metric_lines = keep_metric_lines or 0

    def scalars(self, step: int, values: dict[str, float],
                extra: dict[str, Any] | None = None) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, global_step=step)
        record = {k: v for k, v in values.items() if not k.startswith(WALL_CLOCK_PREFIX)}
        if record:
            self._metrics.write(json.dumps({"step": step, **(extra or {}), **record}) + "\n")
            self._metrics.flush()
            self.metric_lines += 1

    def images(self, step: int, images: dict[str, np.ndarray]) -> None:
        for tag, image in images.items():
            self.writer.add_image(tag, image, global_step=step, dataformats="HWC")

    def hparams(self, sections: dict[str, dict[str, Any]]) -> None:
        """The resolved config as a markdown table under the ``hyperparameters`` text tag."""
        rows = [f"|{section}.{key}|{value}|" for section, values in sections.items()
                for key, value in values.items()]
        table = "|param|value|\n|-|-|\n" + "\n".join(rows)
        self.writer.add_text("hyperparameters", table, global_step=0)

    def flush(self) -> None:
        self.writer.flush()
        self._metrics.flush()

    def close(self) -> None:
        self.writer.close()
        self._metrics.close()
