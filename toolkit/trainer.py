"""The one interface every plugin implements; the runner drives it.

A plugin owns its models, optimizers, environments or data, and its RNGs. It
does *one unit of progress* per `train_step` (a rollout and its update for an
agent, an epoch or a batch for a generative model) and reports its counters in
`progress`. The runner owns everything around it: the loop, the budget,
logging, evaluation, checkpoints and signals. docs/architecture.md shows how
each planned algorithm maps onto these methods.

This module does not import torch: a plugin that needs no tensors (tabular
Q-learning) starts without paying for it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from toolkit.config import TrainerConfig
from toolkit.evaluation import evaluate_policy
from toolkit.policy import Policy

#: Offsets from the run's seed that the runner passes to `Trainer.evaluate`: every periodic
#: evaluation replays the same episodes, and the final one plays fresh episodes that chose
#: neither best.pt nor any hyperparameter (a generative trainer: the test split).
PERIODIC_EVAL_SEED = 1_000_003
FINAL_EVAL_SEED = 2_000_003


@dataclass(frozen=True)
class Budget:
    """How long a run trains: `amount` of the progress counter `unit` (steps, episodes, epochs)."""

    unit: str
    amount: int


class StopFlag:
    """Raised (``requested = True``) by the runner when the user asks the run to stop (Ctrl-C,
    SIGTERM). A train_step that can run for more than a fraction of a second checks it
    between its units of work (an env step, a minibatch) and returns early, in a state that
    a checkpoint can hold; the runner then writes last.pt and stops."""

    __slots__ = ("requested",)

    def __init__(self) -> None:
        self.requested = False


@dataclass(frozen=True)
class TrainerContext:
    """What a trainer is built with besides its config and its env or data."""

    #: Where tensors live, as torch spells it: ``"cpu"``, ``"cuda"``, ``"cuda:1"``.
    device: str
    seed: int
    budget: Budget
    #: The run directory; None while a new run's trainer is built and checked (the directory
    #: is created only after that, and then set here) and outside a run (tests).
    run_dir: Path | None = None
    #: Set when a stop is requested; see `StopFlag`.
    stop: StopFlag = field(default_factory=StopFlag, compare=False, repr=False)
    #: The run setting ``compile`` (true, false or "auto"): whether the networks' updates
    #: are compiled (`toolkit.nets.update.resolve_compile`).
    compile: str | bool = "auto"


class Trainer(ABC):
    """Base class of every gymkit plugin."""

    Config: ClassVar[type[TrainerConfig]] = TrainerConfig
    kind: ClassVar[str] = ""
    #: Counter that `eval_every` and `checkpoint_every` count in.
    progress_unit: ClassVar[str] = "steps"
    #: Counters that a training budget may be given in (`--steps`, `--episodes`, `--epochs`).
    budget_units: ClassVar[tuple[str, ...]] = ("steps",)
    default_budget: ClassVar[tuple[str, int]] = ("steps", 100_000)
    #: Run settings this plugin wants unless the user says otherwise, e.g. ``{"eval_every": 1}``.
    default_run: ClassVar[dict[str, Any]] = {}
    #: Key of `evaluate()`'s result that picks `best.pt`, and whether higher is better.
    eval_metric: ClassVar[str] = "eval/mean_return"
    eval_higher_is_better: ClassVar[bool] = True
    #: False for plugins without tensors: gymkit then never imports torch for them.
    uses_torch: ClassVar[bool] = True
    #: What resuming from ``last.pt`` promises. True: the run continues exactly as if it had
    #: never stopped. False: weights, optimizer, buffers, schedules, RNGs and counters are
    #: restored, but the environments start fresh episodes (a vector env's physics and
    #: time-limit counters cannot be saved). `check_plugin` checks the promise made.
    exact_resume: ClassVar[bool] = True

    def __init__(self, cfg: TrainerConfig, source: Any, ctx: TrainerContext) -> None:
        if not isinstance(cfg, self.Config):
            raise TypeError(f"{type(self).__name__} expects a {self.Config.__name__}")
        self.cfg = cfg
        self.source = source
        self.ctx = ctx
        self.seed = ctx.seed

    @abstractmethod
    def train_step(self) -> dict[str, float]:
        """Do one unit of progress, never past the budget; return floats tagged ``charts/``, ...

        A call that can take more than a fraction of a second returns early once
        ``self.ctx.stop.requested`` is set (see `StopFlag`)."""

    @abstractmethod
    def evaluate(self, episodes: int, seed: int) -> dict[str, float]:
        """Measure the current model; floats tagged ``eval/``.

        `episodes` sizes an agent's evaluation and `seed` seeds it: the runner passes the
        same seed to every periodic evaluation and a fresh one to the final evaluation.
        Trainers that evaluate on a fixed held-out set ignore `episodes`.
        """

    @abstractmethod
    def progress(self) -> dict[str, int]:
        """Monotonic counters, e.g. ``{"steps": 12_000, "episodes": 410}``."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume bit for bit: tensors, numbers, strings, lists, dicts."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""

    def policy_state_dict(self) -> dict[str, Any]:
        """What acting needs (the networks the policy uses): all that ``best.pt`` holds.
        A subset of `state_dict`'s keys; the default is the whole state."""
        return self.state_dict()

    def load_policy_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `policy_state_dict` returned (or a whole `state_dict`)."""
        self.load_state_dict(state)

    # -- the budget -------------------------------------------------------------------

    @classmethod
    def preferred_threads(cls, cfg: Any) -> int:
        """torch's CPU threads for this plugin unless the user sets ``threads``: one for an
        agent, whose small networks on small batches run fastest on one core; the physical
        cores for a generative trainer, whose products are large enough to share."""
        return 1

    @classmethod
    def budget_multiple(cls, cfg: Any) -> int:
        """A budget must be a multiple of this (e.g. the number of envs stepped together)."""
        return 1

    @classmethod  # noqa: B027 - no relation to check by default
    def check_budget(cls, cfg: Any, unit: str, amount: int) -> None:
        """Raise ConfigError when `cfg` cannot make sense of a budget of `amount` `unit`s
        (a DQN whose learning starts after the budget ends): checked before a run exists."""

    def budget_left(self) -> int:
        """How much of the budget is left, in the budget's unit; a train_step must not
        do more than this."""
        budget = self.ctx.budget
        return max(0, budget.amount - self.progress()[budget.unit])

    def budget_fraction(self) -> float:
        """Progress through the budget in [0, 1], for schedules that anneal over the run.

        It is computed from the counters, so a schedule continues across train_step
        calls and across a resume without state of its own."""
        budget = self.ctx.budget
        return min(1.0, self.progress()[budget.unit] / budget.amount)

    # -- optional hooks ---------------------------------------------------------------

    def save_extra(self, directory: Path) -> None:  # noqa: B027 - most plugins have none
        """Write state too large to rewrite into every checkpoint dict (a replay buffer) as
        files in `directory`, a fresh folder that belongs to ``last.pt``."""

    def load_extra(self, directory: Path) -> None:  # noqa: B027
        """Read back what `save_extra` wrote, after `load_state_dict`."""

    def networks(self) -> dict[str, tuple[Any, tuple[Any, ...]]]:
        """Name -> (torch module, example inputs for one forward pass), for
        ``gymkit run ... --summary``'s table of layers, output shapes and parameters."""
        return {}

    def images(self) -> dict[str, np.ndarray]:
        """HWC uint8 images to log at each evaluation (value maps, sample grids)."""
        return {}

    def summary(self) -> dict[str, Any]:
        """Extra JSON-able facts for summary.json and the final table."""
        return {}

    def panels(self) -> list[tuple[str, str]]:
        """(title, text) blocks to show after training, e.g. a policy drawn on a map."""
        return []

    def close(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Release environments, files and workers."""


class Agent(Trainer):
    """An RL agent: acts in a gymnasium environment given by an `EnvSource`.

    It hands out a `Policy`; the toolkit evaluates every agent with it, the same way."""

    kind: ClassVar[str] = "agent"
    budget_units: ClassVar[tuple[str, ...]] = ("steps", "episodes")
    default_run: ClassVar[dict[str, Any]] = {"eval_every": 10_000, "checkpoint_every": 50_000,
                                             "log_every": 1_000}
    #: Envs that an evaluation plays side by side. Results do not depend on it: episode k
    #: of an evaluation starts from its own seed whichever env plays it. 20: the presets'
    #: periodic evaluations in one wave, one network call per step for all of them.
    eval_envs: ClassVar[int] = 20

    @classmethod
    def incompatibility(cls, observation_space: Any, action_space: Any) -> str | None:
        """Why this agent cannot work with these gymnasium spaces, or None if it can.

        gymkit uses it to suggest only agents that fit an env."""
        return None

    @abstractmethod
    def policy(self, deterministic: bool = True) -> Policy:
        """A policy that acts as the agent does now: greedy when `deterministic`, else as
        in training. Evaluation and `gymkit eval` use it before training goes on."""

    def evaluate(self, episodes: int, seed: int) -> dict[str, float]:
        """The deterministic policy over `episodes` episodes, episode k seeded `seed + k`."""
        results = evaluate_policy(self.policy(deterministic=True), self.source, episodes,
                                  seed=seed, n_envs=self.eval_envs)
        return results.metrics(with_success=self.source.success is not None)


class GenerativeTrainer(Trainer):
    """A generative model trained on a dataset (a `toolkit.data.Dataset`).

    Periodic evaluations measure the validation split; the final one, and `gymkit eval`,
    the test split (`eval_split`)."""

    kind: ClassVar[str] = "generative"
    progress_unit: ClassVar[str] = "epochs"
    budget_units: ClassVar[tuple[str, ...]] = ("epochs", "steps")
    default_budget: ClassVar[tuple[str, int]] = ("epochs", 10)
    #: An epoch is a long unit: evaluate and checkpoint after every one.
    default_run: ClassVar[dict[str, Any]] = {"eval_every": 1, "checkpoint_every": 1}
    eval_metric: ClassVar[str] = "eval/loss"
    eval_higher_is_better: ClassVar[bool] = False
    default_dataset: ClassVar[str] = "digits"

    @classmethod
    def preferred_threads(cls, cfg: Any) -> int:
        from toolkit.device import physical_cores

        return physical_cores()

    #: Named hyperparameter sets, chosen with ``--preset NAME``: config keys and run
    #: settings (``epochs``) as a config file would give them.
    presets: ClassVar[dict[str, dict[str, Any]]] = {}

    def eval_split(self, seed: int) -> str:
        """The split an evaluation with `seed` measures: ``validation`` for the periodic
        ones (which choose best.pt), ``test`` for any other: the final evaluation, and
        `gymkit eval` whatever its ``--eval-seed``."""
        return "validation" if seed == self.seed + PERIODIC_EVAL_SEED else "test"

    def sample(self, n: int, seed: int) -> np.ndarray:
        """`n` samples from the model, drawn with `seed`, as a batch ``(n, C, H, W)`` in
        [0, 1] (for `gymkit sample`)."""
        raise NotImplementedError(f"{type(self).__name__} cannot sample")
