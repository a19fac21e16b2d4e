"""The bundled offline demo: a trained :class:`~zfwidgets.zoo.SmallZFNet` and 5,000 MNIST digits.

Everything ships inside the package (``zfwidgets/zoo/data``), so the demo works with no network.
The public entry point is :mod:`zfwidgets.demo`, which re-exports this module and adds the
demo's training run (:func:`zfwidgets.demo.snapshots`, which needs :mod:`zfwidgets.train`;
the zoo never imports train):

>>> from zfwidgets import demo
>>> d = demo.load()
>>> image, label = d.dataset[0]          # image: float32 (1, 28, 28), mean-subtracted
>>> tuple(d.model(image[None]).shape)    # logits
(1, 10)
>>> [d.dataset[i][1] for i in range(12)]  # the held-out digits are interleaved by class
[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]

The data, its split and its licence are described in ``zfwidgets/zoo/data/README.md``; the weights
come from ``scripts/train_demo.py``, which also records the training run itself (snapshots at
epochs 1, 2, 5, 10, 20 and 30).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from zfwidgets.core.preprocess import Preprocessing
from zfwidgets.zoo.small import SmallZFNet

__all__ = ["Demo", "DigitDataset", "DigitPixels", "load", "pixels", "run_dir"]

_DATA_FILE = "mnist_5k.npz"
_WEIGHTS_FILE = "demo_weights.pt"
_META_FILE = "demo_meta.json"
_RUN_DIR = "demo_run"


class DigitDataset(Dataset):
    """Images and labels held in memory as two tensors: the demo's splits, and any such data.

    Item ``i`` is ``(image, label)``: ``image`` a float32 tensor ``(C, H, W)``, ``label`` a
    Python ``int``. The whole split is also available at once as ``images`` ``(N, C, H, W)``
    and ``labels`` ``(N,)`` (int64), which is handy for mining top activations over the set
    (and lets training index batches directly). :func:`load`'s splits hold the digits as the
    model sees them (pixels / 255 minus the training mean); ``zfwidgets.train.data`` holds
    pixels in [0, 1] in the same class (there called ``PixelDataset``).

    Example:
        >>> data = DigitDataset(torch.zeros(3, 1, 28, 28), torch.tensor([4, 1, 7]))
        >>> len(data), data[2][1]
        (3, 7)
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        if images.ndim != 4 or len(images) != len(labels):
            raise ValueError(
                f"expected images (N, C, H, W) and N labels, got "
                f"{tuple(images.shape)} and {tuple(labels.shape)}"
            )
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        """Number of images in the split."""
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        """Return ``(image, label)`` for one image."""
        return self.images[index], int(self.labels[index])


@dataclass(frozen=True)
class Demo:
    """What :func:`load` returns.

    Attributes:
        model: the trained :class:`~zfwidgets.zoo.SmallZFNet`, in eval mode, a fresh copy per
            :func:`load` call (change it freely).
        dataset: the held-out split (1,000 digits, 100 per class), never seen in training,
            interleaved by class: ``dataset[i]`` is a digit ``i % 10`` (the first ten are a 0,
            a 1, ..., a 9), so any run of images from the start shows every class.
        train: the training split (4,000 digits), sorted by class (all 0s first).
        classes: class names, ``["0", ..., "9"]``; index = label.
        mean: float32 ``(1, 28, 28)``, per-pixel mean of the training images in [0, 1]. Add it
            back to a dataset image to get pixels in [0, 1].
        accuracy: held-out accuracy (a fraction in [0, 1]) recorded when the weights were made.
    """

    model: SmallZFNet
    dataset: DigitDataset
    train: DigitDataset
    classes: list[str]
    mean: torch.Tensor
    accuracy: float

    @property
    def preprocessing(self) -> Preprocessing:
        """How digits become the model's inputs: grey 28x28, pixels in [0, 1] minus ``mean``.

        Example:
            >>> from zfwidgets import demo
            >>> demo.load().preprocessing.describe()
            'grey 28x28, (x - the mean image) / 1'
        """
        return Preprocessing(mean=self.mean, std=(1.0,), size=(28, 28), channels=1)


@dataclass(frozen=True)
class DigitPixels:
    """The demo's digits as stored: what :func:`pixels` returns (fresh arrays per call).

    Attributes:
        train_images: uint8 ``(4000, 28, 28)``, the training split.
        train_labels: int64 ``(4000,)``.
        test_images: uint8 ``(1000, 28, 28)``, the held-out split (100 per class), interleaved
            by class: image ``i`` is a digit ``i % 10``.
        test_labels: int64 ``(1000,)``.
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray

    def mean(self) -> torch.Tensor:
        """Per-pixel mean of the training images in [0, 1], float32 ``(1, 28, 28)``.

        Exactly the mean :func:`load` subtracts and the demo model was trained with.
        """
        # Accumulate in float64 so the mean does not depend on summation order.
        return (torch.from_numpy(self.train_images).double().mean(0) / 255.0).float()[None]


def _data_path(name: str) -> Any:
    """A ``Traversable`` for a file in ``zfwidgets/zoo/data`` (works from wheels and zips)."""
    return resources.files("zfwidgets.zoo").joinpath("data", name)


@lru_cache(maxsize=1)
def _arrays() -> dict[str, np.ndarray]:
    """The npz's arrays (images, labels, train_idx, test_idx), read once and made read-only."""
    with _data_path(_DATA_FILE).open("rb") as f, np.load(f) as npz:
        arrays = {key: npz[key] for key in npz.files}
    for a in arrays.values():
        a.flags.writeable = False  # shared by every load() call: nobody may change them
    return arrays


@lru_cache(maxsize=1)
def _meta() -> dict[str, Any]:
    """The training record written next to the weights."""
    return json.loads(_data_path(_META_FILE).read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def _state_dict() -> dict[str, torch.Tensor]:
    """The shipped weights on the CPU. Only ever copied into new models, never handed out."""
    with resources.as_file(_data_path(_WEIGHTS_FILE)) as path:
        return torch.load(path, map_location="cpu", weights_only=True)


def pixels() -> DigitPixels:
    """The demo's digits as raw uint8 pixels with int64 labels, split as :func:`load` splits them.

    The stored arrays are read once per process; each call returns new (writable) copies.
    ``zfwidgets.train.data.demo_data`` trains from these.

    Example:
        >>> p = pixels()
        >>> p.train_images.shape, p.train_images.dtype.name, p.test_labels.shape
        ((4000, 28, 28), 'uint8', (1000,))
    """
    a = _arrays()
    train_idx = a["train_idx"].astype(np.int64)
    test_idx = a["test_idx"].astype(np.int64)
    return DigitPixels(
        train_images=a["images"][train_idx],  # fancy indexing copies: the cache stays intact
        train_labels=a["labels"][train_idx].astype(np.int64),
        test_images=a["images"][test_idx],
        test_labels=a["labels"][test_idx].astype(np.int64),
    )


def _normalise(images: np.ndarray, mean: torch.Tensor) -> torch.Tensor:
    """uint8 ``(N, 28, 28)`` to float32 ``(N, 1, 28, 28)``: pixels / 255 minus ``mean``."""
    return torch.from_numpy(images).float()[:, None] / 255.0 - mean


def _splits() -> tuple[DigitDataset, DigitDataset, torch.Tensor]:
    """Fresh (train, held-out, mean) as the model sees them, from :func:`pixels`."""
    p = pixels()
    mean = p.mean()
    train = DigitDataset(_normalise(p.train_images, mean), torch.from_numpy(p.train_labels))
    held_out = DigitDataset(_normalise(p.test_images, mean), torch.from_numpy(p.test_labels))
    return train, held_out, mean


def run_dir() -> Path:
    """The folder of the demo model's own training run (open it with ``demo.snapshots()``).

    Example:
        >>> (run_dir() / "manifest.json").is_file()
        True
    """
    # The package is installed as plain files (wheel or editable), so this is a real directory.
    return Path(str(_data_path(_RUN_DIR)))


def load(device: str | torch.device = "cpu") -> Demo:
    """Load the demo model with its shipped weights, and the digits it was trained and tested on.

    Works offline: everything comes from the package's data files. The arrays are read once per
    process; each call builds a new model and new tensors, so changing one result never affects
    another.

    Args:
        device: where to put the model (the datasets and ``mean`` stay on the CPU, like any
            torch ``Dataset`` whose batches you move yourself).

    Returns:
        A :class:`Demo` with ``model`` (eval mode), ``dataset`` (held-out split), ``train``,
        ``classes``, ``mean`` and ``accuracy``.

    Example:
        >>> d = load()
        >>> len(d.train), len(d.dataset), d.accuracy > 0.95
        (4000, 1000, True)
    """
    train, held_out, mean = _splits()
    model = SmallZFNet()
    model.load_state_dict(_state_dict())
    model.to(device).eval()
    return Demo(
        model=model,
        dataset=held_out,
        train=train,
        classes=[str(i) for i in range(10)],
        mean=mean,
        accuracy=float(_meta()["accuracy"]),
    )
