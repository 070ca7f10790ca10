"""Every env preset builds an env that passes gymnasium's own checker, as gymkit wraps it."""

from __future__ import annotations

import warnings

import pytest
from gymnasium.utils.env_checker import check_env

from toolkit.environments import ENVS, resolve_env


@pytest.mark.parametrize("name", ENVS.names())
def test_every_preset_env_passes_gymnasiums_check_env(name: str) -> None:
    env = resolve_env(name)[0].make()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a checker warning fails the test too
            # ...but for the one saying that the env is wrapped, which it is on purpose (time
            # limit, episode statistics, the preset's wrappers), and CartPole-v1's own
            # observation space, which gymnasium registers with infinite bounds.
            warnings.filterwarnings("ignore", message=".*different from the unwrapped version")
            warnings.filterwarnings("ignore", message=".*Box observation space (min|max)imum "
                                                      "value is (-)?infinity")
            check_env(env, skip_render_check=True)
    finally:
        env.close()
