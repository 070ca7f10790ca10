"""From names and overrides to a ready Runner: new runs, resumed runs, and evaluation.

Config layers, later ones winning: the plugin's defaults, the env preset's
hyperparameters for that plugin, ``--config FILE``, ``--set key=value``, and
the explicit flags (``--seed``, ``--steps``, ...). Everything is validated
and the trainer is built *before* the run directory is created, so a bad
input leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import platform
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import gymnasium as gym
from rich.console import Console

from toolkit import config as cfgs
from toolkit import trust as trust_module
from toolkit.checkpoint import check_state, load_checkpoint
from toolkit.data import DATASETS
from toolkit.device import resolve_device
from toolkit.environments import EnvPreset, EnvSource, resolve_env
from toolkit.errors import ConfigError, GymkitError, did_you_mean
from toolkit.registry import AGENTS, GENERATIVE, Registry, problems_hint
from toolkit.rundir import RunDir
from toolkit.runner import CHECKPOINT_KEYS, Runner
from toolkit.seeding import seed_everything
from toolkit.trainer import Agent, Budget, Trainer, TrainerContext

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
    hyperparams: str | None = None,
    data_dir: str | Path | None = None,
) -> Prepared:
    """Resolve names, merge config layers, build the trainer. Creates no files.

    `hyperparams` names one of the env preset's named hyperparameter sets (``--preset``);
    `data_dir` is where a generative trainer's dataset reads its files (``--data-dir``)."""
    registry = KINDS[kind]
    preset: EnvPreset | None = None
    named: dict[str, Any] | None = None
    if kind == "agent":
        if target is None:
            raise GymkitError("name an environment, e.g. `gymkit run agent frozenlake`")
        source, preset = resolve_env(target)
        if hyperparams is not None:
            named = _named_hyperparams(target, preset, hyperparams)
            plugin = _preset_algo(hyperparams, named, plugin)
        if plugin is None:
            plugin = _default_agent(target, source, preset, registry)
        source_spec: dict[str, Any] = {"env": source.to_dict()}
    else:
        if plugin is None:
            raise GymkitError("name a model, e.g. `gymkit run generative vae`")
    entry = registry.entry(plugin)
    cls = entry.obj
    if kind == "generative":
        target = target or getattr(cls, "default_dataset", None)
        if target is None:
            raise GymkitError(f"{plugin} has no default dataset; pass --dataset")
        DATASETS.entry(target)
        source_spec = {"dataset": target}
        if hyperparams is not None:
            named = _model_preset(entry.name, cls, hyperparams)
        if data_dir is not None:
            source_spec["data_dir"] = str(Path(data_dir).expanduser().resolve())
    elif data_dir is not None:
        raise GymkitError("--data-dir is for a generative trainer's dataset; an agent's env "
                          "reads no data files")

    layers: list[dict[str, Any]] = [dict(cls.default_run)]
    if named is not None:
        layers.append({k: v for k, v in named.items() if k != "algo"})
    elif preset is not None:
        layers.append(dict(preset.hyperparams.get(plugin, preset.hyperparams.get(entry.name, {}))))
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
    if settings.threads is None:  # recorded in config.json: a rerun uses the same count
        settings.threads = cls.preferred_threads(cfg)
    unit, amount = settings.budget()
    if unit not in cls.budget_units:
        options = ", ".join(f"--{u}" for u in cls.budget_units)
        raise ConfigError(f"{plugin} cannot count its budget in {unit}; use {options}")
    cls.check_budget(cfg, unit, amount)
    multiple = cls.budget_multiple(cfg)
    if amount % multiple:
        raise ConfigError(f"{plugin} with this config counts {unit} {multiple} at a time, so "
                          f"its budget must be a multiple of {multiple}; use --{unit} "
                          f"{amount + multiple - amount % multiple}")
    assert target is not None
    spec = {
        "kind": kind,
        "plugin": entry.name,
        "plugin_package": {"name": entry.source, "version": _version_of(entry.source)},
        "target": target,
        **source_spec,
        **({"hyperparams": hyperparams} if hyperparams is not None else {}),
        "config": cfg.to_dict(),
        "run": settings.to_dict(),
    }
    trainer = _build(cls, cfg, settings, spec)
    # A state that no checkpoint can hold would fail at the first checkpoint: say so now,
    # before a run directory exists.
    check_state(trainer.state_dict(), f"{entry.name}'s state_dict()")
    return Prepared(trainer, settings, spec)


def _named_hyperparams(target: str, preset: EnvPreset | None, name: str) -> dict[str, Any]:
    """The env preset's hyperparameter set `name`, with a clear error if there is none."""
    return _pick_preset(preset.presets if preset is not None else {}, name,
                        f"the environment {target}", target)


def _model_preset(plugin: str, cls: type[Trainer], name: str) -> dict[str, Any]:
    """The generative trainer's hyperparameter set `name`, with a clear error if there is none."""
    return _pick_preset(getattr(cls, "presets", {}), name, plugin, plugin)


def _pick_preset(sets: dict[str, dict[str, Any]], name: str, owner: str,
                 short: str) -> dict[str, Any]:
    if name not in sets:
        if not sets:
            raise ConfigError(f"--preset {name}: {owner} has no named hyperparameter sets; "
                              "drop --preset")
        raise ConfigError(f"--preset {name}: {short} has no such hyperparameter set"
                          f"{did_you_mean(name, sets)}; it has {', '.join(sorted(sets))}")
    return sets[name]


def _preset_algo(name: str, named: dict[str, Any], plugin: str | None) -> str | None:
    algo = named.get("algo")
    if plugin is not None and algo is not None and plugin != algo:
        raise ConfigError(f"--preset {name} is a set of {algo} hyperparameters, not {plugin}'s; "
                          f"drop --algo or use --algo {algo}")
    return plugin or algo


def _build(cls: type[Trainer], cfg: cfgs.TrainerConfig, settings: cfgs.RunSettings,
           spec: dict[str, Any], run_dir: Path | None = None) -> Trainer:
    device = resolve_device(settings.device, uses_torch=cls.uses_torch)
    if cls.uses_torch:
        import torch

        torch.set_num_threads(settings.threads or 1)
        torch.set_float32_matmul_precision(settings.matmul_precision)
    seed_everything(settings.seed)
    if spec["kind"] == "agent":
        source: Any = EnvSource.from_dict(spec["env"])
        if settings.device == "auto":
            device, note = auto_agent_device(device, source)
            if note is not None:
                spec["device_note"] = note
    else:
        data_dir = spec.get("data_dir")
        source = DATASETS.get(spec["dataset"]).load(Path(data_dir) if data_dir else None)
    unit, amount = settings.budget()
    context = TrainerContext(device, settings.seed, Budget(unit, amount), run_dir,
                             compile=settings.compile)
    return cls(cfg, source, context)


def auto_agent_device(device: str, source: EnvSource) -> tuple[str, str | None]:
    """What ``--device auto`` means for an agent: with a GPU, pixel agents use it, and agents
    on vector observations stay on the CPU, where small networks usually run faster (a
    batch of a few envs costs more in transfers and kernel launches than in arithmetic).
    Returns the device and, when auto chose the CPU over a GPU, why."""
    if device == "cpu":
        return device, None
    env = source.make(record_stats=False)
    try:
        space = env.observation_space
    finally:
        env.close()
    if isinstance(space, gym.spaces.Box) and len(space.shape) == 3:
        return device, None
    return "cpu", (f"--device auto chose the CPU over {device}: {source.id}'s observations "
                   "are not images, and small networks usually run faster on the CPU; pass "
                   f"--device {device} to use the GPU")


def start(prepared: Prepared, runs_dir: str | Path = "runs", *, console: Console | None = None,
          quiet: bool = False, **runner_kwargs: Any) -> Runner:
    """Create the run directory, write config.json and return the runner (call ``.run()``)."""
    spec = prepared.spec
    rundir = RunDir.create(runs_dir, spec["plugin"], spec["target"], prepared.settings.seed)
    rundir.write_config({**spec, "versions": _versions(), "git_commit": _git_commit(),
                         "command": sys.argv})
    prepared.trainer.ctx = dataclasses.replace(prepared.trainer.ctx, run_dir=rundir.path)
    return Runner(prepared.trainer, prepared.settings, rundir, spec, console=console,
                  quiet=quiet, **runner_kwargs)


def rebuild(path: str | Path, device: str | None = None, *, trust: bool = False,
            vouched: Iterable[str] = ()) -> tuple[RunDir, Prepared]:
    """The trainer and settings of an existing run, from its config.json; `device` replaces
    the recorded one (a run trained on a GPU evaluated on a CPU-only machine).

    config.json is data: an env setup entry, wrapper or ``module:`` env id that no installed
    package declares is refused (`toolkit.trust`) unless `trust`, or `vouched` names it."""
    rundir = RunDir.open(path)
    spec = rundir.read_config()
    needed = ("kind", "plugin", "target", "config", "run")
    missing = [k for k in (*needed, "env" if spec.get("kind") == "agent" else "dataset")
               if k not in spec]
    if missing or spec["kind"] not in KINDS:
        what = f"has no {', '.join(repr(k) for k in missing)}" if missing else \
            f"names an unknown kind {spec['kind']!r}"
        raise GymkitError(f"{rundir.config_path} {what}; it was not written by gymkit or was "
                          "edited by hand")
    if not all(isinstance(spec[k], dict) for k in ("config", "run", "env") if k in spec):
        raise GymkitError(f"{rundir.config_path} is not a gymkit config.json (its config, run "
                          "or env entry is not a mapping); it was edited by hand")
    if spec["kind"] == "agent":
        trust_module.check_env(spec["env"], str(rundir.config_path), trust=trust,
                               vouched=vouched)
    package = spec.get("plugin_package") or {}
    registry = KINDS[spec["kind"]]
    qualified = f"{package['name']}:{spec['plugin']}" if package.get("name") else spec["plugin"]
    cls = registry.get(qualified if qualified in registry else spec["plugin"])
    cfg = cfgs.build(cls.Config, spec["config"])
    if device is not None:
        spec["run"] = {**spec["run"], "device": device}
    else:
        _check_recorded_device(rundir, str(spec["run"].get("device", "auto")))
    settings = cfgs.build(cfgs.RunSettings, spec["run"])
    spec = {k: spec[k] for k in ("kind", "plugin", "plugin_package", "target", "config", "run",
                                 "env", "dataset", "data_dir") if k in spec}
    return rundir, Prepared(_build(cls, cfg, settings, spec, rundir.path), settings, spec)


def _check_recorded_device(rundir: RunDir, device: str) -> None:
    """A run trained on a GPU, rebuilt on a machine without one: say what can be done here
    (`--device` belongs to `gymkit run`, and a resumed run keeps its device)."""
    if not device.startswith("cuda"):
        return
    import torch

    if not torch.cuda.is_available():
        raise GymkitError(f"{rundir} was trained with --device {device} and CUDA is not "
                          "available here; continue or rerun it on a machine with a GPU, or "
                          f"evaluate it here with `gymkit eval {rundir} --device cpu`")


def plugin_version_change(spec: dict[str, Any]) -> str | None:
    """A warning when the plugin's package is not the version that started the run."""
    package = spec.get("plugin_package") or {}
    name, then = package.get("name"), package.get("version")
    now = _version_of(name) if name else None
    if then is None or now == then:
        return None
    return (f"{spec['plugin']} comes from {name} {now or '(not installed)'} now, but the run "
            f"was started with {then}; the resumed run may differ")


def resume(path: str | Path, *, console: Console | None = None, quiet: bool = False,
           trust: bool = False, vouched: Iterable[str] = (),
           **runner_kwargs: Any) -> tuple[Runner, dict[str, Any]]:
    """A runner that continues the run in `path` from checkpoints/last.pt (`trust` and
    `vouched` as for `rebuild`)."""
    rundir, prepared = rebuild(path, trust=trust, vouched=vouched)
    status = rundir.read_summary().get("status")
    if status == "completed":
        raise GymkitError(f"{rundir} has already completed; start a new run with `gymkit run`")
    checkpoint = load_checkpoint(rundir.checkpoint("last"), require=CHECKPOINT_KEYS)
    change = plugin_version_change(prepared.spec)
    if change is not None:
        Console(stderr=True).print(f"[yellow]warning:[/] {change}", highlight=False)
    runner = Runner(prepared.trainer, prepared.settings, rundir, prepared.spec, console=console,
                    quiet=quiet, **runner_kwargs)
    return runner, checkpoint


def _default_agent(target: str, source: EnvSource, preset: EnvPreset | None,
                   registry: Registry[type[Trainer]]) -> str:
    if preset is not None and preset.algo in registry:
        return preset.algo
    fitting = fitting_agents(source, registry)
    options = (f"pass --algo (one of: {', '.join(fitting)})" if fitting else
               "no installed agent fits its spaces; install a plugin that does (see `gymkit "
               "list`) and pass --algo")
    if preset is None:
        raise GymkitError(f"{target} has no default agent; {options}{problems_hint()}")
    raise GymkitError(f"{target}'s default agent '{preset.algo}' is not available in this "
                      f"install; {options}{problems_hint()}")


def fitting_agents(source: EnvSource, registry: Registry[type[Trainer]]) -> list[str]:
    """The registered agents that can work with the spaces of `source`'s env."""
    env = source.make(record_stats=False)
    try:
        spaces = env.observation_space, env.action_space
    finally:
        env.close()
    names = []
    for name in registry.names():
        cls = registry.get(name)
        if issubclass(cls, Agent) and cls.incompatibility(*spaces) is None:
            names.append(name)
    return names


def _merge(layers: list[dict[str, Any]]) -> dict[str, Any]:
    """Later layers win, a mapping (``hyperparams``) key by key; a budget in a later layer
    replaces any budget before it."""
    values: dict[str, Any] = {}
    for layer in layers:
        if any(layer.get(k) is not None for k in BUDGET_KEYS):
            for k in BUDGET_KEYS:
                values.pop(k, None)
        values = cfgs.merged(values, layer)
    return values


def _version_of(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


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
