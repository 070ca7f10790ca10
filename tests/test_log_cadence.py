"""Training metrics are logged every `log_every` units, averaged over the calls between."""

from __future__ import annotations

import json
import time
from pathlib import Path

from test_mutants import _runner, _ScriptConfig, _Scripted

from toolkit.checkpoint import load_checkpoint
from toolkit.config import RunSettings
from toolkit.logger import EventWriter
from toolkit.runner import Runner
from toolkit.trainer import Budget, TrainerContext


def _settings(**values: int) -> RunSettings:
    return RunSettings(**{"steps": 6, "eval_every": 100, "checkpoint_every": 100,
                          "checkpoint_every_s": 0, "eval_episodes": 1,
                          "final_eval_episodes": 1, **values})


def _training_lines(path: Path) -> list[tuple[int, float]]:
    lines = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
    return [(line["step"], line["losses/steps"]) for line in lines if "losses/steps" in line]


def test_metrics_are_averaged_over_the_calls_between_two_logs(tmp_path: Path) -> None:
    runner = _runner(tmp_path, steps=6)
    runner.settings = _settings(log_every=3)
    runner.run()
    # losses/steps reports the count after each call: 1, 2, 3 | 4, 5, 6.
    assert _training_lines(runner.rundir.path) == [(3, 2.0), (6, 5.0)]


def test_an_evaluation_and_the_end_of_the_budget_log_what_is_pending(tmp_path: Path) -> None:
    runner = _runner(tmp_path, steps=7)
    runner.settings = _settings(steps=7, log_every=10, eval_every=3)
    runner.run()
    assert _training_lines(runner.rundir.path) == [(3, 2.0), (6, 5.0), (7, 7.0)]


def test_a_resumed_run_logs_the_same_averages_at_the_same_counts(tmp_path: Path) -> None:
    full = _runner(tmp_path / "full", steps=6)
    full.settings = _settings(log_every=3)
    full.run()

    def stop_at_4(runner: Runner) -> None:
        if runner.trainer.progress()["steps"] >= 4:
            runner.request_stop()

    first = _runner(tmp_path / "cut", steps=6, on_step=stop_at_4)
    first.settings = _settings(log_every=3)
    assert first.run().interrupted
    checkpoint = load_checkpoint(first.rundir.checkpoint("last"))
    assert checkpoint["loop"]["pending"] == {"losses/steps": [4.0]}  # logged at 6, not at 4
    trainer = _Scripted(_ScriptConfig(), None, TrainerContext("cpu", 0, Budget("steps", 6)))
    Runner(trainer, first.settings, first.rundir, first.spec, quiet=True).run(checkpoint)
    assert _training_lines(first.rundir.path) == _training_lines(full.rundir.path)


def test_a_new_event_file_sorts_after_the_ones_already_there(tmp_path: Path) -> None:
    # TensorBoard reads event files in name order; a counter compared as text could put a
    # file made in the same second before an older one.
    second = int(time.time())
    (tmp_path / f"events.out.tfevents.{second:010d}.host.1.9").write_bytes(b"")
    writer = EventWriter(tmp_path)
    writer.close()
    names = sorted(p.name for p in tmp_path.glob("events.out.tfevents.*"))
    assert names[0].endswith(".host.1.9")
    assert int(names[1].split(".")[3]) > second
