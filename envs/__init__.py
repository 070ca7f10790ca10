"""Short environment names: each YAML file in presets/ becomes one `EnvPreset`.

A preset names a gymnasium id with its kwargs, the default agent, and that
agent's hyperparameters for the env (in the manner of rl-zoo's per-env files).
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml

from toolkit.environments import ENVS, EnvPreset, parse_wrappers


def load_preset(name: str, data: dict[str, Any]) -> EnvPreset:
    return EnvPreset(
        name=name,
        id=data["id"],
        kwargs=dict(data.get("kwargs") or {}),
        description=data.get("description", ""),
        algo=data.get("algo", ""),
        hyperparams={k: dict(v or {}) for k, v in (data.get("hyperparams") or {}).items()},
        success=data.get("success"),
        action_glyphs=tuple(data.get("action_glyphs") or ()),
        wrappers=parse_wrappers(data.get("wrappers") or ()),
        setup=tuple(data.get("setup") or ()),
        channel_first=bool(data.get("channel_first", False)),
        presets={k: dict(v or {}) for k, v in (data.get("presets") or {}).items()},
    )


def _register_presets() -> None:
    folder = resources.files(__name__) / "presets"
    for item in sorted(folder.iterdir(), key=lambda p: p.name):
        if item.name.endswith(".yaml"):
            name = item.name.removesuffix(".yaml")
            preset = load_preset(name, yaml.safe_load(item.read_text()))
            ENVS.add(name, preset, description=preset.description)


_register_presets()
