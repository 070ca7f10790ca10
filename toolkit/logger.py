"""Metrics to TensorBoard and to metrics.jsonl.

TensorBoard tags keep fixed prefixes: ``charts/`` (episodes, exploration),
``losses/``, ``eval/``, ``time/`` (throughput), ``samples/`` and ``images/``
(pictures), ``weights/`` (histograms). metrics.jsonl holds one JSON object per
logging event and leaves out ``time/`` tags, so that two runs with one seed
write identical files.

Events are written with tensorboard's own `EventFileWriter` and summary
protos rather than `torch.utils.tensorboard.SummaryWriter`: that class imports
torch (over a second here), and a run of a plugin without tensors should not
pay for it. What it adds on top (scalar, image and text summaries, the purge
event) is a few lines each.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from tensorboard.compat.proto.event_pb2 import Event, SessionLog
from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
from tensorboard.compat.proto.tensor_pb2 import TensorProto
from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto
from tensorboard.plugins.text.plugin_data_pb2 import TextPluginData
from tensorboard.summary.writer.event_file_writer import EventFileWriter

from toolkit.atomic import atomic_write

TAG_PREFIXES = ("charts/", "losses/", "eval/", "time/", "samples/", "images/", "weights/")
WALL_CLOCK_PREFIX = "time/"


def _wait_for_a_later_second(log_dir: Path) -> None:
    """TensorBoard reads a directory's event files in the order of their names, which start
    with the second the file was made in and end with a per-process counter compared as
    text ("10" before "9"). A resumed run's file made in the same second as the run's last
    one could be read first, its events before the earlier ones: wait (a second at most)
    until the clock has passed the newest file's second."""
    seconds = [int(parts[3]) for path in log_dir.glob("events.out.tfevents.*")
               if len(parts := path.name.split(".")) > 3 and parts[3].isdigit()]
    if seconds:
        while time.time() < max(seconds) + 1:
            time.sleep(0.01)


class EventWriter:
    """A TensorBoard event file: scalars, HWC uint8 images and markdown text."""

    def __init__(self, log_dir: Path, *, purge_step: int | None = None) -> None:
        _wait_for_a_later_second(log_dir)
        self._file = EventFileWriter(str(log_dir))
        if purge_step is not None:
            # TensorBoard drops every event at or after `purge_step` that an earlier writer
            # left in this directory: those a crashed process wrote after its last checkpoint.
            self._add(Event(step=purge_step, file_version="brain.Event:2"))
            self._add(Event(step=purge_step, session_log=SessionLog(status=SessionLog.START)))

    def scalar(self, tag: str, value: float, step: int) -> None:
        self._summary(Summary.Value(tag=tag, simple_value=float(value)), step)

    def image(self, tag: str, image: np.ndarray, step: int) -> None:
        from PIL import Image  # a dependency of tensorboard; only needed for images

        height, width, channels = image.shape
        png = io.BytesIO()
        Image.fromarray(image).save(png, format="PNG")
        encoded = Summary.Image(height=height, width=width, colorspace=channels,
                                encoded_image_string=png.getvalue())
        self._summary(Summary.Value(tag=tag, image=encoded), step)

    def text(self, tag: str, text: str, step: int) -> None:
        metadata = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(
            plugin_name="text", content=TextPluginData(version=0).SerializeToString()))
        tensor = TensorProto(dtype="DT_STRING", string_val=[text.encode()],
                             tensor_shape=TensorShapeProto(dim=[TensorShapeProto.Dim(size=1)]))
        self._summary(Summary.Value(tag=f"{tag}/text_summary", metadata=metadata,
                                    tensor=tensor), step)

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def _summary(self, value: Summary.Value, step: int) -> None:
        self._add(Event(step=step, summary=Summary(value=[value])))

    def _add(self, event: Event) -> None:
        event.wall_time = time.time()
        self._file.add_event(event)


class RunLogger:
    """Writes scalars, images and the hyperparameter table of one run."""

    def __init__(self, run_path: Path, metrics_path: Path, *, resume_step: int | None = None,
                 keep_metric_lines: int | None = None) -> None:
        # Events at the checkpoint's own step were written before it and are kept.
        purge = None if resume_step is None else resume_step + 1
        self.writer = EventWriter(run_path, purge_step=purge)
        self.metric_lines = 0
        if keep_metric_lines is not None and metrics_path.exists():
            lines = metrics_path.read_bytes().splitlines(keepends=True)[:keep_metric_lines]
            with atomic_write(metrics_path, "wb") as f:  # a kill now leaves the old file whole
                f.write(b"".join(lines))
            self.metric_lines = len(lines)
        self._metrics = metrics_path.open("a")

    def scalars(self, step: int, values: dict[str, float],
                extra: dict[str, Any] | None = None) -> None:
        for tag, value in values.items():
            self.writer.scalar(tag, value, step)
        record = {k: v for k, v in values.items() if not k.startswith(WALL_CLOCK_PREFIX)}
        if record:
            self._metrics.write(json.dumps({"step": step, **(extra or {}), **record}) + "\n")
            self._metrics.flush()
            self.metric_lines += 1

    def images(self, step: int, images: dict[str, np.ndarray]) -> None:
        for tag, image in images.items():
            self.writer.image(tag, image, step)

    def hparams(self, sections: dict[str, dict[str, Any]]) -> None:
        """The resolved config as a markdown table under the ``hyperparameters`` text tag."""
        rows = [f"|{section}.{key}|{value}|" for section, values in sections.items()
                for key, value in values.items()]
        table = "|param|value|\n|-|-|\n" + "\n".join(rows)
        self.writer.text("hyperparameters", table, 0)

    def flush(self) -> None:
        self.writer.flush()
        self._metrics.flush()

    def close(self) -> None:
        self.writer.close()
        self._metrics.close()
