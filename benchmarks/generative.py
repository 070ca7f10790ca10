"""gymkit's VAE trainer against the usual PyTorch loop, on MNIST-format data.

Both train pytorch/examples' VAE (784-400-20, Adam 1e-3, batch 128, binary cross-entropy on
grey levels plus the analytic KL) on the same 60,000 training images, one torch thread, on
the CPU, taking turns one epoch at a time so that a change in the machine's load slows
both alike. gymkit's side is the `vae` plugin with its `pytorch-examples` preset; the other
side is that example's loop: a `DataLoader` over a `TensorDataset`, shuffled, collating
each batch from single samples. Printed: training images per second of each, their ratio,
and each model's negative ELBO on the same 10,000 test images (nats per image; one
reparameterized sample each, drawn from one seed).

The data are MNIST's IDX files from `--data-dir` when given; otherwise MNIST-format images
made here (scikit-learn's 8x8 digits, upscaled to 28x28, each shifted and noised), so that
the benchmark runs offline: the speed does not depend on what the pixels show.

    python benchmarks/generative.py [--epochs 3] [--data-dir DIR] [--images N] [--device cpu]

With `--device cuda` both train on the GPU: gymkit's batches are already there, the
example's loop moves each batch as pytorch/examples does (`data.to(device)`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from toolkit import launch
from toolkit.data import DATASETS, Dataset, Split, dataset_source

DATASET = "benchmark-mnist-format"


def mnist_format(n: int, seed: int) -> np.ndarray:
    """`n` 28x28 images in [0, 1]: upscaled digits, shifted by up to 3 pixels, noised."""
    from sklearn.datasets import load_digits

    rng = np.random.default_rng(seed)
    digits = load_digits().images / 16.0
    big = digits.repeat(3, axis=1).repeat(3, axis=2)  # 24x24
    images = np.zeros((n, 28, 28), dtype=np.float32)
    which, dy, dx = rng.integers(len(big), size=n), rng.integers(5, size=n), rng.integers(5, size=n)
    for i in range(n):
        images[i, dy[i]:dy[i] + 24, dx[i]:dx[i] + 24] = big[which[i]]
    images += rng.normal(0.0, 0.05, images.shape).astype(np.float32)
    return np.clip(images, 0.0, 1.0)[:, None]


def register(data_dir: Path | None, images: int) -> None:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--images", type=int, default=60_000,
                        help="training images made here (a smaller number for a smoke run)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N, for both sides")
    args = parser.parse_args()
    # Run as a script, this file's folder comes first on sys.path, where this file would
    # shadow the `generative` package that gymkit loads its trainers from.
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    torch.set_num_threads(1)
    register(args.data_dir, args.images)

    prepared = launch.prepare("generative", DATASET, "vae", hyperparams="pytorch-examples",
                              flags={"epochs": args.epochs, "seed": 0, "threads": 1,
                                     "device": args.device})
    ours = prepared.trainer
    dataset = DATASETS.get(DATASET).load(None)
    train = torch.as_tensor(dataset.split("train").x)
    test = torch.as_tensor(dataset.split("test").x)
    torch.manual_seed(0)
    model = ExampleVAE().to(args.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(TensorDataset(train), batch_size=128, shuffle=True)

    seconds = {"gymkit": 0.0, "DataLoader": 0.0}
    for _ in range(args.epochs):
        start = time.perf_counter()
        ours.train_step()
        synchronize(args.device)
        seconds["gymkit"] += time.perf_counter() - start
        start = time.perf_counter()
        model.train()
        for (x,) in loader:
            x = x.to(args.device)
            recon, mu, log_var = model(x)
            loss = example_loss(recon, x, mu, log_var)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        synchronize(args.device)
        seconds["DataLoader"] += time.perf_counter() - start

    torch.manual_seed(1)
    total = 0.0
    with torch.no_grad():
        for x in test.split(1000):
            x = x.to(args.device)
            recon, mu, log_var = model(x)
            total += float(example_loss(recon, x, mu, log_var))
    theirs = total / len(test)
    ours_elbo = ours.evaluate(1, 1)["eval/neg_elbo"]
    images = args.epochs * len(train)
    source = "IDX files" if args.data_dir else "MNIST-format, made here"
    print(f"VAE 784-400-20, batch 128, {args.epochs} epochs of {len(train):,} images, "
          f"1 torch thread, {device_name(args.device)}; data: {source}")
    print(f"{'':12}{'train time':>12}{'images/s':>12}{'test neg ELBO':>16}")
    for name, elbo in (("gymkit", ours_elbo), ("DataLoader", theirs)):
        print(f"{name:12}{seconds[name]:>10.1f} s{images / seconds[name]:>12,.0f}{elbo:>16.2f}")
    print(f"{'ratio':12}{'':12}{seconds['DataLoader'] / seconds['gymkit']:>12.2f}")


if __name__ == "__main__":
    main()
