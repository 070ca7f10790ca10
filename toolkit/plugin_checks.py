"""Checks a plugin class must pass when it is registered, each failing with one line.

They catch the mistakes that otherwise surface far from their cause: a config
that is not a dataclass (its fields silently ignored), a config field named
like a run setting (``--steps`` then breaks), a plugin of the wrong kind.
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
from typing import Any

from toolkit.config import RunSettings, TrainerConfig
from toolkit.errors import PluginError, type_name


def check_trainer_class(kind: str, cls: Any) -> None:
    """Raise PluginError if `cls` cannot be registered as a `kind` plugin."""
    # toolkit.trainer sits above the registry that calls this, so it is not imported here:
    # a subclass of its Agent can only exist once something has imported it.
    base_name = {"agent": "Agent", "generative": "GenerativeTrainer"}[kind]
    base = getattr(sys.modules.get("toolkit.trainer"), base_name, None)
    if base is None or not (inspect.isclass(cls) and issubclass(cls, base)):
        raise PluginError(f"{_name(cls)} must be a subclass of toolkit.trainer.{base_name}")
    abstract = sorted(getattr(cls, "__abstractmethods__", ()))
    if abstract:
        raise PluginError(f"{cls.__name__} does not implement {', '.join(abstract)}")
    check_config_class(cls)


def check_config_class(cls: Any) -> None:
    """`cls.Config` is a @dataclass deriving from TrainerConfig, with no run-setting names."""
    config = getattr(cls, "Config", None)
    if not (inspect.isclass(config) and issubclass(config, TrainerConfig)):
        raise PluginError(f"{cls.__name__}.Config must be a class derived from "
                          "toolkit.config.TrainerConfig")
    declared = vars(config).get("__annotations__", {})
    fields = {f.name for f in dataclasses.fields(config)}
    if "__dataclass_fields__" not in vars(config) and set(declared) - fields:
        raise PluginError(f"{cls.__name__}.Config ({config.__name__}) is not a dataclass, so "
                          f"its fields ({', '.join(sorted(set(declared) - fields))}) are "
                          "ignored; put @dataclass above its class statement")
    run_names = set(RunSettings.field_names())
    for field in dataclasses.fields(config):
        if field.name in run_names:
            raise PluginError(
                f"{cls.__name__}.Config field '{field.name}' has the name of a run setting "
                f"(--{field.name.replace('_', '-')} / --set {field.name}=...); rename the field")


def _name(obj: Any) -> str:
    return getattr(obj, "__qualname__", None) or type(obj).__name__


def check_metrics(values: Any, plugin: str, method: str, prefix: str | None = None
                  ) -> dict[str, float]:
    """`values` if it is a dict of tagged Python numbers, else a PluginError naming the key."""
    from toolkit.logger import TAG_PREFIXES

    if not isinstance(values, dict):
        raise PluginError(f"{plugin}'s {method} returned {type_name(values)}; return a dict "
                          "of floats, e.g. {'losses/loss': loss.item()}")
    for tag, value in values.items():
        if not isinstance(tag, str) or not tag.startswith(prefix or TAG_PREFIXES):
            want = prefix or ", ".join(TAG_PREFIXES)
            raise PluginError(f"{plugin}'s {method} returned the key {tag!r}, which lacks a tag "
                              f"prefix ({want})")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise PluginError(f"{plugin}'s {method} returned {tag!r} as {type_name(value)}; "
                              "return a Python float (float(x), or tensor.item())")
    return values

