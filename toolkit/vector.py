"""Reading a gymnasium vector env's step in SAME_STEP autoreset mode (`EnvSource.make_vector`).

In that mode a step that ends an episode returns the next episode's first
observation; the ended episode's last observation and info are kept aside in
``infos["final_obs"]`` and ``infos["final_info"]``, each with a mask of the envs
that ended (``"_final_obs"``, ``"_final_info"``).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def true_next_obs(next_obs: np.ndarray, infos: dict[str, Any]) -> np.ndarray:
    """The observation each env's step actually led to: the final observation of an
    episode that ended (what a truncated episode bootstraps from), else `next_obs`."""
    mask = infos.get("_final_obs")
    if mask is None or not mask.any():
        return next_obs
    real = next_obs.copy()
    for i in np.flatnonzero(mask):
        real[i] = infos["final_obs"][i]
    return real


def finished_episodes(infos: dict[str, Any]) -> tuple[list[float], list[int]]:
    """Returns and lengths of the episodes that ended in this step, from gymnasium's
    `RecordEpisodeStatistics` (which `EnvSource.make` puts under the preset's wrappers)."""
    final = infos.get("final_info")
    if not final or "_episode" not in final:
        return [], []
    ended = np.flatnonzero(final["_episode"])
    episode = final["episode"]
    return [float(r) for r in episode["r"][ended]], [int(n) for n in episode["l"][ended]]
