"""`check_plugin`: the contract every trainer must pass, like gymnasium's `check_env`.

Plugin authors call it from their own tests::

    from toolkit.testing import check_plugin
    def test_my_agent():
        check_plugin(MyAgent, "taxi", overrides={"steps_per_call": 50})

Give an agent an env whose episodes start in random states (``taxi``, not
``frozenlake``): a trainer that forgets part of its env state on resume looks
fine where every episode starts in the same place.

It checks the registration rules (a dataclass config deriving from
TrainerConfig, no run-setting names), config errors, what `train_step` and
`evaluate` return, that a train_step never goes past the budget,
determinism, the checkpoint round trip through a real file, and what resuming
promises: with ``exact_resume`` (the default) a resumed trainer continues
exactly as an uninterrupted one would; without it, a resumed trainer holds the
state it loaded and two trainers resumed from one checkpoint agree. A failure
names the first metric and step that differ.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.checkpoint import load_checkpoint, save_checkpoint
from toolkit.config import build
from toolkit.data import DATASETS
from toolkit.environments import resolve_env
from toolkit.errors import CheckpointError, ConfigError, GymkitError
from toolkit.plugin_checks import check_metrics, check_trainer_class
from toolkit.seeding import global_rng_state, seed_everything, set_global_rng_state
from toolkit.trainer import Agent, Budget, Trainer, TrainerContext

#: A budget no contract check comes near, so that only the budget test meets its end.
UNLIMITED = 10**9


class PluginContractError(AssertionError):
    """A plugin breaks the trainer contract; the message says which part."""


def make_trainer(cls: type[Trainer], target: str, overrides: dict[str, Any] | None = None,
                 seed: int = 0, budget: Budget | None = None,
                 compile: str | bool = False) -> Trainer:
    """Build `cls` on an env name (agents) or a dataset name (generative), on the CPU; its
    updates run eagerly unless `compile` says otherwise (the run setting's values)."""
    cfg = build(cls.Config, overrides or {})
    if cls.uses_torch:
        import torch  # noqa: F401 - imported before seeding, as the launcher does

    seed_everything(seed)
    source: Any = resolve_env(target)[0] if cls.kind == "agent" else DATASETS.get(target).load(None)
    budget = budget or Budget(cls.budget_units[0], UNLIMITED)
    return cls(cfg, source, TrainerContext("cpu", seed, budget, compile=compile))


def check_plugin(cls: type[Trainer], target: str, *, overrides: dict[str, Any] | None = None,
                 steps: int = 3, budget: Budget | None = None) -> None:
    """Raise PluginContractError if `cls` breaks the trainer contract.

    `budget` (default: one no check comes near) lets a schedule that anneals over the
    budget move within the few train_steps checked, so that its resume is checked too."""
    try:
        check_trainer_class(cls.kind, cls)
    except GymkitError as exc:
        raise PluginContractError(str(exc)) from exc
    _check_config_errors(cls)
    _check_budget(cls, target, overrides)
    a = make_trainer(cls, target, overrides, budget=budget)
    history_a = [_checked_step(a) for _ in range(2 * steps)]
    _check_evaluate(a, target, overrides)

    b = make_trainer(cls, target, overrides, budget=budget)
    history_b = [_checked_step(b) for _ in range(steps)]
    _expect_same(history_b, history_a[:steps], "two trainers with one seed reported different "
                                               "metrics: training is not deterministic")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = save_checkpoint(Path(tmp) / "check.pt",
                                   {"trainer": b.state_dict(), "rng": global_rng_state()})
            b.save_extra(_extra_dir(tmp))
            saved = load_checkpoint(path)
        except CheckpointError as exc:
            raise PluginContractError(f"state_dict() cannot go through a checkpoint: {exc}"
                                      ) from exc
        state = saved["trainer"]
        _expect(_equal(state, b.state_dict()), "state_dict changed on its way through a "
                                               "checkpoint file: keep it to tensors, numbers, "
                                               "strings, lists")
        # Each resume reads the file afresh: a trainer may keep tensors of what it loads.
        resumed = [_resume(cls, target, overrides, budget, load_checkpoint(path), tmp)
                   for _ in range(1 if cls.exact_resume else 2)]
    for c in resumed:
        _expect(c.progress() == b.progress(), "load_state_dict did not restore progress()")
        if not cls.exact_resume:
            _expect(_equal(c.state_dict(), state), "state_dict() right after load_state_dict "
                                                   "differs from the state that was loaded")
    histories = []
    for c in resumed:
        # Each continues from the global RNG states of the checkpoint, as a resumed run would.
        set_global_rng_state(saved["rng"])
        histories.append([_checked_step(c) for _ in range(steps)])
    if cls.exact_resume:
        _expect_same(histories[0], history_a[steps:], "a trainer resumed from a checkpoint "
                     "reported other metrics than an uninterrupted one", offset=steps)
        _expect(_equal(resumed[0].state_dict(), a.state_dict()),
                "a trainer resumed from a checkpoint ended in another state than an "
                "uninterrupted one")
    else:
        _expect_same(histories[1], histories[0], "two trainers resumed from one checkpoint "
                     "reported different metrics: resuming is not deterministic", offset=steps)
    for trainer in (a, b, *resumed):
        trainer.close()


def _extra_dir(tmp: str) -> Path:
    folder = Path(tmp) / "extra"
    folder.mkdir(exist_ok=True)
    return folder


def _resume(cls: type[Trainer], target: str, overrides: dict[str, Any] | None,
            budget: Budget | None, saved: dict[str, Any], tmp: str) -> Trainer:
    """A trainer built with another seed, then loaded from the checkpoint, as on resume."""
    c = make_trainer(cls, target, overrides, seed=1, budget=budget)
    c.load_state_dict(saved["trainer"])
    c.load_extra(_extra_dir(tmp))
    set_global_rng_state(saved["rng"])  # as the runner does on resume
    return c


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


def _check_budget(cls: type[Trainer], target: str, overrides: dict[str, Any] | None) -> None:
    """A train_step stops where the budget ends, in every unit a budget may be given in."""
    multiple = cls.budget_multiple(build(cls.Config, overrides or {}))
    for unit in cls.budget_units:
        trainer = make_trainer(cls, target, overrides, budget=Budget(unit, multiple))
        trainer.train_step()
        spent = trainer.progress()[unit]
        trainer.close()
        _expect(spent == multiple, f"with a budget of {multiple} {unit}, one train_step did "
                                   f"{spent} {unit}; a train_step must stop where the budget "
                                   "ends (see budget_left())")


def _checked_step(trainer: Trainer) -> dict[str, float]:
    before = trainer.progress()
    try:
        metrics = check_metrics(trainer.train_step(), type(trainer).__name__, "train_step")
    except GymkitError as exc:
        raise PluginContractError(str(exc)) from exc
    after = trainer.progress()
    for tag, value in metrics.items():
        _expect(math.isfinite(value), f"train_step returned {tag!r} = {value!r}, not finite")
    unit = trainer.progress_unit
    _expect(after[unit] > before[unit], f"train_step did not advance progress()['{unit}']")
    return metrics


def _check_evaluate(trainer: Trainer, target: str, overrides: dict[str, Any] | None) -> None:
    try:
        result = check_metrics(trainer.evaluate(3, 12345), type(trainer).__name__, "evaluate",
                               prefix="eval/")
    except GymkitError as exc:
        raise PluginContractError(str(exc)) from exc
    _expect(trainer.eval_metric in result,
            f"evaluate() lacks the metric '{trainer.eval_metric}' that picks best.pt")
    for tag, value in result.items():
        _expect(math.isfinite(value), f"evaluate() returned {tag!r} = {value!r}, not finite")
    if isinstance(trainer, Agent):
        _check_policy(trainer, target, overrides)


def _check_policy(agent: Agent, target: str, overrides: dict[str, Any] | None) -> None:
    """Both policies act in the action space for a batch of observations, the deterministic
    one acts the same after another reset, and a trainer given `policy_state_dict()` acts
    the same (that is what best.pt holds)."""
    n = 16
    envs = agent.source.make_vector(n)
    try:
        obs, _ = envs.reset(seed=0)
        space = envs.single_action_space
    finally:
        envs.close()
    greedy = _acts(agent, True, 0, obs)
    for deterministic, seed in ((False, 0), (True, 1)):
        actions = _acts(agent, deterministic, seed, obs)
        _expect(len(actions) == n and all(space.contains(a) for a in actions),
                f"policy(deterministic={deterministic}).act() returned {actions!r} for {n} "
                f"envs, not {n} actions in {space}")
        if deterministic:
            _expect(np.array_equal(actions, greedy), "the deterministic policy chose other "
                                                     "actions for the same observations after "
                                                     "another reset")
    fresh = make_trainer(type(agent), target, overrides, seed=1)
    assert isinstance(fresh, Agent)
    try:
        fresh.load_policy_state_dict(agent.policy_state_dict())
        _expect(np.array_equal(_acts(fresh, True, 0, obs), greedy),
                "a trainer given policy_state_dict() through load_policy_state_dict() acts "
                "otherwise: best.pt would not hold the policy")
    finally:
        fresh.close()
    # The runner and `gymkit eval` also hand it a whole state_dict (last.pt's).
    fresh = make_trainer(type(agent), target, overrides, seed=1)
    assert isinstance(fresh, Agent)
    try:
        try:
            fresh.load_policy_state_dict(agent.state_dict())
        except (KeyError, TypeError, ValueError) as exc:
            raise PluginContractError(f"load_policy_state_dict() cannot read a whole "
                                      f"state_dict() (last.pt's): {exc!r}") from exc
        _expect(np.array_equal(_acts(fresh, True, 0, obs), greedy),
                "a trainer given state_dict() through load_policy_state_dict() acts "
                "otherwise: the final evaluation of last.pt would be wrong")
    finally:
        fresh.close()


def _acts(agent: Agent, deterministic: bool, seed: int, obs: np.ndarray) -> np.ndarray:
    policy = agent.policy(deterministic=deterministic)
    policy.reset(len(obs), seed=seed)
    return np.asarray(policy.act(obs, np.ones(len(obs), dtype=bool)))


def _expect_same(got: list[dict[str, float]], want: list[dict[str, float]], message: str,
                 offset: int = 0) -> None:
    """Fail naming the first train_step and metric where `got` differs from `want`."""
    for index, (g, w) in enumerate(zip(got, want, strict=True)):
        for key in sorted(set(g) | set(w)):
            if g.get(key) != w.get(key):
                raise PluginContractError(
                    f"{message}: first at train_step {offset + index + 1}, {key} = "
                    f"{g.get(key)!r} where it should be {w.get(key)!r}")


def _equal(x: Any, y: Any) -> bool:
    """Equal in type and value, NaN equal to NaN (a state may hold one on purpose)."""
    if _is_tensor(x) or _is_tensor(y):
        if not (_is_tensor(x) and _is_tensor(y) and x.dtype == y.dtype and x.shape == y.shape):
            return False
        if x.dtype.is_floating_point:
            import torch

            return bool(torch.isclose(x, y, rtol=0, atol=0, equal_nan=True).all())
        return bool((x == y).all())
    if type(x) is not type(y):
        return False
    if isinstance(x, dict):
        return x.keys() == y.keys() and all(_equal(x[k], y[k]) for k in x)
    if isinstance(x, (list, tuple)):
        return len(x) == len(y) and all(_equal(a, b) for a, b in zip(x, y, strict=True))
    if isinstance(x, float) and math.isnan(x):
        return math.isnan(y)
    return bool(x == y)


def _is_tensor(value: Any) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "numel")


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise PluginContractError(message)
