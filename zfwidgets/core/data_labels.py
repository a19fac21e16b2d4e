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
from torch.utils.data import DataLoader, Subset, TensorDataset

__all__ = ["as_label", "data_class_names", "data_label", "data_labels"]

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


def as_label(value: Any) -> int | None:
    """``value`` as an int label, or None when it is not one (a mask, a string, a box).

    Example:
        >>> as_label(torch.tensor(3)), as_label("cat"), as_label(True)
        (3, None, None)
    """
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
            return as_label(labels[i])
    samples = getattr(base, "samples", None)
    if isinstance(samples, Sequence) and not isinstance(samples, str):
        sample = samples[i]
        if isinstance(sample, tuple | list) and len(sample) > 1:
            return as_label(sample[1])
    item = base[i]
    if isinstance(item, tuple | list) and len(item) > 1:
        return as_label(item[1])
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


def _label_list(base: Any) -> Any:
    """The whole label list of a data set, looked up as :func:`data_label` does (never an
    item): a TensorDataset's second tensor, ``.targets``, ``.samples``' labels, ``.labels``."""
    if isinstance(base, TensorDataset):
        return base.tensors[1] if len(base.tensors) > 1 else None
    labels = getattr(base, "targets", None)
    if labels is not None and hasattr(labels, "__len__") and not callable(labels):
        return labels
    samples = getattr(base, "samples", None)
    if isinstance(samples, Sequence) and not isinstance(samples, str) and samples:
        if all(isinstance(s, tuple | list) and len(s) > 1 for s in samples):
            return [s[1] for s in samples]
    labels = getattr(base, "labels", None)
    if labels is not None and hasattr(labels, "__len__") and not callable(labels):
        return labels
    return None


def data_labels(data: Any) -> tuple[torch.Tensor | None, list[str] | None]:
    """Every label of a data set as an (N,) int64 tensor, and the names of those labels.

    Labels come from ``.targets``, ``.samples``, ``.labels`` or a TensorDataset's second
    tensor, without reading images. Int labels are named by the data set's ``.classes`` (None
    when it has none). String labels (``"cat"``, ``"dog"``) are used as names: label i is the
    i-th name in sorted order. Labels of any other kind (boxes, masks, floats) or a list of the
    wrong length give ``(None, None)``: no labels rather than wrong ones.

    Example:
        >>> class Pets(torch.utils.data.Dataset):
        ...     targets = ["dog", "cat", "dog"]
        ...     def __len__(self):
        ...         return 3
        >>> labels, names = data_labels(Pets())
        >>> labels.tolist(), names
        ([1, 0, 1], ['cat', 'dog'])
    """
    if isinstance(data, Subset):
        labels, names = data_labels(data.dataset)
        if labels is None:
            return None, None
        return labels[torch.as_tensor([int(i) for i in data.indices], dtype=torch.long)], names
    base, _ = _unwrap(data)
    if isinstance(base, Subset):
        return data_labels(base)
    raw = _label_list(base)
    if raw is None or isinstance(base, torch.Tensor) or isinstance(raw, str):
        return None, None
    values = raw.tolist() if hasattr(raw, "tolist") else list(raw)
    if len(values) != len(base):
        return None, None
    if values and all(isinstance(v, str) for v in values):
        names = sorted(set(values))
        index = {name: i for i, name in enumerate(names)}
        return torch.tensor([index[v] for v in values], dtype=torch.long), names
    ints = [as_label(v) for v in values]
    if any(v is None for v in ints):
        return None, None
    return torch.tensor(ints, dtype=torch.long), data_class_names(base)
