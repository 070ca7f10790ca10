"""From names and overrides to a ready Runner: new runs, resumed runs, and evaluation.

Config layers, later ones winning: the plugin's defaults, the env preset's
hyperparameters for that plugin, ``--config FILE``, ``--set key=value``, and
the explicit flags (``--seed``, ``--steps``, ...). Everything is validated
and the trainer is built *before* the run directory is created, so a bad
input leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import platform
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from toolkit import config as cfgs
from toolkit.checkpoint import load_checkpoint
from toolkit.data import DATASETS
from toolkit.device import resolve_device
from toolkit.environments import EnvPreset, EnvSource, resolve_env
from toolkit.errors import ConfigError, GymkitError
from toolkit.registry import AGENTS, GENERATIVE, Registry
from toolkit.rundir import RunDir
from toolkit.runner import Runner
from toolkit.seeding import seed_everything
from toolkit.trainer import Trainer

BUDGET_KEYS = ("steps", "episodes", "epochs")
KINDS: dict[str, Registry[type[Trainer]]] = {"agent": AGENTS, "generative": GENERATIVE}


@dataclass
class Prepared:
    """A validated, built run that has not started yet."""

    trainer: Trainer
    settings: cfgs.RunSettings
    spec: dict[str, Any]


def prepare(
    kind: str,
    target: str | None,
    plugin: str | None = None,
    *,
    config_file: str | Path | None = None,
    assignments: list[str] | None = None,
    flags: dict[str, Any] | None = None,
) -> Prepared:
    """Resolve names, merge config layers, build the trainer. Creates no files."""
    registry = KINDS[kind]
    preset: EnvPreset | None = None
    if kind == "agent":
        if target is None:
            raise GymkitError("name an environment, e.g. `gymkit run agent frozenlake`")
        source, preset = resolve_env(target)
        if plugin is None:
            plugin = _default_agent(target, preset, registry)
        source_spec: dict[str, Any] = {"env": source.to_dict()}
    else:
        if plugin is None:
            raise GymkitError("name a model, e.g. `gymkit run generative vae`")
    cls = registry.get(plugin)
    if kind == "generative":
        target = target or getattr(cls, "default_dataset", None)
        if target is None:
            raise GymkitError(f"{plugin} has no default dataset; pass --dataset")
        DATASETS.entry(target)
        source_spec = {"dataset": target}

    layers: list[dict[str, Any]] = []
    if preset is not None:
        layers.append(dict(preset.hyperparams.get(plugin, {})))
    if config_file is not None:
        layers.append(cfgs.load_yaml(config_file))
    layers.append(cfgs.parse_assignments(assignments or []))
    layers.append({k: v for k, v in (flags or {}).items() if v is not None})
    values = _merge(layers)
    if not any(values.get(k) is not None for k in BUDGET_KEYS):
        unit, amount = cls.default_budget
        values[unit] = amount

    cfg_values, run_values = cfgs.split(values, cls.Config, cfgs.RunSettings)
    cfg = cfgs.build(cls.Config, cfg_values)
    settings = cfgs.build(cfgs.RunSettings, run_values)
    unit, _ = settings.budget()
    if unit not in cls.budget_units:
        options = ", ".join(f"--{u}" for u in cls.budget_units)
        raise ConfigError(f"{plugin} cannot count its budget in {unit}; use {options}")
    assert target is not None
    spec = {
        "kind": kind,
        "plugin": plugin,
        "target": target,
        **source_spec,
        "config": cfg.to_dict(),
        "run": settings.to_dict(),
    }
    return Prepared(_build(cls, cfg, settings, spec), settings, spec)


def _build(cls: type[Trainer], cfg: cfgs.TrainerConfig, settings: cfgs.RunSettings,
           spec: dict[str, Any]) -> Trainer:
    device = resolve_device(settings.device)
    torch.set_num_threads(settings.threads)
    seed_everything(settings.seed)
    if spec["kind"] == "agent":
        source: Any = EnvSource.from_dict(spec["env"])
    else:
        source = DATASETS.get(spec["dataset"])()
    return cls(cfg, source, device, settings.seed)


def start(prepared: Prepared, runs_dir: str | Path = "runs", *, console: Console | None = None,
          quiet: bool = False, **runner_kwargs: Any) -> Runner:
    """Create the run directory, write config.json and return the runner (call ``.run()``)."""
    spec = prepared.spec
    rundir = RunDir.create(runs_dir, spec["plugin"], spec["target"], prepared.settings.seed)
    rundir.write_config({**spec, "versions": _versions(), "git_commit": _git_commit(),
                         "command": sys.argv})
    return Runner(prepared.trainer, prepared.settings, rundir, spec, console=console,
                  quiet=quiet, **runner_kwargs)


def rebuild(path: str | Path) -> tuple[RunDir, Prepared]:
    """The trainer and settings of an existing run, from its config.json."""
    rundir = RunDir.open(path)
    spec = rundir.read_config()
    try:
        kind, plugin = spec["kind"], spec["plugin"]
        cls = KINDS[kind].get(plugin)
        cfg = cfgs.build(cls.Config, spec["config"])
        settings = cfgs.build(cfgs.RunSettings, spec["run"])
    except KeyError as exc:
        raise GymkitError(f"{rundir.config_path} is missing {exc}; it is not a gymkit run") from exc
    spec = {k: spec[k] for k in ("kind", "plugin", "target", "config", "run", "env", "dataset")
            if k in spec}
    return rundir, Prepared(_build(cls, cfg, settings, spec), settings, spec)


def resume(path: str | Path, *, console: Console | None = None, quiet: bool = False,
           **runner_kwargs: Any) -> tuple[Runner, dict[str, Any]]:
    """A runner that continues the run in `path` from checkpoints/last.pt."""
    rundir, prepared = rebuild(path)
    status = rundir.read_summary().get("status")
    if status == "completed":
        raise GymkitError(f"{rundir} has already completed; start a new run with `gymkit run`")
    checkpoint = load_checkpoint(rundir.checkpoint("last"))
    runner = Runner(prepared.trainer, prepared.settings, rundir, prepared.spec, console=console,
                    quiet=quiet, **runner_kwargs)
    return runner, checkpoint


def _default_agent(target: str, preset: EnvPreset | None,
                   registry: Registry[type[Trainer]]) -> str:
    if preset is None:
        raise GymkitError(
            f"{target} has no default agent; pass --algo (one of: {', '.join(registry.names())})"
        )
    if preset.algo not in registry:
        raise GymkitError(
            f"{target}'s default agent '{preset.algo}' is not available in this install; "
            f"pass --algo (one of: {', '.join(registry.names())})"
        )
    return preset.algo


def _merge(layers: list[dict[str, Any]]) -> dict[str, Any]:
    """Later layers win; a budget in a later layer replaces any budget before it."""
    merged: dict[str, Any] = {}
    for layer in layers:
        if any(layer.get(k) is not None for k in BUDGET_KEYS):
            for k in BUDGET_KEYS:
                merged.pop(k, None)
        merged.update(layer)
    return merged


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for dist in ("gymkit", "gymnasium", "torch", "numpy", "stable-baselines3"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    return versions


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None
