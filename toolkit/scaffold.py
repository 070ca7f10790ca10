"""`gymkit new plugin NAME`: write a new plugin package from the templates in this file.

The package holds an agent (tabular SARSA) with an env preset, and a generative
trainer (a Gaussian mixture) with a generated dataset; tests that run
`check_plugin` on each and train briefly through `toolkit.launch`; a
pyproject.toml declaring the ``gymkit.plugins`` entry points; and a README.

``examples/plugin-template`` is the same package rendered under the names in
`EXAMPLE`. After editing a template, regenerate it with::

    python -m toolkit.scaffold --regenerate-example

tests/test_plugin_template.py fails while the two disagree. The templates are
strings in this module, not files, so that they ship inside gymkit's wheel
with no package data and exist in one copy only.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import keyword
import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from toolkit.errors import GymkitError

KINDS = ("agent", "generative")
MAX_NAME_LENGTH = 30
EXAMPLE_DIR = Path(__file__).resolve().parent.parent / "examples" / "plugin-template"
_VALID_NAME = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")
_SECTION = re.compile(r"^\{\{#(\w+)\}\}\n(.*?)^\{\{/\1\}\}\n", re.DOTALL | re.MULTILINE)


@dataclass(frozen=True)
class Names:
    """The names a package is rendered under."""

    #: Distribution name, as in ``pip install``: ``acme-rl``.
    dist: str
    #: Import package: ``acme_rl``.
    package: str
    #: What the plugin names start with: ``acme-rl`` gives ``acme-rl-sarsa``.
    prefix: str

    @classmethod
    def for_name(cls, name: str) -> Names:
        """Names for ``gymkit new plugin NAME``; a GymkitError if NAME cannot be used."""
        if not _VALID_NAME.fullmatch(name) or len(name) > MAX_NAME_LENGTH:
            raise GymkitError(f"invalid plugin package name '{name}': use lowercase letters, "
                              "digits and single dashes, starting with a letter, at most "
                              f"{MAX_NAME_LENGTH} characters (e.g. acme-rl)")
        package = name.replace("-", "_")
        if keyword.iskeyword(package):
            raise GymkitError(f"'{name}' is a Python keyword and cannot name a package; "
                              "pick another name")
        if importlib.util.find_spec(package) is not None:
            raise GymkitError(f"a module named '{package}' is already importable here; pick "
                              "a name that does not shadow it")
        with contextlib.suppress(metadata.PackageNotFoundError):
            metadata.distribution(name)
            raise GymkitError(f"a distribution named '{name}' is already installed; pick "
                              "another name")
        return cls(name, package, name)


#: The names of ``examples/plugin-template``.
EXAMPLE = Names("gymkit-plugin-template", "gymkit_plugin_template", "template")
#: Per kind: what a package registers, as (what, name after the prefix).
PLUGINS = {"agent": (("agent", "sarsa"), ("env preset", "chain")),
           "generative": (("generative trainer", "mixture"), ("dataset", "blobs"))}


def registered(prefix: str, kinds: Iterable[str] = KINDS) -> list[tuple[str, str]]:
    """(what, registered name) of every plugin a package of these kinds holds."""
    return [(what, f"{prefix}-{suffix}") for kind in kinds for what, suffix in PLUGINS[kind]]


def render(names: Names, kinds: Iterable[str] = KINDS, *,
           example: bool = False) -> dict[str, str]:
    """Every file of the package: relative path -> text."""
    sections = {*kinds, "example"} if example else set(kinds)
    unknown = sections - {*KINDS, "example"}
    if unknown:
        raise GymkitError(f"unknown plugin kind {sorted(unknown)[0]!r}; use agent or generative")
    files = {}
    for path, (kind, text) in FILES.items():
        if kind is None or kind in sections:
            # Each template starts on the line after its r''' quotes: drop that first newline.
            files[_fill(path, names, sections)] = _fill(text[1:], names, sections)
    return files


def _fill(text: str, names: Names, sections: set[str]) -> str:
    text = _SECTION.sub(lambda m: m.group(2) if m.group(1) in sections else "", text)
    for key, value in (("dist", names.dist), ("package", names.package),
                       ("prefix", names.prefix)):
        text = text.replace("{{" + key + "}}", value)
    if "{{" in text:
        raise AssertionError(f"a placeholder is left in: {text[text.index('{{'):][:40]!r}")
    return text


def write(folder: Path, files: dict[str, str]) -> None:
    for relative, text in files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def new_plugin(name: str, kind: str | None = None, folder: Path | None = None) -> Path:
    """Write the package `name` (an agent, a generative trainer, or both) into `folder`
    (default: ./NAME), which must not exist yet."""
    names = Names.for_name(name)
    files = render(names, KINDS if kind is None else (kind,))
    folder = folder if folder is not None else Path(name)
    if folder.exists():
        raise GymkitError(f"{folder} already exists; pass another folder with --dir")
    try:
        folder.mkdir(parents=True)
        write(folder, files)
    except OSError as exc:
        raise GymkitError(f"cannot write {folder}: {exc.strerror or exc}") from exc
    return folder


def example_differences(folder: Path = EXAMPLE_DIR) -> list[str]:
    """How `folder` differs from a fresh rendering of the example, one line per file."""
    expected = render(EXAMPLE, example=True)
    problems = []
    for relative, text in sorted(expected.items()):
        path = folder / relative
        if not path.is_file():
            problems.append(f"{relative} is missing")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"{relative} differs")
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if path.is_file() and relative not in expected and not _ignored(relative):
            problems.append(f"{relative} is not written by the scaffold")
    return problems


def _ignored(relative: str) -> bool:
    """Build and tool outputs (as in .gitignore) that may sit in the example folder."""
    parts = relative.split("/")
    return any(p in ("__pycache__", "build", "dist", ".pytest_cache", ".mypy_cache",
                     ".ruff_cache") or p.endswith(".egg-info") for p in parts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m toolkit.scaffold", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--regenerate-example", action="store_true", required=True,
                        help=f"rewrite {EXAMPLE_DIR} from the templates")
    parser.parse_args(argv)
    if not EXAMPLE_DIR.parent.is_dir():
        raise SystemExit(f"{EXAMPLE_DIR.parent} does not exist: run this in a gymkit checkout")
    write(EXAMPLE_DIR, render(EXAMPLE, example=True))
    for line in example_differences():
        print(line)


# -- the templates ------------------------------------------------------------------------
# {{dist}}, {{package}} and {{prefix}} are replaced by the names; a block between the lines
# {{#kind}} and {{/kind}} is kept only when that kind (or "example") is rendered.

_PYPROJECT = r'''
[build-system]
requires = ["setuptools>=69"]
build-backend = "setuptools.build_meta"

[project]
name = "{{dist}}"
version = "0.1.0"
description = "Plugins for gymkit"
requires-python = ">=3.10"
dependencies = ["gymkit>=0.1"]

[project.optional-dependencies]
test = ["pytest>=8"]

# gymkit imports these modules the first time it looks a name up; each registers its plugins.
[project.entry-points."gymkit.plugins"]
{{#agent}}
agent = "{{package}}.agent"
envs = "{{package}}.envs"
{{/agent}}
{{#generative}}
data = "{{package}}.data"
generative = "{{package}}.generative"
{{/generative}}

[tool.setuptools.packages.find]
where = ["src"]

[tool.pytest.ini_options]
testpaths = ["tests"]
addopts = "-ra --strict-markers"
filterwarnings = ["ignore::DeprecationWarning:tensorboard.*", "ignore::DeprecationWarning:google.*"]

[tool.ruff]
line-length = 100
target-version = "py310"

[tool.ruff.lint]
select = ["E", "F", "W", "I", "B", "UP", "SIM", "RUF"]
ignore = ["RUF001", "RUF002", "RUF003"]
'''

_README = r'''
# {{dist}}

Plugins for gymkit, in a package of their own.
{{#example}}
This folder is written by `python -m toolkit.scaffold --regenerate-example` from the
templates in gymkit's `toolkit/scaffold.py`: edit those, then regenerate.
{{/example}}

| name | what | module |
|---|---|---|
{{#agent}}
| `{{prefix}}-sarsa` | agent: tabular SARSA, epsilon-greedy | `agent.py` |
| `{{prefix}}-chain` | env preset: a slippery FrozenLake chain of 10 cells | `envs.py` |
{{/agent}}
{{#generative}}
| `{{prefix}}-mixture` | generative: a Gaussian mixture fit by gradient descent | `generative.py` |
| `{{prefix}}-blobs` | dataset: three Gaussian blobs in 2-D, generated | `data.py` |
{{/generative}}

The modules are in `src/{{package}}/`, the tests in `tests/`.

## Install

Into the environment that has gymkit:

```bash
pip install -e .        # offline: pip install --no-deps --no-build-isolation -e .
gymkit list             # shows the names above, with the package {{dist}}
```

## Use

```bash
{{#agent}}
gymkit run agent {{prefix}}-chain
gymkit run agent frozenlake-deterministic --algo {{prefix}}-sarsa --steps 10000
{{/agent}}
{{#generative}}
gymkit run generative {{prefix}}-mixture --dataset {{prefix}}-blobs --epochs 20
{{/generative}}
```

## Test

```bash
pytest                  # from this folder, once installed
```

The tests run gymkit's `check_plugin` on each plugin (config errors, determinism, the
budget, the checkpoint round trip, and that a resumed run continues exactly as an
uninterrupted one), a short run of each through `toolkit.launch`, and a learning test.

## Next

Rename the plugins, change the algorithms, keep the tests green. gymkit's
`docs/plugins.md` lists the rules a plugin follows; `gymkit new plugin NAME` writes
another package like this one under a new name.
'''

_INIT = r'''
"""gymkit plugins, registered through the entry points in pyproject.toml.

gymkit imports each module named under ``[project.entry-points."gymkit.plugins"]``
the first time it looks a name up; importing a module registers its plugins and
does nothing else.
"""
'''

_AGENT = r'''
"""Tabular SARSA: on-policy TD control with an epsilon-greedy policy.

After a step (s, a, r, s') the policy picks a' in s', and

    Q(s, a) += alpha * (r + gamma * Q(s', a') - Q(s, a))

with no bootstrap when s' is terminal (a time-limit truncation still
bootstraps). Epsilon falls linearly over the first `exploration_fraction` of
the training budget, computed from the progress counters, so the schedule
continues unbroken across a resume.

A train_step plays whole episodes, each starting with its own reset. No
episode is in flight at a checkpoint, and a trainer resumed with a fresh env
replays the next reset exactly from the env RNG state it saved.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from toolkit.config import TrainerConfig, check_range, param
from toolkit.environments import EnvSource
from toolkit.errors import ConfigError, GymkitError, IncompatibleEnvError
from toolkit.policy import FunctionPolicy, Policy
from toolkit.registry import AGENTS
from toolkit.seeding import (
    numpy_rng_state,
    python_rng_state,
    set_numpy_rng_state,
    set_python_rng_state,
)
from toolkit.trainer import Agent, TrainerContext

NAME = "{{prefix}}-sarsa"


@dataclass
class SarsaConfig(TrainerConfig):
    alpha: float = param(0.1, "learning rate (step size)")
    gamma: float = param(0.95, "discount factor")
    epsilon_start: float = param(1.0, "exploration rate at the start of training")
    epsilon_end: float = param(0.05, "exploration rate once exploration_fraction of the "
                                     "budget is spent")
    exploration_fraction: float = param(0.5, "fraction of the budget over which epsilon falls")
    initial_q: float = param(0.0, "initial value of every Q(s, a)")
    steps_per_call: int = param(500, "environment steps per train_step, rounded up to the end "
                                     "of an episode unless the budget ends first")

    def validate(self) -> None:
        check_range(self, "alpha", 0, 1, low_open=True)
        check_range(self, "gamma", 0, 1)
        check_range(self, "epsilon_start", 0, 1)
        check_range(self, "epsilon_end", 0, 1)
        check_range(self, "exploration_fraction", 0, 1, low_open=True)
        check_range(self, "steps_per_call", 1)
        if self.epsilon_end > self.epsilon_start:
            raise ConfigError(f"epsilon_end ({self.epsilon_end}) must not exceed "
                              f"epsilon_start ({self.epsilon_start})")


@AGENTS.register(NAME)
class SarsaAgent(Agent):
    """Tabular SARSA with a linearly annealed epsilon-greedy policy."""

    Config = SarsaConfig
    cfg: SarsaConfig
    source: EnvSource
    uses_torch = False  # a table of Python floats: gymkit never imports torch for it

    @classmethod
    def incompatibility(cls, observation_space: Any, action_space: Any) -> str | None:
        if isinstance(observation_space, gym.spaces.Discrete) and isinstance(
                action_space, gym.spaces.Discrete):
            return None
        return "needs Discrete observation and action spaces (a table row per state)"

    def __init__(self, cfg: SarsaConfig, source: EnvSource, ctx: TrainerContext) -> None:
        super().__init__(cfg, source, ctx)
        self.env = source.make()  # RecordEpisodeStatistics: info["episode"] at episode ends
        obs_space, act_space = self.env.observation_space, self.env.action_space
        if not (isinstance(obs_space, gym.spaces.Discrete)
                and isinstance(act_space, gym.spaces.Discrete)):
            self.env.close()
            raise IncompatibleEnvError(
                f"{NAME} {self.incompatibility(obs_space, act_space)}, but {source.id} has "
                f"observations {obs_space} and actions {act_space}; pick another agent with "
                "--algo (see `gymkit list`)")
        self.n_states, self.n_actions = int(obs_space.n), int(act_space.n)
        self.q = [[cfg.initial_q] * self.n_actions for _ in range(self.n_states)]
        self.rng = random.Random(ctx.seed)  # the policy's own RNG, saved in state_dict
        self.steps = self.episodes = 0

    def epsilon(self) -> float:
        cfg = self.cfg
        t = min(1.0, self.budget_fraction() / cfg.exploration_fraction)
        return cfg.epsilon_start + t * (cfg.epsilon_end - cfg.epsilon_start)

    def policy(self, deterministic: bool = True) -> Policy:
        """Greedy on a snapshot of the table; gymkit evaluates the agent with it. (This
        agent gives the greedy policy in both cases: an exploring one would draw from the
        RNG that `reset(n_envs, seed)` hands it.)"""
        q = np.array(self.q)
        return FunctionPolicy(lambda obs: q[obs].argmax(axis=1))

    def _act(self, observation: int, epsilon: float) -> int:
        """Epsilon-greedy, breaking ties at random: while Q is flat, it explores."""
        if self.rng.random() < epsilon:
            return self.rng.randrange(self.n_actions)
        row = self.q[int(observation)]
        best = max(row)
        return self.rng.choice([a for a, value in enumerate(row) if value == best])

    def train_step(self) -> dict[str, float]:
        cfg, q = self.cfg, self.q
        unit, left = self.ctx.budget.unit, self.budget_left()
        end_steps = self.steps + left if unit == "steps" else math.inf
        end_episodes = self.episodes + left if unit == "episodes" else math.inf
        call_end = self.steps + cfg.steps_per_call
        returns: list[float] = []
        lengths: list[int] = []
        td_sum, start = 0.0, self.steps
        while self.steps < min(call_end, end_steps) and self.episodes < end_episodes:
            # Reset here, at the start of an episode, never at the end of a train_step.
            obs, _ = self.env.reset(seed=self.seed if self.episodes == 0 else None)
            epsilon = self.epsilon()
            action = self._act(obs, epsilon)
            while self.steps < end_steps:
                next_obs, reward, terminated, truncated, info = self.env.step(action)
                self.steps += 1
                target = float(reward)
                if not terminated:
                    next_action = self._act(next_obs, epsilon)
                    target += cfg.gamma * q[next_obs][next_action]
                td = target - q[obs][action]
                q[obs][action] += cfg.alpha * td
                td_sum += abs(td)
                if terminated or truncated:
                    self.episodes += 1
                    returns.append(float(info["episode"]["r"]))
                    lengths.append(int(info["episode"]["l"]))
                    break
                obs, action = next_obs, next_action
        metrics = {"charts/epsilon": self.epsilon(),
                   "losses/td_error": td_sum / max(1, self.steps - start)}
        if returns:
            metrics["charts/episodic_return"] = sum(returns) / len(returns)
            metrics["charts/episodic_length"] = sum(lengths) / len(lengths)
        return metrics

    def progress(self) -> dict[str, int]:
        return {"steps": self.steps, "episodes": self.episodes}

    def state_dict(self) -> dict[str, Any]:
        return {
            "q": [list(row) for row in self.q],
            "steps": self.steps,
            "episodes": self.episodes,
            "rng": python_rng_state(self.rng),
            "env_rng": numpy_rng_state(self.env.unwrapped.np_random),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        shape = (len(state["q"]), len(state["q"][0]))
        if shape != (self.n_states, self.n_actions):
            raise GymkitError(f"the checkpoint's Q-table has shape {shape}, this env needs "
                              f"{(self.n_states, self.n_actions)}")
        self.q = [[float(v) for v in row] for row in state["q"]]
        self.steps, self.episodes = int(state["steps"]), int(state["episodes"])
        set_python_rng_state(state["rng"], self.rng)
        set_numpy_rng_state(self.env.unwrapped.np_random, state["env_rng"])

    def close(self) -> None:
        self.env.close()
'''

_ENVS = r'''
"""An env preset: a short env name, with its default agent and that agent's settings."""

from __future__ import annotations

from toolkit.environments import ENVS, EnvPreset

CHAIN = EnvPreset(
    name="{{prefix}}-chain",
    id="FrozenLake-v1",
    kwargs={"desc": ["SFFFFFFFFG"], "is_slippery": True},
    description="a slippery chain of 10 cells: a move goes where it should one time in three",
    algo="{{prefix}}-sarsa",  # the default agent for this env
    hyperparams={"{{prefix}}-sarsa": {"steps": 20_000, "eval_every": 2_000}},
    success="terminal_reward",  # an episode that ends with a reward is a success
    action_glyphs=("←", "↓", "→", "↑"),
)

ENVS.add(CHAIN.name, CHAIN, description=CHAIN.description)
'''

_TEST_AGENT = r'''
"""The agent and the env preset: gymkit's contract, short runs, learning, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
from toolkit import launch
from toolkit.environments import ENVS
from toolkit.errors import ConfigError, IncompatibleEnvError
from toolkit.registry import AGENTS
from toolkit.testing import check_plugin

AGENT = "{{prefix}}-sarsa"
ENV = "{{prefix}}-chain"
DISTRIBUTION = "{{dist}}"


def test_the_agent_keeps_the_contract() -> None:
    # taxi starts its episodes in random states: a resume that loses env state shows there.
    check_plugin(AGENTS.get(AGENT), "taxi", overrides={"steps_per_call": 200})


def test_the_plugins_come_from_this_package() -> None:
    assert AGENTS.entry(AGENT).source == DISTRIBUTION
    assert ENVS.entry(ENV).source == DISTRIBUTION


def test_the_env_preset_trains_its_default_agent(tmp_path: Path) -> None:
    prepared = launch.prepare("agent", ENV, flags={"steps": 2_000},
                              assignments=["final_eval_episodes=20"])
    assert prepared.spec["plugin"] == AGENT
    runner = launch.start(prepared, tmp_path, quiet=True)
    result = runner.run()
    runner.trainer.close()
    assert result.status == "completed"
    assert (result.rundir.path / "checkpoints" / "last.pt").is_file()


def test_the_agent_learns_frozenlake_deterministic(tmp_path: Path) -> None:
    prepared = launch.prepare("agent", "frozenlake-deterministic", AGENT,
                              flags={"steps": 10_000, "seed": 0},
                              assignments=["eval_every=5000", "final_eval_episodes=20"])
    runner = launch.start(prepared, tmp_path, quiet=True)
    result = runner.run()
    runner.trainer.close()
    assert result.summary["final_eval"]["eval/success_rate"] == 1.0


def test_bad_input_is_refused_before_training() -> None:
    with pytest.raises(ConfigError, match="alpha must be in"):
        launch.prepare("agent", "taxi", AGENT, assignments=["alpha=0"])
    with pytest.raises(IncompatibleEnvError, match="needs Discrete observation"):
        launch.prepare("agent", "CartPole-v1", AGENT)
'''

_DATA = r'''
"""A generated dataset: `--dataset {{prefix}}-blobs`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from toolkit.data import DATASETS, Dataset, Split, dataset_source

CENTRES = ((-3.0, 0.0), (3.0, 0.0), (0.0, 4.0))
WEIGHTS = (0.5, 0.3, 0.2)
STD = 0.6


@DATASETS.register("{{prefix}}-blobs")
@dataset_source(shape=(2,), size="3,000", origin="generated")
def blobs(data_dir: Path | None) -> Dataset:
    """3,000 2-D points from three Gaussian blobs, generated (the same on every call)."""
    rng = np.random.default_rng(0)
    which = rng.choice(len(WEIGHTS), size=3000, p=WEIGHTS)
    points = (np.asarray(CENTRES)[which] + STD * rng.standard_normal((3000, 2)))
    points = points.astype(np.float32)
    return Dataset("{{prefix}}-blobs", {"train": Split(points[:2400]),
                                        "validation": Split(points[2400:2700]),
                                        "test": Split(points[2700:])},
                   value_range=(float(points.min()), float(points.max())), origin="generated")
'''

_GENERATIVE = r'''
"""A mixture of Gaussians with diagonal covariances, fit by gradient descent.

    log p(x) = logsumexp_k [ log w_k + sum_d log N(x_d; mu_kd, sigma_kd) ]

The weights (as logits), means and log standard deviations are the parameters
of one torch module, trained with Adam on minibatches of the negative
log-likelihood; the means start at random training points. One train_step is
one epoch; eval/loss is the held-out negative log-likelihood in nats per point.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from toolkit.config import TrainerConfig, check_range, param
from toolkit.data import Dataset
from toolkit.errors import GymkitError
from toolkit.images import heatmap
from toolkit.registry import GENERATIVE
from toolkit.trainer import GenerativeTrainer, TrainerContext

NAME = "{{prefix}}-mixture"


@dataclass
class MixtureConfig(TrainerConfig):
    components: int = param(3, "number of Gaussian components")
    lr: float = param(0.05, "Adam learning rate")
    batch_size: int = param(128, "points per optimizer step")

    def validate(self) -> None:
        check_range(self, "components", 1)
        check_range(self, "lr", 0, low_open=True)
        check_range(self, "batch_size", 1)


class Mixture(torch.nn.Module):
    def __init__(self, means: torch.Tensor) -> None:
        super().__init__()
        self.logits = torch.nn.Parameter(torch.zeros(len(means)))
        self.means = torch.nn.Parameter(means.clone())
        self.log_stds = torch.nn.Parameter(torch.zeros_like(means))

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) per row of `x`."""
        normal = torch.distributions.Normal(self.means, self.log_stds.exp())
        per_component = normal.log_prob(x.unsqueeze(1)).sum(dim=2)
        return torch.logsumexp(per_component + torch.log_softmax(self.logits, dim=0), dim=1)


@GENERATIVE.register(NAME)
class GaussianMixture(GenerativeTrainer):
    """Gaussian mixture fit by gradient descent on the negative log-likelihood."""

    Config = MixtureConfig
    cfg: MixtureConfig
    default_dataset = "{{prefix}}-blobs"

    def __init__(self, cfg: MixtureConfig, source: Dataset, ctx: TrainerContext) -> None:
        super().__init__(cfg, source, ctx)
        train = torch.as_tensor(source.split("train").x)
        if train.dim() != 2 or len(train) < cfg.components:
            raise GymkitError(f"{NAME} needs a 2-D tensor of at least {cfg.components} points, "
                              f"got shape {tuple(train.shape)}; pick another --dataset")
        self.device = torch.device(ctx.device)
        self.train_data = train.to(self.device)  # whole batches live on the device
        self.test_data = torch.as_tensor(source.split("validation").x, device=self.device)
        self.generator = torch.Generator().manual_seed(ctx.seed)  # init and data order
        first = torch.randperm(len(train), generator=self.generator)[:cfg.components]
        self.model = Mixture(train[first]).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self.epochs = self.steps = 0

    def nll(self, x: torch.Tensor) -> torch.Tensor:
        return -self.model.log_prob(x).mean()

    def train_step(self) -> dict[str, float]:
        """One epoch; with a budget in steps, the last one stops where the budget ends."""
        order = torch.randperm(len(self.train_data), generator=self.generator).to(self.device)
        starts = range(0, len(order), self.cfg.batch_size)
        if self.ctx.budget.unit == "steps":
            starts = starts[:self.budget_left()]
        total = 0.0
        for start in starts:
            loss = self.nll(self.train_data[order[start:start + self.cfg.batch_size]])
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            total += loss.item()
            self.steps += 1
        self.epochs += 1
        return {"losses/nll": total / len(starts)}

    def evaluate(self, episodes: int, seed: int) -> dict[str, float]:
        with torch.no_grad():
            return {"eval/loss": self.nll(self.test_data).item()}

    def images(self) -> dict[str, np.ndarray]:
        """The fitted density on a 48x48 grid around the data, as a heatmap."""
        low, high = self.train_data.min(dim=0).values, self.train_data.max(dim=0).values
        xs = torch.linspace(float(low[0]), float(high[0]), 48, device=self.device)
        ys = torch.linspace(float(low[1]), float(high[1]), 48, device=self.device)
        grid = torch.cartesian_prod(ys.flip(0), xs).flip(1)  # rows from the top, (x, y) pairs
        with torch.no_grad():
            density = self.model.log_prob(grid).exp().view(48, 48)
        return {"images/density": heatmap(density.cpu().numpy(), cell=4)}

    def progress(self) -> dict[str, int]:
        return {"epochs": self.epochs, "steps": self.steps}

    def state_dict(self) -> dict[str, Any]:
        return {"model": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
                "optimizer": self.optimizer.state_dict(),
                "generator": self.generator.get_state(),
                "epochs": self.epochs, "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.epochs, self.steps = int(state["epochs"]), int(state["steps"])
'''

_TEST_GENERATIVE = r'''
"""The generative trainer and the dataset: gymkit's contract, learning, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from toolkit import launch
from toolkit.data import DATASETS
from toolkit.errors import ConfigError
from toolkit.registry import GENERATIVE
from toolkit.testing import check_plugin

TRAINER = "{{prefix}}-mixture"
DATASET = "{{prefix}}-blobs"
DISTRIBUTION = "{{dist}}"


def test_the_generative_trainer_keeps_the_contract() -> None:
    check_plugin(GENERATIVE.get(TRAINER), DATASET)


def test_the_plugins_come_from_this_package() -> None:
    assert GENERATIVE.entry(TRAINER).source == DISTRIBUTION
    assert DATASETS.entry(DATASET).source == DISTRIBUTION


def test_the_dataset_is_generated_the_same_every_time() -> None:
    first, second = DATASETS.get(DATASET).load(None), DATASETS.get(DATASET).load(None)
    assert first.sizes() == {"train": 2400, "validation": 300, "test": 300}
    assert first.shape == (2,)
    assert np.array_equal(first.split("train").x, second.split("train").x)


def test_the_mixture_learns_the_blobs(tmp_path: Path) -> None:
    prepared = launch.prepare("generative", DATASET, TRAINER,
                              flags={"epochs": 20, "seed": 0})
    runner = launch.start(prepared, tmp_path, quiet=True)
    result = runner.run()
    runner.trainer.close()
    assert result.status == "completed"
    # The blobs' own density scores 2.86 nats per point on the validation split; one
    # Gaussian fitted to it, 4.38.
    assert result.summary["final_eval"]["eval/loss"] < 3.0
    assert (result.rundir.path / "checkpoints" / "best.pt").is_file()


def test_bad_input_is_refused_before_training() -> None:
    with pytest.raises(ConfigError, match="components must be in"):
        launch.prepare("generative", None, TRAINER, assignments=["components=0"])
'''

#: Relative path -> (the kind it belongs to, or None for every package; template).
FILES: dict[str, tuple[str | None, str]] = {
    "pyproject.toml": (None, _PYPROJECT),
    "README.md": (None, _README),
    "src/{{package}}/__init__.py": (None, _INIT),
    "src/{{package}}/agent.py": ("agent", _AGENT),
    "src/{{package}}/envs.py": ("agent", _ENVS),
    "tests/test_agent.py": ("agent", _TEST_AGENT),
    "src/{{package}}/data.py": ("generative", _DATA),
    "src/{{package}}/generative.py": ("generative", _GENERATIVE),
    "tests/test_generative.py": ("generative", _TEST_GENERATIVE),
}


if __name__ == "__main__":
    main()
