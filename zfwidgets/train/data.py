"""Training data: the bundled digits and torchvision ImageFolder trees, as pixels in [0, 1].

:func:`~zfwidgets.train.train` wants ``(pixels, label)`` items with pixels in [0, 1]; it does the
mean subtraction and augmentation itself. Probe sets for :class:`~zfwidgets.train.Evolution`
are the model's inputs (mean-subtracted, centre-cropped): :class:`Normalised` makes them.

Example:
    >>> from zfwidgets.train.data import demo_data
    >>> train_set, val_set = demo_data()
    >>> len(train_set), len(val_set), tuple(train_set[0][0].shape)
    (4000, 1000, (1, 28, 28))
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from zfwidgets.core.data_labels import data_labels
from zfwidgets.train.recipe import center_crop
from zfwidgets.zoo.demo import DigitDataset, pixels

__all__ = [
    "ImageFolderPixels",
    "Normalised",
    "PixelDataset",
    "demo_data",
    "demo_mean",
    "image_folder",
    "probe_from_manifest",
    "subset_evenly",
]


# One in-memory data set class for the whole package: the zoo's (the demo needs it, and the zoo
# never imports train). Here it holds pixels in [0, 1].
PixelDataset = DigitDataset


def demo_data() -> tuple[PixelDataset, PixelDataset]:
    """The bundled digits as ``(train, held-out)`` pixels in [0, 1] (4,000 and 1,000 digits).

    The training split is sorted by class; the held-out split is interleaved by class (item ``i``
    is a digit ``i % 10``), as :func:`zfwidgets.demo.pixels` stores them.
    """
    p = pixels()

    def split(images: np.ndarray, labels: np.ndarray) -> PixelDataset:
        return PixelDataset(
            torch.from_numpy(images).float()[:, None] / 255.0, torch.from_numpy(labels)
        )

    return split(p.train_images, p.train_labels), split(p.test_images, p.test_labels)


def demo_mean() -> Tensor:
    """The per-pixel training mean the demo model was trained with (1, 28, 28), bit-exact.

    Example:
        >>> tuple(demo_mean().shape)
        (1, 28, 28)
    """
    return pixels().mean()


class Normalised(Dataset):
    """A pixel data set as the model sees it: minus ``mean``, centre-cropped to ``crop``."""

    def __init__(self, base, mean: Tensor | None = None, crop: int | None = None) -> None:
        self.base = base
        self.mean = mean
        self.crop = crop

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        x, label = self.base[index]
        if self.mean is not None:
            x = x - self.mean
        return center_crop(x, self.crop), label


class ImageFolderPixels(Dataset):
    """A torchvision ImageFolder tree read lazily as ``(pixels (C, size, size), label)``.

    Each image is resized so its shorter side is ``size`` and centre-cropped to a square
    (grey-scale when ``channels`` is 1). Training takes random ``crop``-sized crops of it.
    """

    def __init__(self, root: str | os.PathLike, size: int, channels: int = 3) -> None:
        from torchvision import datasets, transforms

        root = Path(root)
        if not root.is_dir():
            raise ValueError(f"data path {str(root)!r} is not a directory (an ImageFolder tree)")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3; got {channels!r}")
        steps: list[Any] = [transforms.Resize(size), transforms.CenterCrop(size)]
        if channels == 1:
            steps.append(transforms.Grayscale(1))
        steps.append(transforms.ToTensor())
        try:
            self.folder = datasets.ImageFolder(str(root), transform=transforms.Compose(steps))
        except (FileNotFoundError, RuntimeError) as err:
            raise ValueError(
                f"{str(root)!r} is not an ImageFolder tree (one sub-folder of images per "
                f"class): {err}"
            ) from err
        self.root, self.size, self.channels = root, size, channels
        self.classes = self.folder.classes

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.folder[index]


def image_folder(
    root: str | os.PathLike,
    size: int,
    channels: int = 3,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> tuple[Dataset, Dataset | None]:
    """``(train, val)`` from an ImageFolder tree: a seeded, class-mixed random split.

    ``val_fraction=0`` gives no validation set. Images come out ``size`` x ``size``.
    """
    from torch.utils.data import Subset

    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1); got {val_fraction!r}")
    full = ImageFolderPixels(root, size, channels)
    n_val = int(round(len(full) * val_fraction))
    order = torch.randperm(len(full), generator=torch.Generator().manual_seed(seed)).tolist()
    train = Subset(full, sorted(order[n_val:]))
    val = Subset(full, sorted(order[:n_val])) if n_val else None
    return train, val


def subset_evenly(data, n: int):
    """``n`` items spread evenly over ``data``, keeping every class that ``n`` items can hold.

    Spreading keeps every class of class-sorted data (the demo's training split, ImageFolder
    trees). Data in a periodic class order can defeat it (every 10th digit of the interleaved
    held-out split is the same class), so when the data's labels are known and the spread
    holds fewer classes than ``min(n, classes)``, the items are taken round-robin over the
    classes instead (each class's first items, in order).

    Example:
        >>> _, val_set = demo_data()   # interleaved: held-out digit i is a digit i % 10
        >>> sorted(set(subset_evenly(val_set, 100).labels.tolist())) == list(range(10))
        True
    """
    from torch.utils.data import Subset

    if n >= len(data):
        return data
    step = len(data) / n
    indices = [int(i * step) for i in range(n)]
    labels = data.labels if isinstance(data, PixelDataset) else data_labels(data)[0]
    if labels is not None:
        classes = labels.unique()
        if len(labels[indices].unique()) < min(n, len(classes)):
            indices = _round_robin(labels, classes, n)
    if isinstance(data, PixelDataset):
        idx = torch.tensor(indices)
        return PixelDataset(data.images[idx], data.labels[idx])
    return Subset(data, indices)


def _round_robin(labels: Tensor, classes: Tensor, n: int) -> list[int]:
    """The first ``n`` indices taken in turn from each class (each class's in order), sorted."""
    queues = [torch.nonzero(labels == c).flatten().tolist() for c in classes]
    picks = [q[rank] for rank in range(max(map(len, queues))) for q in queues if rank < len(q)]
    return sorted(picks[:n])


def probe_from_manifest(data: dict[str, Any], mean: Tensor | None, crop: int | None):
    """The training set a run's manifest names, as model inputs; ``None`` if unavailable."""
    source = data.get("source")
    if source == "demo":
        train, _ = demo_data()
    elif source == "imagefolder" and Path(str(data.get("path", ""))).is_dir():
        train, _ = image_folder(
            data["path"],
            int(data["size"]),
            int(data.get("channels", 3)),
            float(data.get("val_fraction", 0.1)),
            int(data.get("split_seed", 0)),
        )
    else:
        return None
    if data.get("limit"):
        train = subset_evenly(train, int(data["limit"]))
    return Normalised(train, mean, crop)
