"""`check_plugin`: the contract every trainer must pass, like gymnasium's `check_env`.

Plugin authors call it from their own tests::

    from toolkit.testing import check_plugin
    def test_my_agent():
        check_plugin(MyAgent, "frozenlake", overrides={"steps_per_call": 50})

It checks a smoke run, config errors, determinism, the checkpoint round trip
through a real file, and that resuming from a checkpoint continues exactly as
an uninterrupted run would.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import torch

from toolkit.checkpoint import load_checkpoint, save_checkpoint
from toolkit.config import build
from toolkit.data import DATASETS
from toolkit.environments import resolve_env
from toolkit.errors import ConfigError
from toolkit.logger import TAG_PREFIXES
from toolkit.seeding import global_rng_state, seed_everything, set_global_rng_state
from toolkit.trainer import Agent, Trainer


class PluginContractError(AssertionError):
    """A plugin breaks the trainer contract; the message says which part."""


def make_trainer(cls: type[Trainer], target: str, overrides: dict[str, Any] | None = None,
                 seed: int = 0) -> Trainer:
    """Build `cls` on an env name (agents) or a dataset name (generative), on the CPU."""
    cfg = build(cls.Config, overrides or {})
    seed_everything(seed)
    source: Any = resolve_env(target)[0] if cls.kind == "agent" else DATASETS.get(target)()
    return cls(cfg, source, torch.device("cpu"), seed)


def check_plugin(cls: type[Trainer], target: str, *, overrides: dict[str, Any] | None = None,
                 steps: int = 3) -> None:
    """Raise PluginContractError if `cls` breaks the trainer contract."""
    _check_config_errors(cls)
    a = make_trainer(cls, target, overrides)
    history_a = [_checked_step(a) for _ in range(2 * steps)]
    _check_evaluate(a)

    b = make_trainer(cls, target, overrides)
    history_b = [_checked_step(b) for _ in range(steps)]
    _expect(history_b == history_a[:steps], "two trainers with one seed reported different "
                                            "metrics: training is not deterministic")
    with tempfile.TemporaryDirectory() as tmp:
        path = save_checkpoint(Path(tmp) / "check.pt",
                               {"trainer": b.state_dict(), "rng": global_rng_state()})
        saved = load_checkpoint(path)
    state = saved["trainer"]
    _expect(_equal(state, b.state_dict()), "state_dict changed on its way through a checkpoint "
                                           "file: keep it to tensors, numbers, strings, lists")

    c = make_trainer(cls, target, overrides, seed=1)
    c.load_state_dict(state)
    set_global_rng_state(saved["rng"])  # as the runner does on resume
    _expect(c.progress() == b.progress(), "load_state_dict did not restore progress()")
    history_c = [_checked_step(c) for _ in range(steps)]
    _expect(history_c == history_a[steps:], "a trainer resumed from a checkpoint reported other "
                                            "metrics than an uninterrupted one")
    _expect(_equal(c.state_dict(), a.state_dict()),
            "a trainer resumed from a checkpoint ended in another state than an uninterrupted one")
    for trainer in (a, b, c):
        trainer.close()


def _check_config_errors(cls: type[Trainer]) -> None:
    try:
        cls.Config()
    except Exception as exc:
        raise PluginContractError(f"{cls.Config.__name__}() with defaults failed: {exc}") from exc
    try:
        build(cls.Config, {"no_such_key_": 1})
    except ConfigError:
        pass
    else:
        raise PluginContractError("an unknown config key did not raise ConfigError")
    for name, text in cls.Config.help().items():
        _expect(bool(text), f"config field '{name}' has no help text; declare it with param()")


def _checked_step(trainer: Trainer) -> dict[str, float]:
    before = trainer.progress()
    metrics = trainer.train_step()
    after = trainer.progress()
    _expect(isinstance(metrics, dict), "train_step must return a dict of floats")
    for tag, value in metrics.items():
        _expect(tag.startswith(TAG_PREFIXES), f"metric '{tag}' lacks a tag prefix {TAG_PREFIXES}")
        _expect(isinstance(value, (int, float)) and math.isfinite(value),
                f"metric '{tag}' is not a finite number: {value!r}")
    unit = trainer.progress_unit
    _expect(after[unit] > before[unit], f"train_step did not advance progress()['{unit}']")
    return metrics


def _check_evaluate(trainer: Trainer) -> None:
    result = trainer.evaluate(3)
    _expect(trainer.eval_metric in result,
            f"evaluate() lacks the metric '{trainer.eval_metric}' that picks best.pt")
    for tag, value in result.items():
        _expect(tag.startswith("eval/") and math.isfinite(value),
                f"evaluate() returned '{tag}': {value!r}; want finite numbers under eval/")
    if isinstance(trainer, Agent):
        env = trainer.source.make()
        obs, _ = env.reset(seed=0)
        action = trainer.predict(obs)
        _expect(env.action_space.contains(action),
                f"predict() returned {action!r}, not in the action space")
        env.close()


def _equal(x: Any, y: Any) -> bool:
    if isinstance(x, torch.Tensor) or isinstance(y, torch.Tensor):
        return (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)
                and x.dtype == y.dtype and x.shape == y.shape and torch.equal(x, y))
    if isinstance(x, dict) and isinstance(y, dict):
        return x.keys() == y.keys() and all(_equal(x[k], y[k]) for k in x)
    if isinstance(x, (list, tuple)) and isinstance(y, (list, tuple)):
        return len(x) == len(y) and all(_equal(a, b) for a, b in zip(x, y, strict=True))
    return bool(x == y)


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise PluginContractError(message)
