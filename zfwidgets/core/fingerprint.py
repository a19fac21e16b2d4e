"""Fingerprints of data sets over every item, cheap enough to take on every mining pass.

Three kinds, chosen by what the data is:

- **tensor** (N, C, H, W): every byte, hashed with xxh3-128 (gigabytes per second);
- **files** (torchvision ``ImageFolder`` / ``DatasetFolder``, or a ``Subset`` of one): each
  item's path relative to the root, size, modification time (ns) and label, read from
  ``os.stat`` without opening a single image, plus the transform's description;
- **items** (any other Dataset or DataLoader): one xxh3-128 digest per image as the batches
  carry it, then a digest of that table. Mining takes these digests from the batches it
  already has, so the fingerprint costs no extra pass; checking a file against such data
  reads every item once (no forward pass).

Any change of an item, and any swap of two items, changes the fingerprint.

Example:
    >>> import torch
    >>> a = torch.zeros(4, 1, 2, 2)
    >>> b = a.clone(); b[1] = 1
    >>> fp = data_fingerprint(a)
    >>> fp == data_fingerprint(a.clone()), fp == data_fingerprint(b)
    (True, False)
"""

from __future__ import annotations

import os
import re

import torch
import xxhash
from torch import Tensor
from torch.utils.data import DataLoader, Subset

__all__ = [
    "DIGEST_BYTES",
    "data_fingerprint",
    "digest_items",
    "item_meta",
    "items_fingerprint",
    "upfront",
]

FORMAT = "zfwidgets.data/2"
DIGEST_BYTES = 16  # one xxh3-128 digest per item


def upfront(data) -> str | None:
    """The fingerprint of a tensor or file-backed data set (no image is read), or None when
    ``data`` is another kind, whose fingerprint needs its items (:func:`digest_items`)."""
    images = _dataset_of(data)
    if isinstance(images, Tensor):
        return _tensor_fingerprint(images)
    files = _file_samples(images)
    if files is not None:
        return _files_fingerprint(images, files)
    return None


def digest_items(batch: Tensor) -> Tensor:
    """One xxh3-128 digest per image of ``batch`` (B, ...): a (B, 16) uint8 tensor.

    Example:
        >>> digest_items(torch.zeros(3, 1, 2, 2)).shape
        torch.Size([3, 16])
    """
    rows = _bytes_view(batch.detach().to("cpu")).reshape(len(batch), -1).numpy()
    joined = b"".join(xxhash.xxh3_128_digest(row) for row in rows)
    return torch.frombuffer(bytearray(joined), dtype=torch.uint8).reshape(len(batch), DIGEST_BYTES)


def items_fingerprint(digests: Tensor, meta: str) -> str:
    """The fingerprint of an items-kind data set from its (N, 16) item digests; ``meta``
    describes the images (dtype and shape, :func:`item_meta`)."""
    h = xxhash.xxh3_128(f"{FORMAT};items;{len(digests)};{meta};".encode())
    h.update(digests.contiguous().numpy())
    return h.hexdigest()


def item_meta(batch: Tensor) -> str:
    """What :func:`items_fingerprint` records about the images besides their bytes."""
    return f"{batch.dtype}{tuple(batch.shape[1:])}"


def data_fingerprint(data, samples: int | None = None, batch_size: int = 64) -> str:
    """A digest of every item of ``data`` (a tensor, Dataset or DataLoader).

    Tensors and image folders are hashed without reading images; other data sets are read
    once (``batch_size`` items at a time). ``samples=32`` gives the digest written before
    version 2 (length and 32 evenly spaced images), kept to compare with old records only.

    Example:
        >>> from torch.utils.data import TensorDataset
        >>> x = torch.arange(24.0).reshape(6, 1, 2, 2)
        >>> swapped = x[[1, 0, 2, 3, 4, 5]]
        >>> fp = data_fingerprint(TensorDataset(x))
        >>> fp == data_fingerprint(TensorDataset(x)), fp == data_fingerprint(TensorDataset(swapped))
        (True, False)
    """
    if samples is not None:
        return _sampled_fingerprint(data, samples)
    known = upfront(data)
    if known is not None:
        return known
    from zfwidgets.core.mining import _batches  # the very batches mining hashes

    digests, meta = [], ""
    with torch.random.fork_rng(devices=[]):  # a user's DataLoader draws a seed when started
        for batch in _batches(data, batch_size):
            meta = meta or item_meta(batch)
            digests.append(digest_items(batch))
    return items_fingerprint(_cat(digests), meta)


def _cat(digests: list[Tensor]) -> Tensor:
    if not digests:
        return torch.zeros((0, DIGEST_BYTES), dtype=torch.uint8)
    return torch.cat(digests)


def _dataset_of(data):
    return data.dataset if isinstance(data, DataLoader) else data


def _bytes_view(t: Tensor) -> Tensor:
    """The bytes of ``t`` as uint8, without a copy when it is contiguous."""
    t = t.contiguous()
    if t.dtype == torch.bool:
        t = t.to(torch.uint8)
    return t.reshape(-1).view(torch.uint8) if t.numel() else t.reshape(-1).to(torch.uint8)


def _tensor_fingerprint(images: Tensor) -> str:
    h = xxhash.xxh3_128(f"{FORMAT};tensor;{tuple(images.shape)};{images.dtype};".encode())
    h.update(_bytes_view(images.detach().to("cpu")).numpy())
    return h.hexdigest()


def _file_samples(images) -> tuple[str, list[tuple[str, int]]] | None:
    """(root, [(path, label), ...]) of a torchvision folder data set, or a Subset of one."""
    if isinstance(images, Subset):
        inner = _file_samples(images.dataset)
        if inner is None:
            return None
        root, samples = inner
        return root, [samples[i] for i in images.indices]
    samples = getattr(images, "samples", None)
    root = getattr(images, "root", None)
    if not isinstance(samples, list) or not isinstance(root, str | os.PathLike):
        return None
    if not all(isinstance(s, tuple) and len(s) == 2 for s in samples[:1]):
        return None
    return os.fspath(root), samples


def _transform_text(images) -> str:
    """The data set's transforms as text, memory addresses removed (stable across runs)."""
    while isinstance(images, Subset):
        images = images.dataset
    parts = [repr(getattr(images, n, None)) for n in ("transform", "target_transform")]
    return re.sub(r" at 0x[0-9a-fA-F]+", "", ";".join(parts))


def _files_fingerprint(images, files: tuple[str, list[tuple[str, int]]]) -> str:
    root, samples = files
    h = xxhash.xxh3_128(
        f"{FORMAT};files;{len(samples)};{type(images).__name__};{_transform_text(images)};".encode()
    )
    lines: list[str] = []
    for path, label in samples:
        info = os.stat(path)
        rel = os.path.relpath(path, root)
        lines.append(f"{rel}\0{info.st_size}\0{info.st_mtime_ns}\0{label}\n")
    h.update("".join(lines).encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def _sampled_fingerprint(data, samples: int) -> str:
    """Version 1: the length and up to ``samples`` evenly spaced images."""
    from zfwidgets.core.mining import as_indexable, image_of

    images = as_indexable(data)
    n = len(images)
    h = xxhash.xxh3_128()
    h.update(str(n).encode())
    for i in sorted({int(j * (n - 1) / max(samples - 1, 1)) for j in range(min(samples, n))}):
        h.update(image_of(images[i]).to("cpu", torch.float32).contiguous().numpy())
    return h.hexdigest()
