"""gymkit's VAE trainer against the usual PyTorch loop, on MNIST-format data.

Both train pytorch/examples' VAE (784-400-20, Adam 1e-3, batch 128, binary cross-entropy on
grey levels plus the analytic KL) on the same training images, on the CPU, taking turns one
epoch at a time so that a change in the machine's load slows them alike. gymkit's side is
the `vae` plugin with its `pytorch-examples` preset; the other side is that example's loop:
a `DataLoader` over a `TensorDataset`, shuffled, collating each batch from single samples.
Each side trains twice: with one torch thread (the inner loops, like for like), and with its
defaults (gymkit: its `threads` default for image trainers, the physical cores; the plain
loop: torch's default thread count), which is what a user gets. Printed: training images
per second of each, the ratios, and each model's negative ELBO on the same test images (nats
per image; one reparameterized sample each, drawn from one seed).

The data are MNIST's IDX files from `--data-dir` when given; otherwise MNIST-format images
made here (scikit-learn's 8x8 digits, upscaled to 28x28, each shifted and noised), so that
the benchmark runs offline: the speed does not depend on what the pixels show.

    python benchmarks/generative.py [--epochs 3] [--data-dir DIR] [--images N] [--device cpu]

With `--device cuda` both train on the GPU: gymkit's batches are already there, the
example's loop moves each batch as pytorch/examples does (`data.to(device)`).

`--whole --data-dir DIR` times whole processes instead, as a user runs them, each with its
defaults: `gymkit run generative vae --dataset mnist --preset pytorch-examples` (its
start-up, training on MNIST's 60,000 training images less its 5,000 for validation, the
evaluations, samples and checkpoints) against a fresh Python process that reads the 60,000
training images and runs the example's loop, nothing else; the two in turn, `--runs` times
each. Printed: the wall time and the training images per second of the whole process.

    python benchmarks/generative.py --whole --data-dir DIR [--epochs 10] [--runs 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mnist_images import mnist_format, read_idx_images
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset
from whole_process import run_in_turn

DATASET = "benchmark-mnist-format"


def register(data_dir: Path | None, images: int) -> None:
    from toolkit.data import DATASETS, Dataset, Split, dataset_source

    @dataset_source(shape=(1, 28, 28), size="70,000", origin="benchmarks/generative.py")
    def load(_: Path | None) -> Dataset:
        """MNIST-format images for the benchmark."""
        if data_dir is not None:
            real = DATASETS.get("mnist").load(data_dir)
            train = np.concatenate([real.split("train").x, real.split("validation").x])
            splits = {"train": Split(train), "test": Split(real.split("test").x)}
        else:
            splits = {"train": Split(mnist_format(images, 0)),
                      "test": Split(mnist_format(max(1, images // 6), 1))}
        splits["validation"] = splits["test"]
        return Dataset(DATASET, splits)

    DATASETS.add(DATASET, load, source="benchmark")


class ExampleVAE(nn.Module):
    """pytorch/examples' vae/main.py model."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, 20)
        self.fc22 = nn.Linear(400, 20)
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, 784)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = F.relu(self.fc1(x.view(-1, 784)))
        mu, log_var = self.fc21(h), self.fc22(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * log_var)
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z)))), mu, log_var


def example_loss(recon: torch.Tensor, x: torch.Tensor, mu: torch.Tensor,
                 log_var: torch.Tensor) -> torch.Tensor:
    bce = F.binary_cross_entropy(recon, x.view(-1, 784), reduction="sum")
    return bce - 0.5 * torch.sum(1 + log_var - mu.pow(2) - log_var.exp())


def synchronize(device: str) -> None:
    """Wait for the GPU's queued kernels, so that the clock counts them."""
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def device_name(device: str) -> str:
    return torch.cuda.get_device_name(device) if device.startswith("cuda") else "CPU"


def example_epoch(model: ExampleVAE, optimizer: torch.optim.Optimizer, loader: DataLoader,
                  device: str) -> None:
    """One epoch of pytorch/examples' training loop."""
    model.train()
    for (x,) in loader:
        x = x.to(device)
        recon, mu, log_var = model(x)
        loss = example_loss(recon, x, mu, log_var)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def example_neg_elbo(model: ExampleVAE, test: torch.Tensor, device: str) -> float:
    torch.manual_seed(1)
    total = 0.0
    with torch.no_grad():
        for x in test.split(1000):
            x = x.to(device)
            recon, mu, log_var = model(x)
            total += float(example_loss(recon, x, mu, log_var))
    return total / len(test)


def gymkit_neg_elbo(trainer: Any) -> float:
    return float(trainer.evaluate(1, 1)["eval/neg_elbo"])


def inner_loops(args: argparse.Namespace) -> None:
    from toolkit import launch
    from toolkit.data import DATASETS

    torch_default = torch.get_num_threads()
    register(args.data_dir, args.images)
    dataset = DATASETS.get(DATASET).load(None)
    train = torch.as_tensor(dataset.split("train").x)
    test = torch.as_tensor(dataset.split("test").x)
    sides: dict[str, tuple[int, Callable[[], Any], Callable[[], float]]] = {}
    for label, threads in (("", 1), (", defaults", None)):
        flags = {"epochs": args.epochs, "seed": 0, "device": args.device, "threads": threads}
        prepared = launch.prepare("generative", DATASET, "vae", hyperparams="pytorch-examples",
                                  flags=flags)
        ours = prepared.trainer
        assert prepared.settings.threads is not None  # resolved by prepare
        sides["gymkit" + label] = (prepared.settings.threads, ours.train_step,
                                   partial(gymkit_neg_elbo, ours))
        torch.manual_seed(0)
        model = ExampleVAE().to(args.device)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        loader = DataLoader(TensorDataset(train), batch_size=128, shuffle=True)
        sides["DataLoader" + label] = (
            threads or torch_default, partial(example_epoch, model, optimizer, loader,
                                              args.device),
            partial(example_neg_elbo, model, test, args.device))

    seconds = dict.fromkeys(sides, 0.0)
    for _ in range(args.epochs):
        for name, (threads, epoch, _) in sides.items():
            torch.set_num_threads(threads)
            start = time.perf_counter()
            epoch()
            synchronize(args.device)
            seconds[name] += time.perf_counter() - start
    images = args.epochs * len(train)
    source = "IDX files" if args.data_dir else "MNIST-format, made here"
    print(f"VAE 784-400-20, batch 128, {args.epochs} epochs of {len(train):,} images, "
          f"{device_name(args.device)}; data: {source}")
    print(f"{'':22}{'threads':>8}{'train time':>12}{'images/s':>12}{'test neg ELBO':>16}")
    for name, (threads, _, neg_elbo) in sides.items():
        torch.set_num_threads(threads)
        print(f"{name:22}{threads:>8}{seconds[name]:>10.1f} s{images / seconds[name]:>12,.0f}"
              f"{neg_elbo():>16.2f}")
    for label, suffix in (("ratio, 1 thread", ""), ("ratio, defaults", ", defaults")):
        ratio = seconds["DataLoader" + suffix] / seconds["gymkit" + suffix]
        print(f"{label:22}{'':20}{ratio:>12.2f}")


def bare_loop(data_dir: Path, epochs: int) -> None:
    """The plain program (`--bare`): MNIST's training images, the example's loop, with
    torch's defaults."""
    train = torch.as_tensor(read_idx_images(data_dir))
    torch.manual_seed(0)
    model = ExampleVAE()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(TensorDataset(train), batch_size=128, shuffle=True)
    for _ in range(epochs):
        example_epoch(model, optimizer, loader, "cpu")


def whole_processes(args: argparse.Namespace) -> None:
    import tempfile

    from toolkit.data import DATASETS

    if args.data_dir is None:
        raise SystemExit("--whole needs --data-dir: a folder with MNIST's IDX files")
    sizes = DATASETS.get("mnist").load(args.data_dir).sizes()
    # gymkit trains on MNIST's training images less its validation split; the example on all.
    gymkit_images = sizes["train"] * args.epochs
    bare_images = (sizes["train"] + sizes["validation"]) * args.epochs
    with tempfile.TemporaryDirectory() as runs_dir:
        commands = {
            "gymkit run": [str(Path(sys.executable).with_name("gymkit")), "run", "generative",
                           "vae", "--dataset", "mnist", "--data-dir", str(args.data_dir),
                           "--preset", "pytorch-examples", "--epochs", str(args.epochs), "-q",
                           "--runs-dir", runs_dir],
            "DataLoader loop": [sys.executable, __file__, "--bare", "--data-dir",
                                str(args.data_dir), "--epochs", str(args.epochs)]}
        walls: dict[str, list[float]] = {name: [] for name in commands}
        for k in range(args.runs):
            for name, wall in run_in_turn(commands, k).items():
                walls[name].append(wall)
    print(f"VAE 784-400-20 on MNIST, {args.epochs} epochs, whole processes with their "
          f"defaults, {args.runs} runs each in turn (median)")
    print(f"{'':18}{'wall time':>12}{'train images/s':>16}")
    rates = {}
    for name, images in (("gymkit run", gymkit_images), ("DataLoader loop", bare_images)):
        wall = float(np.median(walls[name]))
        rates[name] = images / wall
        print(f"{name:18}{wall:>10.1f} s{rates[name]:>16,.0f}")
    print(f"{'ratio':18}{'':12}{rates['gymkit run'] / rates['DataLoader loop']:>16.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--images", type=int, default=60_000,
                        help="training images made here (a smaller number for a smoke run)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N, for both sides")
    parser.add_argument("--whole", action="store_true", help="time whole processes (above)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each whole process")
    parser.add_argument("--bare", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    # Run as a script, this file's folder comes first on sys.path, where this file would
    # shadow the `generative` package that gymkit loads its trainers from.
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    if args.bare:
        bare_loop(args.data_dir, args.epochs)
    elif args.whole:
        whole_processes(args)
    else:
        inner_loops(args)


if __name__ == "__main__":
    main()
