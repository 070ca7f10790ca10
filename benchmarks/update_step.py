"""One gradient step of gymkit's DQN on CartPole, compiled and eager, against its floor.

gymkit's DQN is built from the cartpole preset twice, with the run setting `compile=true`
and `compile=false`, and each agent's own update (`trainer.update`: the Q-network's forward
pass, the Huber loss, the gradients, clipping at the preset's norm, Adam) is called on the
same batch of `--batch` transitions. The floor is what no implementation of that step
can skip, run in the same process: the step's matrix products (per linear layer, the
forward product, the weight gradient's and, but for the first layer, the input gradient's),
of the network's own shapes, plus one step of torch's fused Adam over its parameters. The
three take turns, `--calls` calls each per round, for `--rounds` rounds, on one core and
one torch thread; printed: the median microseconds per step of each and its ratio to the
floor, and how long the first compiled call took (the compilation: with inductor's on-disk
cache warm, or cold with `--cold`, which gives inductor an empty cache folder).
`--profile` then runs the compiled step `--calls` times more under cProfile and prints
where its time goes (the functions that take the most time of their own).

    python benchmarks/update_step.py [--batch 64] [--calls 1000] [--rounds 5] [--core 0]
                                     [--cold] [--profile]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def single_threaded(core: int) -> None:
    os.sched_setaffinity(0, {core})
    import torch

    torch.set_num_threads(1)


def dqn_update(compiled: bool) -> tuple[Any, Callable[..., Any]]:
    """gymkit's DQN from the cartpole preset, and its update function."""
    from toolkit import launch

    prepared = launch.prepare("agent", "cartpole", "dqn",
                              assignments=[f"compile={str(compiled).lower()}"])
    trainer = prepared.trainer
    assert trainer.update.compiled == compiled
    return trainer, trainer.update


def floor_step(q_net: Any, batch: int) -> Callable[[], None]:
    """The step's matrix products, of `q_net`'s linear layers' shapes, and a fused Adam step
    over copies of its parameters."""
    import torch
    from torch import nn

    layers = [m for m in q_net.modules() if isinstance(m, nn.Linear)]
    products = []
    for i, layer in enumerate(layers):
        weight = torch.randn_like(layer.weight)
        inputs = torch.randn(batch, layer.in_features)
        grad_out = torch.randn(batch, layer.out_features)
        products.append((torch.addmm, (torch.randn(layer.out_features), inputs, weight.t())))
        products.append((torch.mm, (grad_out.t(), inputs)))
        if i > 0:
            products.append((torch.mm, (grad_out, weight)))
    params = [p.detach().clone() for p in q_net.parameters()]
    for param in params:
        param.grad = torch.randn_like(param)
    adam = torch.optim.Adam(params, lr=1e-3, fused=True)

    def step() -> None:
        for product, args in products:
            product(*args)
        adam.step()

    return step


def profile(step: Callable[[], Any], calls: int) -> None:
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(calls):
        step()
    profiler.disable()
    print(f"\nthe compiled step under cProfile, {calls:,} calls: time of its own per call")
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    rows = sorted(((own, calls_, f"{name} ({Path(file).name}:{line})")
                   for (file, line, name), (_, calls_, own, _, _) in stats.items()),
                  reverse=True)
    for own, count, where in rows[:8]:
        print(f"{own / calls * 1e6:>8.0f} us  {count // calls:>3}x  {where}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--core", type=int, default=0)
    parser.add_argument("--cold", action="store_true", help="compile with an empty cache")
    parser.add_argument("--profile", action="store_true", help="profile the compiled step")
    args = parser.parse_args()
    cold = tempfile.TemporaryDirectory() if args.cold else None
    if cold is not None:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cold.name
    single_threaded(args.core)
    import torch

    compiled_agent, compiled = dqn_update(True)
    eager_agent, eager = dqn_update(False)
    generator = torch.Generator().manual_seed(0)
    obs = torch.randn(args.batch, 4, generator=generator)
    actions = torch.randint(0, 2, (args.batch, 1), generator=generator)
    target = torch.randn(args.batch, 1, generator=generator)
    started = time.perf_counter()
    compiled(obs, actions, target)
    first_call = time.perf_counter() - started
    sides: dict[str, Callable[[], Any]] = {
        "floor (products + fused Adam)": floor_step(eager_agent.q_net, args.batch),
        "compiled (compile=true)": lambda: compiled(obs, actions, target),
        "eager (compile=false)": lambda: eager(obs, actions, target)}
    for side in sides.values():  # warm-up
        for _ in range(50):
            side()
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(args.rounds):
        for name, side in sides.items():
            started = time.perf_counter()
            for _ in range(args.calls):
                side()
            times[name].append((time.perf_counter() - started) / args.calls * 1e6)
    widths = [m.out_features for m in eager_agent.q_net.modules()
              if isinstance(m, torch.nn.Linear)]
    print(f"DQN gradient step, CartPole preset (4-{'-'.join(map(str, widths))}, batch "
          f"{args.batch}), one core, 1 torch thread; median of {args.rounds} rounds of "
          f"{args.calls:,} calls each, in turns")
    floor = statistics.median(times["floor (products + fused Adam)"])
    for name, per_call in times.items():
        median = statistics.median(per_call)
        print(f"{name:32}{median:>8.0f} us{median / floor:>8.2f}x floor")
    print(f"first compiled call (compilation, inductor's cache "
          f"{'cold' if cold else 'warm or cold'}): {first_call:.1f} s")
    if args.profile:
        profile(lambda: compiled(obs, actions, target), args.calls)
    compiled_agent.close()
    eager_agent.close()
    if cold is not None:
        cold.cleanup()


if __name__ == "__main__":
    main()
