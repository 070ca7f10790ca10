"""gymkit's RBM trainer against scikit-learn's `BernoulliRBM`, on the same binary images.

Both train a Bernoulli RBM of the same size by persistent contrastive divergence (PCD-1,
which is what BernoulliRBM does), with the same learning rate, batch size and number of
epochs, and neither momentum nor weight decay (BernoulliRBM has none), one thread each, on
the CPU: gymkit's `rbm` plugin, and BernoulliRBM.fit. Printed: training images per second
of each, their ratio, and each model's pseudo-log-likelihood per image on the same
held-out images: scikit-learn's estimate (`score_samples`: one random pixel flipped per
image, the same pixels for both models) and the full one (every pixel flipped in turn:
sum_i log p(v_i | v_-i), without the estimate's noise).

The images are MNIST-format (28x28, made offline from scikit-learn's digits as in
benchmarks/generative.py, or MNIST's IDX files from `--data-dir`), binarized at 0.5, so
that both models see the same 0/1 data.

    python benchmarks/rbm.py [--images 20000] [--hidden 256] [--batch 100] [--epochs 5]
                             [--lr 0.05] [--data-dir DIR] [--device cpu]

With `--device cuda` gymkit's RBM trains on the GPU; scikit-learn's stays on one CPU thread.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Run as a script, this folder comes first on sys.path, where benchmarks/generative.py would
# shadow the `generative` package that gymkit loads its trainers from.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]

import numpy as np  # noqa: E402
import torch  # noqa: E402

from generative.rbm_model import RBM, full_pseudo_log_likelihood, pseudo_log_likelihood  # noqa: E402
from toolkit import launch  # noqa: E402
from toolkit.data import DATASETS, Dataset, Split, dataset_source  # noqa: E402

DATASET = "benchmark-binary-mnist-format"
EVAL_SEED = 7


def mnist_format_images(n: int, seed: int) -> np.ndarray:
    """benchmarks/generative.py's MNIST-format images (loaded from that file by path)."""
    spec = importlib.util.spec_from_file_location("generative_benchmark", HERE / "generative.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.mnist_format(n, seed)


def binary_images(data_dir: Path | None, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) images (N, 1, 28, 28), 0/1 floats."""
    if data_dir is not None:
        real = DATASETS.get("mnist").load(data_dir)
        train, test = real.split("train").x[:n], real.split("test").x
    else:
        train, test = mnist_format_images(n, 0), mnist_format_images(max(1, n // 6), 1)
    return (train > 0.5).astype(np.float32), (test > 0.5).astype(np.float32)


def register(train: np.ndarray, test: np.ndarray) -> None:
    @dataset_source(shape=(1, 28, 28), size=f"{len(train):,}", origin="benchmarks/rbm.py")
    def load(_: Path | None) -> Dataset:
        """Binary MNIST-format images for the benchmark."""
        return Dataset(DATASET, {"train": Split(train), "validation": Split(test),
                                 "test": Split(test)}, binary=True)

    DATASETS.add(DATASET, load, source="benchmark")


def as_gymkit_rbm(sklearn_rbm: object) -> RBM:
    """scikit-learn's fitted weights in a gymkit RBM (to score both models alike)."""
    components = np.asarray(sklearn_rbm.components_)  # type: ignore[attr-defined]
    rbm = RBM(components.shape[1], components.shape[0])
    with torch.no_grad():
        rbm.weight.copy_(torch.as_tensor(components.T, dtype=torch.float32))
        rbm.visible_bias.copy_(torch.as_tensor(sklearn_rbm.intercept_visible_))  # type: ignore[attr-defined]
        rbm.hidden_bias.copy_(torch.as_tensor(sklearn_rbm.intercept_hidden_))  # type: ignore[attr-defined]
    return rbm


def scores(rbm: RBM, test: torch.Tensor) -> tuple[float, float]:
    """(scikit-learn's one-pixel estimate, the full pseudo-log-likelihood), per image."""
    flip = torch.randint(0, rbm.visible, (len(test),),
                         generator=torch.Generator().manual_seed(EVAL_SEED))
    with torch.no_grad():
        return (float(pseudo_log_likelihood(rbm, test, flip).mean()),
                float(full_pseudo_log_likelihood(rbm, test).mean()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--device", default="cpu", help="gymkit's side: cpu, cuda or cuda:N")
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from sklearn.neural_network import BernoulliRBM
    from threadpoolctl import threadpool_limits

    train, test = binary_images(args.data_dir, args.images)
    register(train, test)
    settings = {"hidden": args.hidden, "k": 1, "persistent": True, "lr": args.lr,
                "batch_size": args.batch, "momentum_start": 0.0, "momentum_end": 0.0,
                "weight_decay": 0.0, "lr_schedule": "constant", "binarize": "none"}
    prepared = launch.prepare("generative", DATASET, "rbm",
                              flags={"epochs": args.epochs, "seed": 0, "threads": 1,
                                     "device": args.device},
                              assignments=[f"{key}={value}" for key, value in settings.items()])
    ours = prepared.trainer
    start = time.perf_counter()
    for _ in range(args.epochs):
        ours.train_step()
    if args.device.startswith("cuda"):
        torch.cuda.synchronize(args.device)
    ours_seconds = time.perf_counter() - start

    theirs = BernoulliRBM(n_components=args.hidden, learning_rate=args.lr,
                          batch_size=args.batch, n_iter=args.epochs, random_state=0)
    with threadpool_limits(limits=1):
        start = time.perf_counter()
        theirs.fit(train.reshape(len(train), -1).astype(np.float64))
        theirs_seconds = time.perf_counter() - start

    held_out = torch.as_tensor(test.reshape(len(test), -1))
    rows = [("gymkit", ours_seconds, scores(ours.model.cpu(), held_out)),
            ("scikit-learn", theirs_seconds, scores(as_gymkit_rbm(theirs), held_out))]
    source = "MNIST IDX files" if args.data_dir else "MNIST-format, made here"
    where = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "the CPU"
    print(f"Bernoulli RBM 784-{args.hidden}, PCD-1, lr {args.lr}, batch {args.batch}, "
          f"{args.epochs} epochs of {len(train):,} binary images ({source}), 1 thread, "
          f"gymkit on {where}, scikit-learn on the CPU; "
          f"pseudo-log-likelihood per image on {len(test):,} held-out images")
    print(f"{'':14}{'train time':>12}{'images/s':>12}{'PLL (1 pixel)':>16}{'PLL (full)':>13}")
    images = args.epochs * len(train)
    for name, seconds, (one_pixel, full) in rows:
        print(f"{name:14}{seconds:>10.1f} s{images / seconds:>12,.0f}{one_pixel:>16.2f}"
              f"{full:>13.2f}")
    print(f"{'ratio':14}{'':12}{theirs_seconds / ours_seconds:>12.2f}")


if __name__ == "__main__":
    main()
