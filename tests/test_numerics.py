"""The one fast path (`toolkit.nets.update`) against torch's eager path, on any CPU.

The compiled update and the eager one are two code paths: they agree to float32's rounding,
never promised to the bit (docs/reproducibility.md). Each gives the same bits run to run.
`make test` runs this file under several kernel dispatches (MKL's AVX2 code, ATen's AVX2
and default kernels), so that a CPU unlike the developers' is simulated on theirs.
"""

from __future__ import annotations

import copy
import itertools
import os
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from toolkit.nets.update import (
    AUTO_MIN_CALLS,
    Learner,
    compile_update,
    compiler_available,
    resolve_compile,
)

pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.skipif(not compiler_available(), reason="no C++ compiler: inductor "
                                 "cannot compile here, and gymkit runs eagerly")]

RTOL, ATOL = 1e-5, 1e-6


def mlp(widths: list[int], activation: type[nn.Module], bias: bool, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(widths)):
        layers.append(nn.Linear(a, b, bias=bias))
        if i < len(widths) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


OPTIMIZERS: dict[str, Callable[[Any], torch.optim.Optimizer]] = {
    "adam": lambda p: torch.optim.Adam(p, lr=3e-3, eps=1e-5),
    "rmsprop": lambda p: torch.optim.RMSprop(p, lr=7e-4, alpha=0.99, eps=1e-5),
    "sgd-momentum": lambda p: torch.optim.SGD(p, lr=1e-2, momentum=0.9),
}

#: Shapes a tuned kernel meets least: odd widths, a width of one, one row, a view of a
#: larger buffer at an odd offset.
CASES = [
    pytest.param([3, 17, 1, 5], nn.Tanh, True, "adam", 1.0, 5, id="odd-widths-tanh-adam-clip"),
    pytest.param([4, 64, 64, 2], nn.ReLU, True, "rmsprop", 0.0, 64, id="rl-zoo-relu-rmsprop"),
    pytest.param([7, 8, 3], nn.ReLU, False, "sgd-momentum", 0.5, 1, id="one-row-no-bias-sgd"),
]


def learner_step(widths: list[int], activation: type[nn.Module], bias: bool, optimizer: str,
                 max_norm: float, compiled: bool) -> tuple[nn.Module, torch.optim.Optimizer,
                                                           Callable[..., Any]]:
    net = mlp(widths, activation, bias, seed=0)
    opt = OPTIMIZERS[optimizer](net.parameters())
    learner = Learner({"net": net}, opt, max_norm)

    def loss_fn(x: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        out = net(x)
        return F.smooth_l1_loss(out, target), {"mean": out.mean()}

    def update(x: torch.Tensor, target: torch.Tensor) -> Any:
        return learner.minimize(loss_fn, x, target)

    return net, opt, compile_update(update, [learner], compiled)


def batches(widths: list[int], rows: int, count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """`count` batches whose inputs are non-contiguous views of a larger buffer at an odd
    offset (an unaligned address)."""
    generator = torch.Generator().manual_seed(1)
    out = []
    for _ in range(count):
        buffer = torch.randn(rows * widths[0] * 2 + 3, generator=generator)
        x = buffer[3:3 + rows * widths[0] * 2].view(rows, widths[0] * 2)[:, ::2]
        assert not x.is_contiguous()
        out.append((x, 10 * torch.randn(rows, widths[-1], generator=generator)))
    return out


@pytest.mark.parametrize(("widths", "activation", "bias", "optimizer", "max_norm", "rows"), CASES)
def test_a_compiled_step_is_the_eager_step_to_float32_rounding(
        widths: list[int], activation: type[nn.Module], bias: bool, optimizer: str,
        max_norm: float, rows: int) -> None:
    """One step at a time from the same state: the gradients' clipping (steps that clip and
    steps that do not), the optimizer's update and its state, a changed learning rate (no
    recompilation), and the reported loss and stats."""
    eager = learner_step(widths, activation, bias, optimizer, max_norm, compiled=False)
    compiled = learner_step(widths, activation, bias, optimizer, max_norm, compiled=True)
    assert compiled[2].compiled and not eager[2].compiled
    for step, (x, target) in enumerate(batches(widths, rows, 4)):
        if step == 2:
            for _, opt, _ in (eager, compiled):
                opt.param_groups[0]["lr"] *= 0.5  # a schedule
        # Each step starts from the same state: the compiled side's is copied from eager's.
        with torch.no_grad():
            for mine, theirs in zip(compiled[0].parameters(), eager[0].parameters(),
                                    strict=True):
                mine.copy_(theirs)
        compiled[1].load_state_dict(copy.deepcopy(eager[1].state_dict()))
        (loss_e, stats_e), (loss_c, stats_c) = eager[2](x, target), compiled[2](x, target)
        torch.testing.assert_close(loss_c, loss_e, rtol=RTOL, atol=ATOL)
        torch.testing.assert_close(stats_c["mean"], stats_e["mean"], rtol=RTOL, atol=ATOL)
        for mine, theirs in zip(compiled[0].parameters(), eager[0].parameters(), strict=True):
            torch.testing.assert_close(mine, theirs, rtol=RTOL, atol=ATOL)
        for mine, theirs in zip(compiled[1].state_dict()["state"].values(),
                                eager[1].state_dict()["state"].values(), strict=True):
            assert mine.keys() == theirs.keys()
            for key in mine:
                torch.testing.assert_close(mine[key], theirs[key], rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_each_path_gives_the_same_bits_run_to_run(compiled: bool) -> None:
    runs = []
    for _ in range(2):
        net, _, update = learner_step([3, 17, 1, 5], nn.Tanh, True, "adam", 1.0, compiled)
        for x, target in batches([3, 17, 1, 5], 5, 3):
            update(x, target)
        runs.append([p.detach().clone() for p in net.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*runs, strict=True))


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_an_unaligned_buffer_cannot_change_a_result(compiled: bool) -> None:
    """No tensor the update writes is a view into a shared buffer (the hand-derived path
    wrote products into views at any offset, which MKL rounds differently on some CPUs):
    every parameter and every optimizer state tensor owns its 64-byte aligned storage. And
    an input at an unaligned address gives the bits of its aligned copy."""
    results = []
    for contiguous in (False, True):
        net, opt, update = learner_step([3, 17, 1, 5], nn.Tanh, True, "adam", 1.0, compiled)
        for x, target in batches([3, 17, 1, 5], 5, 3):
            update(x.contiguous() if contiguous else x, target)
        results.append([p.detach().clone() for p in net.parameters()])
        owned = [*net.parameters(), *(t for state in opt.state.values()
                                      for t in state.values() if t.dim() > 0)]
        assert all(t.storage_offset() == 0 and t.data_ptr() % 64 == 0 for t in owned)
    assert all(torch.equal(a, b) for a, b in zip(*results, strict=True))


def test_resolve_compile_follows_the_setting_and_the_run_length() -> None:
    assert resolve_compile(True, 1) and not resolve_compile(False, 10**9)
    assert not resolve_compile("auto", AUTO_MIN_CALLS - 1)
    assert resolve_compile("auto", AUTO_MIN_CALLS) == compiler_available()
    with pytest.raises(ValueError, match="compile must be true, false or auto"):
        resolve_compile("sometimes", 1)


def test_compile_true_without_a_compiler_is_a_config_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from toolkit.errors import ConfigError

    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr("shutil.which", lambda name: None)
    assert not resolve_compile("auto", 10**9)
    # Raised at the first update, not before: a run recorded with compile=true still
    # evaluates on such a machine.
    net = mlp([3, 8, 1], nn.Tanh, True, 0)
    learner = Learner({"net": net}, torch.optim.SGD(net.parameters(), lr=0.1))

    def loss_fn(x: torch.Tensor, net: nn.Module = net) -> tuple[torch.Tensor, Any]:
        return net(x).square().mean(), {}

    update = compile_update(partial(learner.minimize, loss_fn), [learner],
                            resolve_compile(True, 1))
    with pytest.raises(ConfigError, match=r"compile=true needs .* a C\+\+ compiler"):
        update(torch.randn(4, 3))


def test_a_compiled_update_freezes_its_parameters_at_its_first_call() -> None:
    """Until then the networks are trainable to whoever asks (`--summary` counts them)."""
    net = mlp([3, 8, 1], nn.Tanh, True, 0)
    learner = Learner({"net": net}, torch.optim.Adam(net.parameters(), lr=1e-3))

    def loss_fn(x: torch.Tensor, net: nn.Module = net) -> tuple[torch.Tensor, Any]:
        return net(x).square().mean(), {}

    update = compile_update(partial(learner.minimize, loss_fn), [learner], True)
    assert all(p.requires_grad for p in net.parameters())
    update(torch.randn(4, 3))
    assert not any(p.requires_grad for p in net.parameters())


def test_an_optimizer_without_state_is_not_rebuilt_at_every_step() -> None:
    """SGD without momentum keeps no state: the compiled step stays the one compiled
    (a new step object at every call would fail dynamo's guards and recompile)."""
    net = mlp([3, 8, 1], nn.Tanh, True, 0)
    learner = Learner({"net": net}, torch.optim.SGD(net.parameters(), lr=0.1))

    def loss_fn(x: torch.Tensor, net: nn.Module = net) -> tuple[torch.Tensor, Any]:
        return net(x).square().mean(), {}

    update = compile_update(partial(learner.minimize, loss_fn), [learner], True)
    update(torch.randn(4, 3))
    step = learner._step
    for _ in range(3):
        update(torch.randn(4, 3))
    assert learner._step is step


def _actor_step(learner: Learner, actor: nn.Module, critic: nn.Module,
                x: torch.Tensor) -> dict[str, Any]:
    def loss_fn(x: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        return -critic(torch.cat([x, actor(x)], dim=1)).mean(), {}

    return learner.minimize(loss_fn, x)


def test_a_learner_differentiates_its_own_parameters_only() -> None:
    """An actor's loss through a critic: the critic's parameters do not move, and hold no
    gradient afterwards, in either path."""
    for compiled in (False, True):
        actor, critic = mlp([3, 8, 2], nn.Tanh, True, 0), mlp([5, 8, 1], nn.Tanh, True, 1)
        learner = Learner({"actor": actor}, torch.optim.Adam(actor.parameters(), lr=1e-2))
        update = compile_update(partial(_actor_step, learner, actor, critic), [learner],
                                compiled, constants=(critic,))
        before = [p.detach().clone() for p in (*actor.parameters(), *critic.parameters())]
        update(torch.randn(4, 3))
        after = [p.detach() for p in (*actor.parameters(), *critic.parameters())]
        moved = [not torch.equal(a, b) for a, b in zip(before, after, strict=True)]
        assert all(moved[:4]) and not any(moved[4:])
        assert all(p.grad is None for p in critic.parameters())


class _SharedParts(nn.Module):
    """An encoder reached by two paths (actor and critic sharing it) and a weight tied
    across two heads: the shapes of sharing in gymkit's networks and in language models."""

    def __init__(self) -> None:
        super().__init__()
        self.actor_encoder = nn.Linear(4, 8)
        self.critic_encoder = self.actor_encoder
        self.head, self.other_head = nn.Linear(8, 3), nn.Linear(8, 3)
        self.other_head.weight = self.head.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.head(self.actor_encoder(x)).square().sum()
                + self.other_head(torch.tanh(self.critic_encoder(x))).sum())


def test_shared_modules_and_tied_weights_step_as_one_parameter() -> None:
    """The compiled step sees each shared parameter once, with the gradient of all of its
    uses, and leaves the modules holding their own Parameters afterwards."""
    steps = {}
    for compiled in (False, True):
        torch.manual_seed(0)
        net = _SharedParts()
        learner = Learner({"net": net}, torch.optim.SGD(net.parameters(), lr=0.1))

        def loss_fn(x: torch.Tensor, net: nn.Module = net) -> tuple[torch.Tensor, Any]:
            return net(x), {}

        update = compile_update(partial(learner.minimize, loss_fn), [learner], compiled)
        update(torch.ones(5, 4))
        assert update.compiled == compiled
        assert net.critic_encoder.weight is net.actor_encoder.weight
        assert net.other_head.weight is net.head.weight
        assert all(isinstance(p, nn.Parameter) for p in (net.actor_encoder.weight,
                                                         net.other_head.weight))
        steps[compiled] = [p.detach().clone() for p in net.parameters()]
    for eager, traced in zip(steps[False], steps[True], strict=True):
        torch.testing.assert_close(traced, eager, rtol=1e-5, atol=1e-6)


def test_a_compiled_update_takes_one_hot_observations() -> None:
    """Discrete observations are one-hot encoded inside the update (the linear Q-network on
    FrozenLake): the encoding must trace without reading the values."""
    from gymnasium import spaces

    from toolkit.nets.preprocess import Preprocessor

    steps = {}
    for compiled in (False, True):
        torch.manual_seed(0)
        net = nn.Sequential(Preprocessor(spaces.Discrete(6, start=2)), nn.Linear(6, 1))
        learner = Learner({"net": net}, torch.optim.SGD(net.parameters(), lr=0.1))

        def loss_fn(obs: torch.Tensor, net: nn.Module = net) -> tuple[torch.Tensor, Any]:
            return net(obs).square().mean(), {}

        update = compile_update(partial(learner.minimize, loss_fn), [learner], compiled)
        losses = [update(torch.tensor([2, 7, 4, 4]))[0] for _ in range(2)]
        steps[compiled] = losses
    torch.testing.assert_close(steps[True], steps[False], rtol=1e-5, atol=1e-6)


def test_a_compiled_update_follows_its_modules_train_and_eval_modes() -> None:
    """Dropout on in train(), off in eval(): the compiled update keeps dynamo's guard on each
    module's mode (and on nothing else of the modules), so that it follows the switch. (A
    learning rate of 0 keeps the weights, so that only the mode changes the loss.)"""
    for compiled in (False, True):
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(4, 32), nn.Dropout(0.5), nn.Linear(32, 1))
        learner = Learner({"net": net}, torch.optim.SGD(net.parameters(), lr=0.0))

        def loss_fn(x: torch.Tensor, net: nn.Module = net) -> tuple[torch.Tensor, Any]:
            return net(x).square().mean(), {}

        update = compile_update(partial(learner.minimize, loss_fn), [learner], compiled)
        x = torch.randn(16, 4, generator=torch.Generator().manual_seed(1))
        losses = {}
        for mode in ("eval", "train"):
            getattr(net, mode)()
            losses[mode] = update(x)[0]
        net.eval()
        assert torch.equal(update(x)[0], losses["eval"])
        assert not torch.equal(losses["train"], losses["eval"]), compiled


def test_inductors_cache_is_kept_per_cpu_capability(monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Any) -> None:
    """torch 2.13 reuses a graph compiled for one capability under another and computes
    wrong numbers (toolkit.nets.update): each capability gets a folder of its own, unless
    the user chose the folder."""
    from toolkit.nets import update

    capability = torch.backends.cpu.get_cpu_capability().lower()
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    update.separate_cache_per_capability()
    chosen = os.environ["TORCHINDUCTOR_CACHE_DIR"]
    assert chosen == os.path.join(update._default_cache_dir(), capability)
    update.separate_cache_per_capability()  # again: the same folder, not one level deeper
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == chosen
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    update.separate_cache_per_capability()
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path)


def test_the_agents_hold_no_derivative_or_optimizer_arithmetic() -> None:
    """Every agent's update goes through `Learner`: no agent calls a backward op or a
    private optimizer kernel, or writes an optimizer's or a clipping rule's arithmetic."""
    import re
    from pathlib import Path

    forbidden = re.compile(r"torch\.ops\.aten\.\w*_backward|torch\._fused_\w+|_foreach_\w+"
                           r"|exp_avg|square_avg|clip_grad_norm_|get_total_norm"
                           r"|\.backward\(|autograd\.grad")
    agents = Path(__file__).resolve().parents[1] / "agents"
    found = [f"{path.name}:{number}: {line.strip()}"
             for path in sorted(agents.glob("*.py"))
             for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if forbidden.search(line)]
    assert not found, found
