"""Watching an agent: render episodes to the terminal or a window, or record videos."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
from rich.console import Console

from toolkit.errors import GymkitError
from toolkit.evaluation import run_episodes
from toolkit.trainer import Agent, Trainer

WATCH_SEED = 3_000_017


def watch(trainer: Trainer, episodes: int, render_mode: str, video: Path | None,
          console: Console) -> dict[str, float]:
    """Play `episodes` greedy episodes with rendering; returns their eval metrics."""
    if not isinstance(trainer, Agent):
        raise GymkitError("--render and --video apply to agents only")
    if video is not None and render_mode != "rgb_array":
        raise GymkitError("--video records rgb_array frames; drop --render or use "
                          "--render rgb_array")
    if render_mode == "rgb_array" and video is None:
        raise GymkitError("--render rgb_array produces frames to record; add --video DIR")
    source = trainer.source
    env = source.make(render_mode=render_mode, record_stats=False)
    try:
        if video is not None:
            env = gym.wrappers.RecordVideo(env, str(video), episode_trigger=lambda _: True,
                                           disable_logger=True)

        def show(e: gym.Env) -> None:
            if render_mode == "ansi":
                console.print(e.render(), highlight=False)

        results = run_episodes(env, trainer.predict, episodes, seed=trainer.seed + WATCH_SEED,
                               source=source, on_step=show)
    except gym.error.DependencyNotInstalled as exc:
        raise GymkitError(f"rendering needs an optional dependency "
                          f"({str(exc).splitlines()[0]}); install it with "
                          "pip install 'gymkit[render]'") from exc
    finally:
        env.close()
    if video is not None:
        console.print(f"videos written to {video}")
    return results.metrics(with_success=source.success is not None)
