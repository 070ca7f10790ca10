"""Errors a user can fix. The CLI prints them as one line and exits with code 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class GymkitError(Exception):
    """A problem with the user's input: the message names it and says how to fix it."""

    exit_code = 2


class ConfigError(GymkitError):
    """A config value is unknown, of the wrong type, or out of range."""


class RegistryError(GymkitError):
    """A plugin, env or dataset name is unknown or registered twice."""


class CheckpointError(GymkitError):
    """A checkpoint is missing, truncated, or not a gymkit checkpoint."""


class NonFiniteError(GymkitError):
    """Training diverged: a loss, an evaluation metric or the model's state is NaN or inf."""


class IncompatibleEnvError(GymkitError):
    """A plugin cannot work with the spaces of the chosen environment."""


def type_name(value: object) -> str:
    """`float` for builtins, `numpy.float32` or `torch.Tensor` for the rest: for messages."""
    cls = type(value)
    return cls.__name__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """' (did you mean: a, b?)' for the close matches of `name`, or ''."""
    choices = list(choices)
    lowered = {c.lower(): c for c in choices}
    matches = difflib.get_close_matches(name.lower(), list(lowered), n=3, cutoff=0.6)
    matches += [c for c in lowered if name.lower() in c and c not in matches][: 3 - len(matches)]
    if not matches:
        return ""
    return " (did you mean: " + ", ".join(lowered[m] for m in matches) + "?)"


class PluginError(GymkitError):
    """A plugin breaks the trainer contract (its author's mistake, not the user's input)."""
