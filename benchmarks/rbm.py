"""gymkit's RBM trainer against scikit-learn's `BernoulliRBM`, on the same binary images.

Both train a Bernoulli RBM of the same size by persistent contrastive divergence (PCD-1,
which is what BernoulliRBM does), with the same learning rate, batch size and number of
epochs, neither momentum nor weight decay (BernoulliRBM has none), and visible biases
starting at 0 as BernoulliRBM's do (gymkit's `visible_bias_init=zero`; `--visible-bias-init
data` for the guide's log-odds, gymkit's default), one thread each, on
the CPU: gymkit's `rbm` plugin, and BernoulliRBM.fit. gymkit trains once per
`--precisions` entry, its run setting `matmul_precision` (highest: float32 products;
medium: bfloat16 inside the products, on CPUs with AMX or AVX-512 BF16).

Per seed (gymkit's `--seed`, scikit-learn's `random_state`), printed: training time and
images per second of each, and each model's pseudo-log-likelihood per image on the same
held-out images, scored in float32: scikit-learn's estimate (`score_samples`: one random
pixel flipped per image, the same pixels for every model) and the full one (every pixel
flipped in turn: sum_i log p(v_i | v_-i), without the estimate's noise). Then, over the
seeds: images per second of all the training, the ratio to scikit-learn's, and the mean
pseudo-log-likelihoods with their 95% t-intervals (they vary from seed to seed by more than
between the two implementations).

The images are MNIST-format (28x28, made offline from scikit-learn's digits as in
benchmarks/generative.py, or MNIST's IDX files from `--data-dir`), binarized at 0.5, so
that both models see the same 0/1 data.

    python benchmarks/rbm.py [--seeds 0 1 2 3 4] [--precisions highest medium]
                             [--images 20000] [--hidden 256] [--batch 100] [--epochs 5]
                             [--lr 0.05] [--visible-bias-init zero] [--data-dir DIR]
                             [--device cpu]

With `--device cuda` gymkit's RBM trains on the GPU; scikit-learn's stays on one CPU thread.

`--whole --data-dir DIR` times whole processes instead, as a user runs them, each with its
defaults: `gymkit run generative rbm --dataset mnist --set hidden=500 --set batch_size=64`
(its start-up, training on MNIST's training split, the evaluations and checkpoints) against
benchmarks/sklearn_rbm.py, a fresh Python process that reads the same training images
(grey levels in [0, 1], as scikit-learn's RBM example feeds them) and fits
`BernoulliRBM(n_components=500, batch_size=64, learning_rate=0.05, n_iter=EPOCHS)` with
numpy's default threads, nothing else; the two in turn, `--runs` times each. Printed: the
wall time of each, their ratio, and each final model's full pseudo-log-likelihood per image
on the same held-out images (the first 1,000 test images with gymkit's fixed binarization:
gymkit's `eval/pseudo_ll_full` from its summary.json, and the same function on
scikit-learn's weights).

    python benchmarks/rbm.py --whole --data-dir DIR [--epochs 10] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# From this folder, before it leaves sys.path:
from mnist_images import mnist_format  # noqa: E402
from whole_process import run_in_turn  # noqa: E402

# Run as a script, this folder comes first on sys.path, where benchmarks/generative.py would
# shadow the `generative` package that gymkit loads its trainers from.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]

import numpy as np  # noqa: E402
import torch  # noqa: E402

from generative.rbm_model import RBM, full_pseudo_log_likelihood, pseudo_log_likelihood  # noqa: E402
from toolkit import launch  # noqa: E402
from toolkit.config import MATMUL_PRECISIONS  # noqa: E402
from toolkit.data import DATASETS, Dataset, Split, dataset_source  # noqa: E402
from toolkit.sweep import summarize  # noqa: E402

DATASET = "benchmark-binary-mnist-format"
#: The whole-process comparison's RBM: the size and batch a user of scikit-learn's would pick.
WHOLE_HIDDEN, WHOLE_BATCH = 500, 64
EVAL_SEED = 7


def binary_images(data_dir: Path | None, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) images (N, 1, 28, 28), 0/1 floats."""
    if data_dir is not None:
        real = DATASETS.get("mnist").load(data_dir)
        train, test = real.split("train").x[:n], real.split("test").x
    else:
        train, test = mnist_format(n, 0), mnist_format(max(1, n // 6), 1)
    return (train > 0.5).astype(np.float32), (test > 0.5).astype(np.float32)


def register(train: np.ndarray, test: np.ndarray) -> None:
    @dataset_source(shape=(1, 28, 28), size=f"{len(train):,}", origin="benchmarks/rbm.py")
    def load(_: Path | None) -> Dataset:
        """Binary MNIST-format images for the benchmark."""
        return Dataset(DATASET, {"train": Split(train), "validation": Split(test),
                                 "test": Split(test)}, binary=True)

    DATASETS.add(DATASET, load, source="benchmark")


def as_gymkit_rbm(components: np.ndarray, intercept_visible: np.ndarray,
                  intercept_hidden: np.ndarray) -> RBM:
    """scikit-learn's fitted weights (`BernoulliRBM`'s ``components_``, ``intercept_visible_``
    and ``intercept_hidden_``) in a gymkit RBM, to score both models alike."""
    rbm = RBM(components.shape[1], components.shape[0])
    with torch.no_grad():
        rbm.weight.copy_(torch.as_tensor(components.T, dtype=torch.float32))
        rbm.visible_bias.copy_(torch.as_tensor(intercept_visible))
        rbm.hidden_bias.copy_(torch.as_tensor(intercept_hidden))
    return rbm


def scores(rbm: RBM, test: torch.Tensor) -> tuple[float, float]:
    """(scikit-learn's one-pixel estimate, the full pseudo-log-likelihood), per image."""
    flip = torch.randint(0, rbm.visible, (len(test),),
                         generator=torch.Generator().manual_seed(EVAL_SEED))
    with torch.no_grad():
        return (float(pseudo_log_likelihood(rbm, test, flip).mean()),
                float(full_pseudo_log_likelihood(rbm, test).mean()))


def train_gymkit(args: argparse.Namespace, seed: int, precision: str) -> tuple[float, RBM]:
    """Seconds to train gymkit's RBM, and the trained model on the CPU."""
    settings = {"hidden": args.hidden, "k": 1, "persistent": True, "lr": args.lr,
                "batch_size": args.batch, "momentum_start": 0.0, "momentum_end": 0.0,
                "weight_decay": 0.0, "lr_schedule": "constant", "binarize": "none",
                "visible_bias_init": args.visible_bias_init}
    prepared = launch.prepare("generative", DATASET, "rbm",
                              flags={"epochs": args.epochs, "seed": seed, "threads": 1,
                                     "device": args.device, "matmul_precision": precision},
                              assignments=[f"{key}={value}" for key, value in settings.items()])
    ours = prepared.trainer
    start = time.perf_counter()
    for _ in range(args.epochs):
        ours.train_step()
    if args.device.startswith("cuda"):
        torch.cuda.synchronize(args.device)
    return time.perf_counter() - start, ours.model.cpu()


def train_sklearn(args: argparse.Namespace, seed: int, train: np.ndarray) -> tuple[float, RBM]:
    """Seconds to fit scikit-learn's BernoulliRBM, and its weights in a gymkit RBM."""
    from sklearn.neural_network import BernoulliRBM
    from threadpoolctl import threadpool_limits

    theirs = BernoulliRBM(n_components=args.hidden, learning_rate=args.lr,
                          batch_size=args.batch, n_iter=args.epochs, random_state=seed)
    with threadpool_limits(limits=1):
        start = time.perf_counter()
        theirs.fit(train.reshape(len(train), -1).astype(np.float64))
        took = time.perf_counter() - start
    return took, as_gymkit_rbm(np.asarray(theirs.components_), theirs.intercept_visible_,
                               theirs.intercept_hidden_)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--precisions", nargs="+", default=["highest", "medium"],
                        choices=MATMUL_PRECISIONS)
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--visible-bias-init", default="zero", choices=("zero", "data"),
                        help="gymkit's start: zero as BernoulliRBM, or the guide's log-odds")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--device", default="cpu", help="gymkit's side: cpu, cuda or cuda:N")
    parser.add_argument("--whole", action="store_true", help="time whole processes (above)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each whole process")
    args = parser.parse_args()
    if args.whole:
        return whole_processes(args)
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    train, test = binary_images(args.data_dir, args.images)
    register(train, test)
    held_out = torch.as_tensor(test.reshape(len(test), -1))
    sides = [f"gymkit {precision}" for precision in args.precisions] + ["scikit-learn"]
    seconds: dict[str, list[float]] = {side: [] for side in sides}
    likelihoods: dict[str, list[tuple[float, float]]] = {side: [] for side in sides}
    source = "MNIST IDX files" if args.data_dir else "MNIST-format, made here"
    where = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "the CPU"
    print(f"Bernoulli RBM 784-{args.hidden}, PCD-1, lr {args.lr}, batch {args.batch}, "
          f"gymkit's visible biases from {args.visible_bias_init}, "
          f"{args.epochs} epochs of {len(train):,} binary images ({source}), 1 thread, "
          f"gymkit on {where}, scikit-learn on the CPU; "
          f"pseudo-log-likelihood per image on {len(test):,} held-out images")
    print(f"{'seed':>4}  {'':20}{'train time':>12}{'images/s':>12}{'PLL (1 pixel)':>16}"
          f"{'PLL (full)':>13}", flush=True)
    images = args.epochs * len(train)
    for seed in args.seeds:
        for side in sides:
            if side == "scikit-learn":
                took, model = train_sklearn(args, seed, train)
            else:
                took, model = train_gymkit(args, seed, side.split()[1])
            torch.set_float32_matmul_precision("highest")  # every model scored alike
            one_pixel, full = scores(model, held_out)
            seconds[side].append(took)
            likelihoods[side].append((one_pixel, full))
            print(f"{seed:>4}  {side:20}{took:>10.2f} s{images / took:>12,.0f}"
                  f"{one_pixel:>16.2f}{full:>13.2f}", flush=True)

    print(f"\nover seeds {', '.join(map(str, args.seeds))}: images/s of all the training, "
          "its ratio to scikit-learn's, mean pseudo-log-likelihood [95% interval]")
    theirs = images * len(args.seeds) / sum(seconds["scikit-learn"])
    for side in sides:
        rate = images * len(args.seeds) / sum(seconds[side])
        one_pixel, full = (summarize([pair[i] for pair in likelihoods[side]]) for i in (0, 1))
        print(f"{side:22}{rate:>10,.0f}/s{rate / theirs:>8.2f}x   1 pixel {interval(one_pixel)}"
              f"   full {interval(full)}")


def whole_processes(args: argparse.Namespace) -> None:
    import json
    import tempfile

    from generative.rbm import FULL_PLL_IMAGES
    from toolkit.data.loader import binarized_for_evaluation

    if args.data_dir is None:
        raise SystemExit("--whole needs --data-dir: a folder with MNIST's IDX files")
    mnist = DATASETS.get("mnist").load(args.data_dir)
    images = mnist.sizes()["train"]
    with tempfile.TemporaryDirectory() as scratch:
        weights = Path(scratch) / "sklearn.npz"
        runs_dir = Path(scratch) / "runs"
        commands = {
            "gymkit run": [str(Path(sys.executable).with_name("gymkit")), "run", "generative",
                           "rbm", "--dataset", "mnist", "--data-dir", str(args.data_dir),
                           "--set", f"hidden={WHOLE_HIDDEN}", "--set",
                           f"batch_size={WHOLE_BATCH}", "--epochs", str(args.epochs), "-q",
                           "--runs-dir", str(runs_dir)],
            "scikit-learn": [sys.executable, str(HERE / "sklearn_rbm.py"), str(args.data_dir),
                             str(images), str(WHOLE_HIDDEN), str(WHOLE_BATCH),
                             str(args.epochs), str(weights)]}
        walls: dict[str, list[float]] = {name: [] for name in commands}
        for k in range(args.runs):
            for name, wall in run_in_turn(commands, k).items():
                walls[name].append(wall)
        summary = json.loads(max(runs_dir.glob("*/summary.json")).read_text())
        ours = summary["final_eval"]["eval/pseudo_ll_full"]
        fitted = np.load(weights)
    test = torch.as_tensor(mnist.split("test").x).flatten(1)
    held_out = binarized_for_evaluation(test, "dynamic")
    rbm = as_gymkit_rbm(fitted["components"], fitted["intercept_visible"],
                        fitted["intercept_hidden"])
    with torch.no_grad():
        theirs = float(full_pseudo_log_likelihood(rbm, held_out[:FULL_PLL_IMAGES]).mean())
    print(f"Bernoulli RBM 784-{WHOLE_HIDDEN}, batch {WHOLE_BATCH}, {args.epochs} epochs of "
          f"{images:,} MNIST training images, whole processes with their defaults, "
          f"{args.runs} runs each in turn (median); full pseudo-log-likelihood per image of "
          f"the last run's model on the first {FULL_PLL_IMAGES:,} test images")
    print(f"{'':16}{'wall time':>12}{'PLL (full)':>13}")
    medians = {name: float(np.median(w)) for name, w in walls.items()}
    for name, pll in (("gymkit run", ours), ("scikit-learn", theirs)):
        print(f"{name:16}{medians[name]:>10.1f} s{pll:>13.2f}")
    print(f"{'ratio':16}{medians['scikit-learn'] / medians['gymkit run']:>12.2f}  "
          "(scikit-learn's wall time / gymkit's: above 1, gymkit is faster)")


def interval(summary: dict[str, float | int | None]) -> str:
    low, high = summary["ci95_low"], summary["ci95_high"]
    span = "" if low is None or high is None else f" [{low:.2f}, {high:.2f}]"
    return f"{summary['mean']:.2f}{span}"


if __name__ == "__main__":
    main()
