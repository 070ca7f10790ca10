"""Wrappers that presets name in their ``wrappers:`` list as ``envs.wrappers:Name``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.utils import RecordConstructorArgs

from toolkit.errors import GymkitError

#: Observation indices that hold velocities, per gymnasium id (positions, angles and contact
#: flags are left alone). The same choice as rl-zoo's and sb3-contrib's MaskVelocityWrapper.
VELOCITY_INDICES: dict[str, tuple[int, ...]] = {
    "CartPole-v0": (1, 3),  # cart velocity, pole angular velocity
    "CartPole-v1": (1, 3),
    "Pendulum-v1": (2,),  # angular velocity (0 and 1 are cos and sin of the angle)
    "MountainCar-v0": (1,),  # velocity
    "MountainCarContinuous-v0": (1,),
    "LunarLander-v3": (2, 3, 5),  # x and y velocities, angular velocity
    "LunarLanderContinuous-v3": (2, 3, 5),
}


class MaskVelocity(gym.ObservationWrapper[np.ndarray, Any, np.ndarray], RecordConstructorArgs):
    """Zero the velocity entries of a vector observation, so that the agent sees positions
    only and must infer velocities from its history: a partially observable version of the
    env, for recurrent agents.

    The indices come from `VELOCITY_INDICES` by the env's gymnasium id, or from `indices`
    for any other env. The observation space is kept as it is: zero lies inside its bounds.
    """

    def __init__(self, env: gym.Env, indices: Sequence[int] | None = None) -> None:
        RecordConstructorArgs.__init__(self, indices=indices)
        gym.ObservationWrapper.__init__(self, env)
        space = env.observation_space
        env_id = env.unwrapped.spec.id if env.unwrapped.spec is not None else None
        if indices is None:
            if env_id not in VELOCITY_INDICES:
                which = env_id or "an env made without an id"
                raise GymkitError(
                    f"MaskVelocity has no velocity mask for {which}; "
                    f"it knows {', '.join(VELOCITY_INDICES)}, or give the indices in the preset "
                    "(`- envs.wrappers:MaskVelocity: {indices: [1, 3]}`)")
            indices = VELOCITY_INDICES[env_id]
        if not (isinstance(space, gym.spaces.Box) and len(space.shape) == 1):
            raise GymkitError(f"MaskVelocity needs a vector (1-D Box) observation space; "
                              f"{env_id} has {space}")
        size = space.shape[0]
        bad = [i for i in indices if not -size <= i < size]
        if bad:
            raise GymkitError(f"MaskVelocity: indices {bad} are out of range for {env_id}'s "
                              f"{size} observation entries")
        outside = [i for i in indices if not space.low[i] <= 0 <= space.high[i]]
        if outside:
            raise GymkitError(f"MaskVelocity: 0 lies outside {env_id}'s observation bounds at "
                              f"indices {outside}, so the masked observation would not be valid")
        self.indices = np.asarray(indices, dtype=np.intp)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        masked = np.array(observation, copy=True)
        masked[self.indices] = 0
        return masked


class SeedNpRandom(gym.Wrapper[Any, Any, Any, Any], RecordConstructorArgs):
    """Seed gymnasium's ``np_random`` on ``reset(seed=...)`` for an env that seeds only its
    own generator there: MinAtar's envs never call ``super().reset(seed=seed)``, so their
    ``np_random`` stays unseeded and gymnasium's check_env rejects them. The env's own
    seeding is left as it is (MinAtar's reset(seed) seeds the game)."""

    def __init__(self, env: gym.Env) -> None:
        RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        if seed is not None:
            gym.Env.reset(self.unwrapped, seed=seed)  # what the env's reset leaves out
        return super().reset(seed=seed, options=options)
