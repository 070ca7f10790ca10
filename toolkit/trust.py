"""What gymkit may import or call when it rebuilds a run from the files of a run directory.

A run directory travels: a colleague's, a paper's artifact, a public bucket. Its
config.json is data, like its checkpoints (loaded with ``weights_only=True``). Three of
its entries would make Python import a module or call an object:

- ``env.setup``: modules to import and ``module:function``s to call before the env is made;
- ``env.wrappers``: ``module:Class`` wrappers, called with keyword arguments from the file;
- ``env.id``: gymnasium imports ``module`` for an id written ``module:Env-v0``.

`check_env` accepts an entry only if the installed gymkit or an installed plugin declares
it: a setup entry or wrapper named by a registered env preset, a class of
``gymnasium.wrappers``, an id that a preset names; or if the caller vouches for it (the
user's own command names it, or they passed ``--trust-config``). Everything else is refused
with one line, before anything is imported. docs/security.md says the same for users.
"""

from __future__ import annotations

import inspect
from collections.abc import Collection, Iterable
from typing import Any

import gymnasium as gym

from toolkit.errors import GymkitError

TRUST_FLAG = "--trust-config"
#: Classes of gymnasium.wrappers that a run directory may not name without the trust flag:
#: they write files wherever their arguments say.
UNSAFE_GYMNASIUM_WRAPPERS = frozenset({"RecordVideo"})


class UntrustedRunError(GymkitError):
    """A run directory names code that no installed package declares."""


def declared_entries() -> set[str]:
    """Every setup entry, wrapper name and env id that a registered env preset names."""
    from toolkit.environments import ENVS

    declared: set[str] = set()
    for entry in ENVS.entries():
        if entry.error is not None:
            continue
        preset = entry.obj
        declared.update(preset.setup)
        declared.update(name for name, _ in preset.wrappers)
        declared.add(preset.id)
    return declared


def is_gymnasium_wrapper(name: str) -> bool:
    """Whether `name` is a bare class name of ``gymnasium.wrappers`` that is safe to call
    with arguments from a file (it imports nothing: gymnasium is imported already)."""
    if ":" in name or name in UNSAFE_GYMNASIUM_WRAPPERS:
        return False
    obj = getattr(gym.wrappers, name, None)
    return inspect.isclass(obj) and issubclass(obj, gym.Wrapper)


def env_entries(env: dict[str, Any]) -> list[tuple[str, str]]:
    """(what, entry) for each entry of a run's ``env`` block that can run code."""
    entries = [("setup entry", str(item)) for item in env.get("setup") or ()]
    for item in env.get("wrappers") or ():
        name = item[0] if isinstance(item, (list, tuple)) and item else item
        entries.append(("wrapper", str(name)))
    env_id = str(env.get("id", ""))
    if ":" in env_id:
        entries.append(("env id", env_id))
    return entries


def check_env(env: dict[str, Any], where: str, *, trust: bool = False,
              vouched: Iterable[str] = ()) -> None:
    """Raise UntrustedRunError for the first entry of `env` (a config.json's ``env``
    block, read from `where`) that neither an installed package declares nor `vouched`
    names, unless `trust`."""
    if trust:
        return
    entries = env_entries(env)
    if not entries:
        return
    allowed: Collection[str] = declared_entries() | set(vouched)
    for what, name in entries:
        if name in allowed or (what == "wrapper" and is_gymnasium_wrapper(name)):
            continue
        action = {"setup entry": "import or call", "wrapper": "import and call",
                  "env id": "let gymnasium import the module of"}[what]
        raise UntrustedRunError(
            f"{where} names the {what} '{name}', which neither gymkit nor an installed plugin "
            f"declares; gymkit does not {action} what a run directory names unless you trust "
            f"it: if you do, pass {TRUST_FLAG}")


def vouched_by(env: dict[str, Any]) -> set[str]:
    """The entries of an env block that the user's own command produced (a sweep's
    definition), which a rerun of that command's trials may use."""
    return {name for _, name in env_entries(env)}
