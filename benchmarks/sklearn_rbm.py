"""scikit-learn's RBM as a user runs it, the plain program that `benchmarks/rbm.py --whole`
times: MNIST's training images as grey levels in [0, 1] (as scikit-learn's RBM example feeds
them), `BernoulliRBM.fit` with numpy's default threads, the fitted weights saved.

    python benchmarks/sklearn_rbm.py DATA_DIR IMAGES HIDDEN BATCH EPOCHS WEIGHTS.npz
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from mnist_images import read_idx_images
from sklearn.neural_network import BernoulliRBM


def main() -> None:
    data_dir, images, hidden, batch, epochs, weights = sys.argv[1:]
    train = read_idx_images(Path(data_dir))[:int(images)]
    rbm = BernoulliRBM(n_components=int(hidden), batch_size=int(batch), learning_rate=0.05,
                       n_iter=int(epochs), random_state=0)
    rbm.fit(train.reshape(len(train), -1))
    np.savez(weights, components=rbm.components_, intercept_visible=rbm.intercept_visible_,
             intercept_hidden=rbm.intercept_hidden_)


if __name__ == "__main__":
    main()
