"""The one mechanism that makes every network's update fast: a plugin's update, compiled.

A network is defined once, as an `nn.Module`. A plugin writes its update as a plain
function of tensors (its losses as the modules' forward passes and torch operations,
never a derivative), in which each optimizer step is a `Learner.minimize(loss_fn, ...)`,
and hands that function to `compile_update`. The same function then runs one of two ways:

- **compiled** (``torch.compile(fullgraph=True)``): the gradients come from
  ``torch.func.grad`` over the learner's parameters (``functional_call``), the clipping is
  torch's global-norm rule, and the step torch's functional optimizer
  (``torch.optim.adam.adam``, ``rmsprop``, ``sgd``) on the torch optimizer's own state
  tensors, so that the whole update (forward, loss, backward, clipping, optimizer; several
  of them, for an actor and a critic) is one graph: inductor fuses the elementwise work,
  and no Python runs between the kernels. On a GPU the same graph runs as inductor's
  kernels; it is not replayed as a CUDA graph, which would need the optimizer's state and
  the returned losses kept at static addresses (not measured: no GPU was at hand);
- **eager**: ``torch.autograd.grad``, ``torch.nn.utils.clip_grad_norm_`` and
  ``optimizer.step()``: torch's own path, used where compiling does not pay (a short run,
  `resolve_compile`), is switched off, or is not possible (no C++ compiler for inductor).

Either way the optimizer is a torch optimizer whose `state_dict` a checkpoint holds, so a
run resumes in either mode. The two modes compute the same update in another order of
floating-point operations: they agree to a tolerance (tests/test_numerics.py), and each
gives the same bits run to run on one machine.

Why this mechanism, measured against eager torch, the hand-derived backward it replaced and
the floor of the step's own matrix products: docs/architecture.md ("The fast path").
Compiling costs seconds (more with inductor's on-disk cache cold), which is why short runs
stay eager (`resolve_compile`).
"""

from __future__ import annotations

import functools
import getpass
import os
import shutil
import tempfile
import types
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn
from torch.optim.adam import adam
from torch.optim.rmsprop import rmsprop
from torch.optim.sgd import sgd

from toolkit.errors import ConfigError

#: With ``compile: auto``, an update function is compiled when the run is expected to call
#: it at least this many times: at 4-5 s to compile (warm cache), a few hundred
#: microseconds saved per call pay for it after about this many calls.
AUTO_MIN_CALLS = 5_000
#: torch.nn.utils.clip_grad_norm_'s guard against a zero norm.
CLIP_EPSILON = 1e-6

Stats = dict[str, torch.Tensor]
LossFn = Callable[..., tuple[torch.Tensor, Stats]]


def compiler_available(device: torch.device | str = "cpu") -> bool:
    """Whether inductor can compile for `device` here: a C++ compiler for the CPU (the one
    ``CXX`` names, or g++ or clang++), CUDA for a GPU."""
    if torch.device(device).type == "cuda":
        return torch.cuda.is_available()
    compiler = os.environ.get("CXX")
    return any(shutil.which(name) for name in ([compiler] if compiler else ["g++", "clang++"]))


def resolve_compile(mode: str | bool, expected_calls: int,
                    device: torch.device | str = "cpu") -> bool:
    """Whether to compile an update that a run calls about `expected_calls` times: true
    and false say so; ``"auto"`` compiles a long enough run where a compiler is."""
    if isinstance(mode, bool):
        return mode
    if mode != "auto":
        raise ValueError(f"compile must be true, false or auto, got {mode!r}")
    return expected_calls >= AUTO_MIN_CALLS and compiler_available(device)


class UpdateFunction:
    """`fn`, compiled or not (see `compile_update`); `compiled` says which runs."""

    def __init__(self, fn: Callable[..., Any], compiled: bool, device: torch.device,
                 learners: tuple[Learner, ...], constants: tuple[nn.Module, ...]) -> None:
        self.fn = fn
        self.learners = learners
        self.compiled = compiled and all(learner.can_compile for learner in learners)
        self._run: Callable[..., Any] = fn
        self.constants = constants
        self.device = device
        self._frozen = False
        if self.compiled:
            separate_cache_per_capability()
            self._run = torch.compile(_own_code(fn), fullgraph=True, dynamic=False,
                                      options={"guard_filter_fn": _module_guards})

    def __call__(self, *args: Any) -> Any:
        if self.compiled:
            if not self._frozen:
                self._freeze()
            for learner in self.learners:
                learner.sync()
        return self._run(*args)

    def _freeze(self) -> None:
        """torch.func.grad differentiates the traced graph itself: parameters that required
        grad would make the compiled graph an autograd function of its own, saving tensors
        for a backward pass that never comes. Done at the first call, so that the networks
        count as trainable until then (`--summary`), and a run recorded with compile=true
        still evaluates on a machine that could not compile it."""
        if not compiler_available(self.device):
            raise ConfigError("compile=true needs what inductor compiles with: a C++ compiler "
                              "(g++ or clang++, or the one CXX names) for the CPU, CUDA for a "
                              "GPU; install one, or set compile=auto")
        for learner in self.learners:
            learner.freeze()
        for module in self.constants:
            module.requires_grad_(False)
        self._frozen = True

    @property
    def mode(self) -> str:
        return "compiled" if self.compiled else "eager"


def _own_code(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` behind a function whose code object is its own. Dynamo keeps its compiled
    graphs per code object and recompiles when a guard fails: two agents whose update is the
    same method (trials of a sweep in one process, tests) would share a cache and fail
    each other's guards, and the ninth would hit dynamo's recompilation limit."""
    def call(*args: Any) -> Any:
        return fn(*args)

    return types.FunctionType(call.__code__.replace(), call.__globals__, call.__name__,
                              call.__defaults__, call.__closure__)


def compile_update(fn: Callable[..., Any], learners: tuple[Learner, ...] | list[Learner],
                   compiled: bool, device: torch.device | str = "cpu",
                   constants: tuple[nn.Module, ...] = ()) -> UpdateFunction:
    """`fn` as it will run: traced into one graph by torch.compile when `compiled` (see
    `resolve_compile`) and every one of the `learners` it steps can be, else called as it
    is. `constants` are the other modules `fn` calls (target networks): their parameters
    are constants of the update."""
    return UpdateFunction(fn, compiled, torch.device(device), tuple(learners), constants)


def separate_cache_per_capability() -> None:
    """Keep inductor's on-disk cache in a folder per CPU capability that ATen dispatches to
    (``AVX512``, ``AVX2``, ``DEFAULT``), where the user has not chosen the folder
    (``TORCHINDUCTOR_CACHE_DIR``). With torch 2.13, an update compiled under one capability
    and loaded from the cache under another (``ATEN_CPU_CAPABILITY=avx2`` on an AVX-512 CPU)
    computed a loss of 3,912 where eager torch gave 0.317: the cache key misses it."""
    default = _default_cache_dir()
    chosen = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    # Inductor writes its default into the variable when it first needs the folder (even
    # on creating an optimizer): that one is not the user's choice.
    if chosen is not None and os.path.abspath(chosen) != default:
        return
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(
        default, torch.backends.cpu.get_cpu_capability().lower())


def _default_cache_dir() -> str:
    try:
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir
    except ImportError:  # another torch: its folder, as torch 2.13 names it
        user = "".join(c if c.isalnum() else "_" for c in getpass.getuser())
        return os.path.join(tempfile.gettempdir(), f"torchinductor_{user}")
    return os.path.abspath(default_cache_dir())


def _module_guards(entries: list[Any]) -> list[bool]:
    """Which of dynamo's guards a compiled update keeps: all but those on the attributes of
    nn.Modules, apart from ``training``. Checking every attribute of every module costs more
    than a small network's whole step (250 us on the DQN network), and the update's modules
    change only their parameters' values (in place, as ``load_state_dict`` does) and their
    mode (``train()``/``eval()``, still guarded)."""
    return [not entry.orig_guard.source.is_unspecialized_nn_module()
            or entry.name.endswith(".training") for entry in entries]


class _Call(nn.Module):
    """A module over the learner's modules whose forward calls a function: `functional_call`
    then puts the traced parameters in place for the whole loss function."""

    def __init__(self, modules: Mapping[str, nn.Module]) -> None:
        super().__init__()
        self.parts = nn.ModuleDict(dict(modules))

    def forward(self, fn: LossFn, *args: Any) -> tuple[torch.Tensor, Stats]:
        return fn(*args)


class Learner:
    """Parameters of some modules, a torch optimizer over exactly them, and one step of it.

    `minimize(loss_fn, *args)` takes ``loss_fn(*args) -> (loss, stats)`` (``stats`` a dict
    of tensors to report), computes the gradients of the loss with respect to this
    learner's parameters only (other modules the loss calls, a target network or a critic,
    stay as they are), clips them to `max_grad_norm` (0: no clipping) and steps the
    optimizer. It returns the loss and the stats, detached. Inside a compiled update it is
    traced (see the module's docstring); elsewhere it is torch's eager path.

    The optimizer must be `torch.optim.Adam`, `RMSprop` (no momentum, not centered) or `SGD`
    (no Nesterov), with one parameter group, no weight decay and no `maximize`; any other
    optimizer still works eagerly (`can_compile` is False)."""

    def __init__(self, modules: Mapping[str, nn.Module], optimizer: torch.optim.Optimizer,
                 max_grad_norm: float = 0.0) -> None:
        self.optimizer = optimizer
        self.max_grad_norm = max_grad_norm
        self._call = _Call(modules)
        group_params = [p for group in optimizer.param_groups for p in group["params"]]
        by_id = {id(p): name for name, p in self._call.named_parameters()}
        missing = [p for p in group_params if id(p) not in by_id]
        if missing:
            raise ValueError("the optimizer holds parameters of modules the learner was not "
                             "given")
        self.params: list[torch.Tensor] = group_params
        self.names: list[str] = [by_id[id(p)] for p in group_params]
        #: Where each learned parameter sits: every (module, attribute) that holds it, by
        #: name, once per module object. A module reached by two paths (an encoder shared by
        #: actor and critic) is named once; torch.func.functional_call given a name twice, or
        #: left to tie weights itself, puts the traced tensor back in place of the parameter.
        self._slots = {f"{prefix}.{name}" if prefix else name: by_id[id(param)]
                       for prefix, module in self._call.named_modules()
                       for name, param in module.named_parameters(recurse=False)
                       if by_id[id(param)] in self.names}
        group = optimizer.param_groups[0]
        #: The learning rate as a tensor, read by the compiled step: a schedule changes the
        #: group's float, and this follows it without a recompilation.
        self.lr = torch.tensor(float(group["lr"]), device=group_params[0].device)
        self.can_compile = _compilable(optimizer)
        self._step: _OptimizerStep | None = None
        if self.can_compile:
            _initial_state(optimizer)
            self._step = _OptimizerStep(optimizer)

    # -- the step ---------------------------------------------------------------------

    def freeze(self) -> None:
        """No parameter of the learner's modules requires grad any more: what the compiled
        step needs (`UpdateFunction`); the eager step needs them to."""
        self._call.requires_grad_(False)

    def minimize(self, loss_fn: LossFn, *args: Any) -> tuple[torch.Tensor, Stats]:
        if torch.compiler.is_compiling():
            return self._traced_step(loss_fn, args)
        return self._eager_step(loss_fn, args)

    def _eager_step(self, loss_fn: LossFn, args: tuple[Any, ...]) -> tuple[torch.Tensor, Stats]:
        frozen = [p for p in self.params if not p.requires_grad]  # a compiled update's
        for param in frozen:  # batch of a shape it was not compiled for: eagerly, once
            param.requires_grad_(True)
        try:
            loss, stats = loss_fn(*args)
            grads = torch.autograd.grad(loss, self.params, allow_unused=True)
        finally:
            for param in frozen:
                param.requires_grad_(False)
        for param, grad in zip(self.params, grads, strict=True):
            param.grad = grad if grad is not None else torch.zeros_like(param)
        if self.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm)
        self.optimizer.step()
        for param in self.params:
            param.grad = None
        return loss.detach(), {k: v.detach() for k, v in stats.items()}

    def _traced_step(self, loss_fn: LossFn, args: tuple[Any, ...]
                     ) -> tuple[torch.Tensor, Stats]:
        def of_params(params: dict[str, torch.Tensor]) -> tuple[torch.Tensor, Any]:
            in_place = {slot: params[name] for slot, name in self._slots.items()}
            loss, stats = torch.func.functional_call(self._call, in_place, (loss_fn, *args),
                                                     tie_weights=False, strict=False)
            return loss, (loss, stats)

        params = dict(zip(self.names, self.params, strict=True))
        grad_dict, (loss, stats) = torch.func.grad(of_params, has_aux=True)(params)
        grads = [grad_dict[name] for name in self.names]
        if self.max_grad_norm > 0:
            # clip_grad_norm_'s rule: scale by max_norm / (norm + 1e-6) where that is below 1.
            total = torch.nn.utils.get_total_norm(grads)
            scale = torch.clamp(self.max_grad_norm / (total + CLIP_EPSILON), max=1.0)
            grads = [grad * scale for grad in grads]
        assert self._step is not None
        self._step(self.params, grads, self.lr)
        return loss.detach(), {k: v.detach() for k, v in stats.items()}

    def sync(self) -> None:
        """Before a compiled step (`UpdateFunction` calls it): the optimizer's current
        learning rate (a schedule changes ``param_groups[0]["lr"]``), and its state tensors
        again if ``load_state_dict`` replaced them."""
        self.lr.fill_(float(self.optimizer.param_groups[0]["lr"]))
        if self._step is not None and self._step.stale(self.optimizer):
            _initial_state(self.optimizer)  # a checkpoint written before the first step
            self._step = _OptimizerStep(self.optimizer)


def _compilable(optimizer: torch.optim.Optimizer) -> bool:
    if len(optimizer.param_groups) != 1:
        return False
    group = optimizer.param_groups[0]
    if group.get("weight_decay", 0) or group.get("maximize", False):
        return False
    if isinstance(optimizer, torch.optim.Adam):
        return not group["amsgrad"] and not group.get("decoupled_weight_decay", False)
    if isinstance(optimizer, torch.optim.RMSprop):
        return group["momentum"] == 0 and not group["centered"]
    if isinstance(optimizer, torch.optim.SGD):
        return not group["nesterov"] and (group["momentum"] == 0 or group["dampening"] == 0)
    return False


def _initial_state(optimizer: torch.optim.Optimizer) -> None:
    """The per-parameter state torch's optimizers create on their first step."""
    group = optimizer.param_groups[0]
    for param in group["params"]:
        state = optimizer.state[param]
        if state:
            continue
        like = functools.partial(torch.zeros_like, param, memory_format=torch.preserve_format)
        step = functools.partial(torch.zeros, (), dtype=torch.float32, device=param.device)
        if isinstance(optimizer, torch.optim.Adam):
            state.update(step=step(), exp_avg=like(), exp_avg_sq=like())
        elif isinstance(optimizer, torch.optim.RMSprop):
            state.update(step=step(), square_avg=like())
        elif isinstance(optimizer, torch.optim.SGD) and group["momentum"] != 0:
            state["momentum_buffer"] = like()  # with no dampening, momentum * 0 + grad


class _OptimizerStep:
    """torch's functional update for an optimizer's kind, on its state tensors (in place).

    Its settings are read once, as plain numbers, and its state tensors gathered into lists:
    a compiled update that read the optimizer's ``param_groups`` would be guarded on every
    value of the group, the learning rate included, and recompiled at each change of a
    schedule. (Build it again after ``load_state_dict``, which puts new state tensors.)"""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        group = optimizer.param_groups[0]
        states = [optimizer.state[p] for p in group["params"]]
        self.kind = type(optimizer).__name__
        self.eps = float(group.get("eps", 0.0))
        self.betas = tuple(float(b) for b in group.get("betas", (0.9, 0.999)))
        self.alpha = float(group.get("alpha", 0.0))
        self.momentum = float(group.get("momentum", 0.0))
        self.dampening = float(group.get("dampening", 0.0))
        self.steps = [s["step"] for s in states if "step" in s]
        self.first = [s.get("exp_avg", s.get("square_avg")) for s in states]
        self.second = [s.get("exp_avg_sq") for s in states]
        self.buffers = [s.get("momentum_buffer") for s in states]
        self._param = group["params"][0]
        self._probe = next(iter(states[0].values()), None)

    def stale(self, optimizer: torch.optim.Optimizer) -> bool:
        """Whether the optimizer's state is no longer the tensors gathered here."""
        if self._probe is None:  # an optimizer without state (SGD without momentum)
            return False
        state = optimizer.state.get(self._param)
        return not state or next(iter(state.values())) is not self._probe

    def __call__(self, params: list[torch.Tensor], grads: list[torch.Tensor],
                 lr: torch.Tensor) -> None:
        capturable = lr.device.type != "cpu"
        if self.kind == "Adam":
            adam(params, grads, self.first, self.second, [], self.steps, foreach=False,
                 capturable=capturable, differentiable=False, fused=None, grad_scale=None,
                 found_inf=None, has_complex=False, amsgrad=False, beta1=self.betas[0],
                 beta2=self.betas[1], lr=lr, weight_decay=0.0, eps=self.eps, maximize=False)
        elif self.kind == "RMSprop":
            rmsprop(params, grads, self.first, [], [], self.steps, foreach=False,
                    maximize=False, differentiable=False, capturable=capturable,
                    has_complex=False, lr=lr,  # type: ignore[arg-type]  # a tensor works
                    alpha=self.alpha, eps=self.eps, weight_decay=0.0, momentum=0.0,
                    centered=False)
        else:
            sgd(params, grads, self.buffers, foreach=False, fused=None, weight_decay=0.0,
                momentum=self.momentum, lr=lr,  # type: ignore[arg-type]  # a tensor works
                dampening=self.dampening, nesterov=False, maximize=False)
