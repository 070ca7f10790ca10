"""Watching an agent: render episodes to the terminal or a window, or record videos."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import gymnasium as gym
from gymnasium.vector import SyncVectorEnv
from rich.console import Console

from toolkit.atomic import check_writable
from toolkit.errors import GymkitError
from toolkit.evaluation import evaluate_policy
from toolkit.trainer import Agent, Trainer

#: Offset from the run's seed for watched episodes: not the episodes of any evaluation.
WATCH_SEED = 3_000_017


def check_display() -> None:
    """Refuse ``--render human`` where no window can open (SDL would fail, then run unseen)."""
    driver = os.environ.get("SDL_VIDEODRIVER", "").lower()
    if driver in ("dummy", "offscreen"):
        reason = f"SDL_VIDEODRIVER={driver} draws no window"
    elif sys.platform.startswith("linux") and not (os.environ.get("DISPLAY")
                                                   or os.environ.get("WAYLAND_DISPLAY")):
        reason = "neither DISPLAY nor WAYLAND_DISPLAY is set"
    else:
        return
    raise GymkitError(f"--render human needs a display, and there is none ({reason}); use "
                      "--render ansi to watch in the terminal, or --video DIR to record mp4s")


def check_video_dir(video: Path) -> None:
    """Refuse a ``--video`` folder that cannot be created or written, or that already holds
    videos (gymnasium would overwrite them). Creates nothing."""
    if video.exists() and not video.is_dir():
        raise GymkitError(f"--video {video} is a file; pass a folder for the videos")
    if video.is_dir():
        earlier = list(video.glob("*.mp4"))
        if earlier:
            videos = "1 earlier video" if len(earlier) == 1 else f"{len(earlier)} earlier videos"
            raise GymkitError(f"--video {video} already holds {videos}, which would be "
                              f"overwritten; pass a new folder, e.g. --video {_fresh(video)}")
    check_writable(video, f"videos into {video}", "folder")


def _fresh(video: Path) -> Path:
    """`video` with the first free numeric suffix: videos-2, videos-3, ..."""
    for n in range(2, 10_000):
        candidate = video.with_name(f"{video.name}-{n}")
        if not candidate.exists():
            return candidate
    return video.with_name(f"{video.name}-new")


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
    if video is not None:
        check_video_dir(video)
        try:  # before RecordVideo, which creates the folder and only then looks for moviepy
            import moviepy  # noqa: F401
        except ImportError as exc:
            raise GymkitError("--video needs moviepy, which is not installed; install it with "
                              "pip install 'gymkit[render]'") from exc
    source = trainer.source
    if render_mode != "human":
        # Frames to record need no window: SDL's dummy driver draws them without probing
        # for a display (which prints "XDG_RUNTIME_DIR is invalid" on a headless machine).
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

    def make_env() -> gym.Env:
        env = source.make(render_mode=render_mode)
        if video is None:
            return env
        try:
            with warnings.catch_warnings():
                # An existing folder was checked to hold no videos: nothing is overwritten.
                warnings.filterwarnings("ignore", message=".*Overwriting existing videos")
                return gym.wrappers.RecordVideo(env, str(video), episode_trigger=lambda _: True,
                                                disable_logger=True)
        except OSError as exc:
            raise GymkitError(f"cannot create --video folder {video}: "
                              f"{exc.strerror or exc}; pass another folder") from exc

    def show(envs: SyncVectorEnv) -> None:
        if render_mode == "ansi":
            console.print(envs.envs[0].render(), highlight=False)

    try:
        # One env: a watched episode is rendered from start to end before the next one.
        results = evaluate_policy(trainer.policy(deterministic=True), source, episodes,
                                  seed=trainer.seed + WATCH_SEED, n_envs=1, make_env=make_env,
                                  on_step=show)
    except gym.error.DependencyNotInstalled as exc:
        raise GymkitError(f"rendering needs an optional dependency "
                          f"({str(exc).splitlines()[0]}); install it with "
                          "pip install 'gymkit[render]'") from exc
    if video is not None:
        console.print(f"videos written to {video}")
    return results.metrics(with_success=source.success is not None)
