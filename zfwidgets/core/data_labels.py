"""A data set's own labels and class names, read without reading its images.

What the data set says an image is (``ImageFolder``'s folder, a ``.targets`` list), which is
not always what the model's classes are: a teacher's folder of cats is labelled ``cats``
whatever ImageNet class the model predicts. Looked up, in order: ``.targets`` (torchvision
data sets), ``.samples`` (``ImageFolder``: ``(path, label)`` pairs), ``.labels``, and only
when the data set has none of these, the label of the ``(image, label)`` item itself.
``Subset`` and ``DataLoader`` are followed to the data set they wrap.

Example:
    >>> import torch
    >>> class Folder(torch.utils.data.Dataset):
    ...     classes = ["cats", "dogs"]
    ...     targets = [1, 0, 1]
    ...     def __len__(self):
    ...         return 3
    ...     def __getitem__(self, i):
    ...         raise AssertionError("labels never read the images")
    >>> data = torch.utils.data.Subset(Folder(), [2, 1])
    >>> data_label(data, 0), data_class_names(data)
    (1, ['cats', 'dogs'])
    >>> data_label(torch.zeros(4, 1, 8, 8), 0) is None     # bare images have no labels
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Subset

__all__ = ["data_class_names", "data_label"]

_LABEL_LISTS = ("targets", "labels")


def _unwrap(data: Any, index: int | None = None) -> tuple[Any, int | None]:
    """The data set under DataLoaders and Subsets, and ``index`` translated into it."""
    while True:
        if isinstance(data, DataLoader):
            data = data.dataset
        elif isinstance(data, Subset):
            if index is not None:
                index = int(data.indices[index])
            data = data.dataset
        else:
            return data, index


def _as_label(value: Any) -> int | None:
    """``value`` as an int label, or None when it is not one (a mask, a string, a box)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_floating_point():
        return int(value)
    if hasattr(value, "dtype") and getattr(value, "ndim", None) == 0:  # a NumPy integer
        kind = getattr(value.dtype, "kind", "")
        return int(value) if kind in "iu" else None
    return None


def data_label(data: Any, index: int) -> int | None:
    """The label the data set gives its image ``index``, or None when it gives none.

    Reads ``.targets``, ``.samples`` or ``.labels`` when the data set has one (never the
    image); else the second element of an ``(image, label)`` item. A tensor of images has no
    labels.

    Example:
        >>> from zfwidgets import demo
        >>> d = demo.load()
        >>> data_label(d.dataset, 0) == d.dataset[0][1]
        True
    """
    base, i = _unwrap(data, int(index))
    if isinstance(base, torch.Tensor):
        return None
    for name in _LABEL_LISTS:
        labels = getattr(base, name, None)
        if labels is not None and hasattr(labels, "__getitem__") and not callable(labels):
            return _as_label(labels[i])
    samples = getattr(base, "samples", None)
    if isinstance(samples, Sequence) and not isinstance(samples, str):
        sample = samples[i]
        if isinstance(sample, tuple | list) and len(sample) > 1:
            return _as_label(sample[1])
    item = base[i]
    if isinstance(item, tuple | list) and len(item) > 1:
        return _as_label(item[1])
    return None


def data_class_names(data: Any) -> list[str] | None:
    """The data set's class names (its ``.classes``, e.g. ``ImageFolder``'s folder names),
    or None when it has none.

    Example:
        >>> from torch.utils.data import TensorDataset
        >>> data_class_names(TensorDataset(torch.zeros(2, 1, 4, 4))) is None
        True
    """
    base, _ = _unwrap(data)
    classes = getattr(base, "classes", None)
    if classes is None or isinstance(classes, str) or not isinstance(classes, Sequence):
        return None
    return [str(c) for c in classes]
