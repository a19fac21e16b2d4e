"""The bundled offline demo: a trained :class:`~zfwidgets.zoo.SmallZFNet` and 5,000 MNIST digits.

Everything ships inside the package (``zfwidgets/zoo/data``), so the demo works with no network:

>>> from zfwidgets import demo
>>> d = demo.load()
>>> image, label = d.dataset[0]          # image: float32 (1, 28, 28), mean-subtracted
>>> logits = d.model(image[None])        # (1, 10)

The data, its split and its licence are described in ``zfwidgets/zoo/data/README.md``; the weights
come from ``scripts/train_demo.py``, which also records the training run itself (snapshots at
epochs 1, 2, 5, 10, 20 and 30): :func:`snapshots` opens it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import Dataset

from zfwidgets.zoo.small import SmallZFNet

if TYPE_CHECKING:
    from zfwidgets.train.snapshots import Run

__all__ = ["Demo", "DigitDataset", "load", "snapshots"]

_DATA_FILE = "mnist_5k.npz"
_WEIGHTS_FILE = "demo_weights.pt"
_META_FILE = "demo_meta.json"
_RUN_DIR = "demo_run"


class DigitDataset(Dataset):
    """Digits held in memory, ready for the model.

    Item ``i`` is ``(image, label)``: ``image`` a float32 tensor ``(1, 28, 28)`` equal to the
    pixels divided by 255 minus the per-pixel training mean, ``label`` a Python ``int``.
    The whole split is also available at once as ``images`` ``(N, 1, 28, 28)`` and ``labels``
    ``(N,)`` (int64), which is handy for mining top activations over the set.
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
        """Number of digits in the split."""
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        """Return ``(image, label)`` for one digit."""
        return self.images[index], int(self.labels[index])


@dataclass(frozen=True)
class Demo:
    """What :func:`load` returns.

    Attributes:
        model: the trained :class:`~zfwidgets.zoo.SmallZFNet`, in eval mode, a fresh copy per
            :func:`load` call (change it freely).
        dataset: the held-out split (1,000 digits, 100 per class), never seen in training.
        train: the training split (4,000 digits).
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


def _pixel_mean(train_pixels: np.ndarray) -> torch.Tensor:
    """Per-pixel mean of uint8 images ``(N, 28, 28)`` in [0, 1], as float32 ``(1, 28, 28)``."""
    # Accumulate in float64 so the mean does not depend on summation order.
    return (torch.from_numpy(train_pixels).double().mean(0) / 255.0).float()[None]


def _normalise(pixels: np.ndarray, mean: torch.Tensor) -> torch.Tensor:
    """uint8 ``(N, 28, 28)`` to float32 ``(N, 1, 28, 28)``: pixels / 255 minus ``mean``."""
    return torch.from_numpy(pixels).float()[:, None] / 255.0 - mean


def _splits() -> tuple[DigitDataset, DigitDataset, torch.Tensor]:
    """Build fresh (train, held-out, mean) tensors from the cached arrays.

    ``scripts/train_demo.py`` uses this too, so training and :func:`load` see identical inputs.
    """
    a = _arrays()
    train_idx = a["train_idx"].astype(np.int64)
    test_idx = a["test_idx"].astype(np.int64)
    mean = _pixel_mean(a["images"][train_idx])

    def split(idx: np.ndarray) -> DigitDataset:
        labels = torch.from_numpy(a["labels"][idx].astype(np.int64))
        return DigitDataset(_normalise(a["images"][idx], mean), labels)

    return split(train_idx), split(test_idx), mean


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


def snapshots() -> Run:
    """The demo model's own training run: snapshots at epochs 1, 2, 5, 10, 20 and 30.

    The weights are stored in float16 (the package stays small) and come back as float32;
    the epoch-30 snapshot is the shipped model rounded to float16. The run's manifest holds
    the full per-epoch history (loss, accuracies, learning rate, seconds).

    Example:
        >>> from zfwidgets import demo
        >>> run = demo.snapshots()
        >>> run.epochs
        [1, 2, 5, 10, 20, 30]
        >>> model = run.model(5)          # a fresh SmallZFNet with the epoch-5 weights

    Returns:
        A :class:`zfwidgets.train.Run` (read-only: its Evolution cache goes to the user cache).
    """
    from zfwidgets.train.snapshots import load_run

    # The package is installed as plain files (wheel or editable), so this is a real directory.
    return load_run(Path(str(_data_path(_RUN_DIR))))
