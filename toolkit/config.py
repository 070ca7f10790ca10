"""Typed config dataclasses: validation, ``--set key=value`` overrides, YAML files.

Every plugin's config is a dataclass whose fields carry their help text
(``param(0.1, "learning rate")``) and whose ``validate`` checks ranges. Values
from the command line or YAML are parsed and type-checked against the field
annotations here, so a plugin only states what a valid value is.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import re
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml

from toolkit.errors import ConfigError, did_you_mean

C = TypeVar("C", bound="BaseConfig")

#: Seeds are 32-bit: numpy's legacy seeding and many env implementations take no more.
MAX_SEED = 2**32 - 1
#: The largest training budget, in any unit: a trillion steps is weeks at a million a
#: second; a larger number is a typo, and would overflow counters that torch keeps in int64.
MAX_BUDGET = 10**12


def param(default: Any, help: str) -> Any:
    """A config field with a default and a one-line help text.

    A list, dict or set default is copied for each config, as dataclasses require."""
    if isinstance(default, (list, dict, set)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class BaseConfig:
    """Base of every config: validates itself on construction."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError naming the field when a value is out of range."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def help(cls) -> dict[str, str]:
        return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}


@dataclass
class TrainerConfig(BaseConfig):
    """Base of every plugin's hyperparameters."""


#: torch.set_float32_matmul_precision's settings, most precise first.
MatmulPrecision = Literal["highest", "high", "medium"]
MATMUL_PRECISIONS: tuple[str, ...] = get_args(MatmulPrecision)


@dataclass
class RunSettings(BaseConfig):
    """What the runner needs: budget, evaluation and checkpoint cadence, seed, device."""

    seed: int = param(0, "random seed for everything: python, numpy, torch, envs")
    device: str = param("auto", "auto, cpu, cuda or cuda:N")
    steps: int | None = param(None, "training budget in environment steps (or optimizer steps)")
    episodes: int | None = param(None, "training budget in episodes (agents only)")
    epochs: int | None = param(None, "training budget in epochs (generative trainers)")
    eval_every: int = param(10_000, "evaluate every N steps (epochs for generative trainers)")
    eval_episodes: int = param(100, "episodes per periodic evaluation")
    final_eval_episodes: int = param(1_000, "episodes in the evaluation at the end of training")
    log_every: int = param(1, "log training metrics every N steps (or epochs), averaged "
                              "over the train steps in between")
    checkpoint_every: int = param(50_000, "write checkpoints/last.pt every N steps (or epochs)")
    checkpoint_every_s: float = param(600.0, "also write checkpoints/last.pt when this many "
                                      "seconds have passed since the last one (0: never)")
    threads: int | None = param(None, "torch CPU threads; default: the plugin's choice (one for "
                                      "agents' small networks, the physical cores for "
                                      "generative trainers), recorded in config.json")
    compile: Literal["auto"] | bool = param(
        "auto", "compile the networks' updates into one graph (torch.compile): true, false, "
        "or auto: for a run long enough to pay back the compilation, where a compiler is")
    matmul_precision: MatmulPrecision = param(
        "highest", "float32 matrix products, as torch.set_float32_matmul_precision: highest "
        "(float32), high (TF32 on GPUs that have it), medium (bfloat16 inside the product "
        "where that is fast: such GPUs, and CPUs with AMX or AVX-512 BF16)")
    stop_on_nonfinite: bool = param(True, "stop the run as failed when a loss, an evaluation "
                                          "metric or the model's state becomes NaN or "
                                          "infinite (false: train on)")

    def validate(self) -> None:
        for name in ("steps", "episodes", "epochs"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"{name} must be positive, got {value}")
            if value is not None and value > MAX_BUDGET:
                raise ConfigError(f"{name} must be at most {MAX_BUDGET:,} (a trillion), got "
                                  f"{value:,}")
        check_range(self, "seed", low=0, high=MAX_SEED)
        check_range(self, "checkpoint_every_s", low=0)
        for name in ("eval_every", "eval_episodes", "final_eval_episodes", "log_every",
                     "checkpoint_every"):
            check_range(self, name, low=1)
        if self.threads is not None:
            check_range(self, "threads", low=1)
        if not re.fullmatch(r"auto|cpu|cuda(:[0-9]+)?", self.device):
            raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got '{self.device}'")

    def budget(self) -> tuple[str, int]:
        """The one budget that is set, as (unit, amount)."""
        chosen = [(n, getattr(self, n)) for n in ("steps", "episodes", "epochs")
                  if getattr(self, n) is not None]
        if len(chosen) != 1:
            raise ConfigError(
                "set exactly one training budget: --steps, --episodes or --epochs "
                f"(got {', '.join(n for n, _ in chosen) or 'none'})"
            )
        return chosen[0]


#: The activation names the shared network modules know (`toolkit.nets.mlp.ACTIVATIONS`'
#: keys, kept here so that a config is checked without importing torch; a test keeps the
#: two equal).
ACTIVATION_NAMES = ("tanh", "relu", "elu", "gelu", "silu", "leaky_relu", "sigmoid")


def check_activation(cfg: object, name: str = "activation") -> None:
    """Raise ConfigError unless ``cfg.name`` names one of `ACTIVATION_NAMES`."""
    value = getattr(cfg, name)
    if not isinstance(value, str) or value.lower() not in ACTIVATION_NAMES:
        raise ConfigError(f"{name} must be one of {', '.join(ACTIVATION_NAMES)}, got "
                          f"{value!r}")


def check_sizes(cfg: object, name: str, *, count: int | None = None,
                allow_empty: bool = True) -> None:
    """Raise ConfigError unless ``cfg.name`` is a list of positive layer sizes (exactly
    `count` of them when given; at least one unless `allow_empty`)."""
    sizes = getattr(cfg, name)
    if count is not None:
        if len(sizes) != count or any(size < 1 for size in sizes):
            words = {1: "one", 2: "two", 3: "three"}
            raise ConfigError(f"{name} must be {words.get(count, count)} positive sizes, got "
                              f"{sizes}")
    elif (not sizes and not allow_empty) or any(size < 1 for size in sizes):
        raise ConfigError(f"{name} sizes must be positive, got {sizes}")


def check_range(
    cfg: object,
    name: str,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    """Raise ConfigError when ``cfg.name`` is outside the interval."""
    value = getattr(cfg, name)
    # An int of any size compares exactly; only floats can be nan or inf (and
    # math.isfinite of a huge int would overflow).
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value}")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        lo = "-inf" if low is None else _bound(low)
        hi = "inf" if high is None else _bound(high)
        raise ConfigError(f"{name} must be in {left}{lo}, {hi}{right}, got {value}")


def _describe(annotation: Any) -> str:
    """What values of `annotation` look like, for a message: ``true or false``, ..."""
    if get_origin(annotation) is Literal:
        return " or ".join(map(str, get_args(annotation)))
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    return names.get(annotation, "a list" if get_origin(annotation) in (list, tuple)
                     else str(annotation))


def _bound(value: float) -> str:
    """An interval's end as written: 4294967295 stays whole, 0.5 stays short."""
    return str(value) if isinstance(value, int) else f"{value:g}"


def parse_assignments(items: Iterable[str]) -> dict[str, Any]:
    """``["alpha=0.2", "update=expected_sarsa"]`` -> ``{"alpha": 0.2, ...}`` (YAML scalars);
    a dotted key sets one entry of a mapping: ``hyperparams.n_steps=512``."""
    values: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got '{item}' (e.g. --set alpha=0.2)")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        values = merged(values, nest_dotted({key: value}))
    return values


def nest_dotted(values: Mapping[Any, Any]) -> dict[Any, Any]:
    """``{"hyperparams.n_steps": 512}`` -> ``{"hyperparams": {"n_steps": 512}}``; other keys
    as they are."""
    nested: dict[Any, Any] = {}
    for key, value in values.items():
        parts = key.split(".") if isinstance(key, str) else [key]
        if len(parts) > 1 and not all(parts):
            raise ConfigError(f"config key '{key}' has an empty part; write mapping.key, e.g. "
                              "hyperparams.n_steps")
        for part in reversed(parts[1:]):
            value = {part: value}
        nested = merged(nested, {parts[0]: value})
    return nested


def merged(base: Mapping[Any, Any], update: Mapping[Any, Any]) -> dict[Any, Any]:
    """`update` over `base`; where both hold a mapping under one key, merged key by key (a
    later ``--set hyperparams.n_steps=512`` keeps the preset's other hyperparams)."""
    result = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = value
    return result


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping of config keys to values (the same keys as ``--set``)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config file {path} is a directory; pass a YAML file")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {exc.start}); "
                          "save it as UTF-8") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    try:
        data = yaml.load(text, Loader=UniqueKeyLoader)
    except DuplicateKeyError as exc:
        raise ConfigError(f"config file {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}".splitlines()[0]) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of key: value")
    for key in data:
        if not isinstance(key, str):
            raise ConfigError(f"config file {path}: key {key!r} is not a config name; "
                              "write names like alpha: 0.2")
    return nest_dotted(data)


class DuplicateKeyError(yaml.YAMLError):
    """A mapping names one key twice: YAML keeps the last silently, gymkit refuses."""


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, (str, int, float, bool)) or key is None:
                if key in seen:
                    raise DuplicateKeyError(f"the key '{key}' appears twice (line "
                                            f"{key_node.start_mark.line + 1}); keep one")
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _check_key(key: object) -> str:
    """`key` if it is a string; config names are never numbers, lists or null."""
    if not isinstance(key, str):
        raise ConfigError(f"config key {key!r} is not a name; write names like alpha: 0.2")
    return key


def build(cls: type[C], values: Mapping[str, Any]) -> C:
    """Instantiate `cls` from untyped `values`, checking names and types field by field."""
    hints = typing.get_type_hints(cls)
    known = cls.field_names()
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if _check_key(key) not in known:
            raise ConfigError(
                f"unknown config key '{key}'{did_you_mean(key, known)}; "
                f"valid keys: {', '.join(known)}"
            )
        kwargs[key] = coerce(key, value, hints[key])
    return cls(**kwargs)


def split(values: Mapping[str, Any], *classes: type[BaseConfig]) -> list[dict[str, Any]]:
    """Route each key to the first class that has a field of that name."""
    parts: list[dict[str, Any]] = [{} for _ in classes]
    all_keys = [k for c in classes for k in c.field_names()]
    for key, value in values.items():
        _check_key(key)
        for part, cls in zip(parts, classes, strict=True):
            if key in cls.field_names():
                part[key] = value
                break
        else:
            raise ConfigError(
                f"unknown config key '{key}'{did_you_mean(key, all_keys)}; "
                f"valid keys: {', '.join(all_keys)}"
            )
    return parts


def coerce(name: str, value: Any, annotation: Any) -> Any:
    """Check `value` against `annotation`; ints are accepted where floats are expected."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        options = get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return coerce(name, value, option)
            except ConfigError as exc:
                errors.append(str(exc))
        kinds = [option for option in options if option is not type(None)]
        if len(kinds) > 1:
            raise ConfigError(f"{name} must be {' or '.join(map(_describe, kinds))}, got "
                              f"{value!r}")
        raise ConfigError(errors[0] if errors else f"{name}: unexpected value {value!r}")
    if origin is Literal:
        choices = get_args(annotation)
        if value not in choices:
            raise ConfigError(
                f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}"
            )
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name} expects true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} expects an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            with contextlib.suppress(ValueError):
                value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name} expects a number, got {value!r}")
        try:
            return float(value)
        except OverflowError:  # an int with hundreds of digits
            raise ConfigError(f"{name} must be a finite number, got {value}") from None
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name} expects a string, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name} expects a list, got {value!r}")
        (item_type, *_) = get_args(annotation) or (Any,)
        items = [coerce(name, v, item_type) for v in value]
        return items if origin is list else tuple(items)
    if origin is dict or annotation is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{name} expects a mapping, got {value!r}")
        return dict(value)
    return value
