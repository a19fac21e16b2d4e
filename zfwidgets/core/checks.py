"""Checks on what users pass in, with messages that say what was given and what is allowed."""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "ImageCollator",
    "as_image",
    "as_int",
    "check_batch",
    "check_bytes",
    "check_channel",
    "check_class",
    "check_count",
    "check_fill",
    "check_number",
    "check_finite_weights",
    "check_position",
    "closest_names",
    "fitting_side",
    "int_list",
    "name_list",
    "resolve_device",
]


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` means CUDA when available, else CPU; anything else must name a device."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device {device!r} is not a device; use 'auto', 'cpu' or 'cuda'") from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but CUDA is not available; use 'auto'")
    if resolved.type == "meta":
        raise ValueError("device 'meta' holds shapes but no values; use 'auto', 'cpu' or 'cuda'")
    if resolved.type != "cpu":
        try:  # now, not at the first call: 'mps' or 'xla' on a machine without them
            torch.empty(0, device=resolved)
        except (RuntimeError, AssertionError) as err:
            raise ValueError(
                f"device {device!r} is not available on this machine; use 'auto' or 'cpu'"
            ) from err
    return resolved


def as_int(value):
    """An integer given as a numpy integer or a 0-d integer tensor, as a Python int
    (``np.int64(3)``, ``labels[i]``, ``scores.argmax()``); anything else unchanged, for the
    caller's own check to accept or refuse by name.

    Example:
        >>> as_int(np.int64(3)), as_int(torch.tensor(4)), as_int(2.5), as_int(True)
        (3, 4, 2.5, True)
    """
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, Tensor) and value.ndim == 0 and value.dtype in _INT_DTYPES:
        return int(value)
    return value


_INT_DTYPES = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)


def check_number(name: str, value: Any, low: float, high: float, low_open: bool = False) -> None:
    """Refuses ``value`` unless it is a finite real number in ``[low, high]`` (``(low, high]``
    when ``low_open``), naming what was given and what is allowed.

    Example:
        >>> check_number("lr", float("inf"), 0, 10, low_open=True)
        Traceback (most recent call last):
        ...
        ValueError: lr must be a finite number in (0, 10]; got inf
    """
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}]"
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if (not number or not math.isfinite(value) or value > high or value < low
            or (low_open and value == low)):  # fmt: skip
        raise ValueError(f"{name} must be a finite number in {interval}; got {value!r}")


def check_count(name: str, value) -> int:
    """``value`` as a positive int (a batch size, a step count).

    Example:
        >>> check_count("batch_size", 0)
        Traceback (most recent call last):
        ValueError: batch_size must be a positive int; got 0
    """
    value = as_int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int; got {value!r}")
    return int(value)


def check_bytes(name: str, value) -> int:
    """``value`` as a whole number of bytes >= 0 (``256 * 2**20``, not ``"256MB"``)."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise TypeError(
            f"{name} must be a number of bytes (e.g. 256 * 2**20); got {type(value).__name__} "
            f"{value!r}"
        )
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be >= 0, a finite number of bytes; got {value!r}")
    return int(value)


def name_list(name: str, value) -> list[str]:
    """``value`` as a list of layer names; a lone string is refused, not read letter by letter.

    Example:
        >>> name_list("layers", "conv2")
        Traceback (most recent call last):
        TypeError: layers must be a list of layer names; got the str 'conv2' (write ['conv2'])
    """
    if isinstance(value, str):
        raise TypeError(
            f"{name} must be a list of layer names; got the str {value!r} (write [{value!r}])"
        )
    if not isinstance(value, Sequence | set | frozenset | dict):
        raise TypeError(f"{name} must be a list of layer names; got {type(value).__name__}")
    return list(value)


def int_list(name: str, value) -> list[int]:
    """``value`` as a non-empty list of ints (channels, classes)."""
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        raise TypeError(f"{name} must be a list of ints; got the int {value} (write [{value}])")
    if isinstance(value, str) or not isinstance(value, Sequence | np.ndarray | Tensor):
        raise TypeError(f"{name} must be a list of ints; got {type(value).__name__}")
    if len(value) == 0:
        raise ValueError(f"{name} is empty; give at least one")
    return list(value)


def as_image(x, in_channels: int | None) -> Tensor:
    """One image as a float32 (1, C, H, W) tensor, or a clear error.

    Accepts a torch tensor or numpy array shaped (C, H, W) or (1, C, H, W) with a floating
    dtype and finite values.
    """
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, Tensor):
        raise TypeError(
            f"image must be a torch.Tensor or numpy array shaped (C, H, W); got {type(x).__name__}"
        )
    if x.layout != torch.strided:
        raise TypeError(f"image is a {x.layout} tensor; pass a dense one (x.to_dense())")
    if x.device.type == "meta":
        raise ValueError("image is on the meta device: it has a shape but no pixel values")
    if x.ndim == 4 and x.shape[0] != 1:
        raise ValueError(
            f"expected one image shaped (C, H, W) or (1, C, H, W); got a batch of {x.shape[0]} "
            f"(shape {tuple(x.shape)}). Pass the images one at a time."
        )
    if x.ndim not in (3, 4):
        raise ValueError(
            f"image must have 3 dimensions (C, H, W) or 4 (1, C, H, W); got shape {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise TypeError(
            f"image dtype is {x.dtype}; a floating dtype is needed (e.g. x.float() / 255, "
            "normalised as the model was trained)"
        )
    x, wide = x.reshape(1, *x.shape[-3:]).float(), x.reshape(1, *x.shape[-3:])
    # A finite sum proves every value finite (NaN and inf propagate) at a tenth of the cost
    # of the elementwise test; only an overflowing or non-finite sum needs the full count.
    # The test runs after the cast: a float64 1e300 is finite, but inf in float32.
    if not torch.isfinite(x.sum()) and not torch.isfinite(x).all():
        bad = ~torch.isfinite(x)
        huge = int((bad & torch.isfinite(wide)).sum())
        if huge:
            raise ValueError(
                f"image has {huge} values beyond float32's range (|x| > 3.4e38); the model "
                "computes in float32: scale the image as the model was trained"
            )
        raise ValueError(
            f"image has {int(bad.sum())} NaN or infinite values; all pixels must be finite"
        )
    if in_channels is not None and x.shape[1] != in_channels:
        raise ValueError(
            f"image has {x.shape[1]} channels (shape {tuple(x.shape[1:])}) but the model's "
            f"first layer takes {in_channels}"
        )
    return x


def check_batch(batch: Tensor, first: int) -> None:
    """A batch of data-set images (image ``first`` is its first row) checked as
    :func:`as_image` checks one image: a floating dtype and finite pixels, or an error that
    names the first bad image's index in the data set.

    Example:
        >>> x = torch.zeros(4, 1, 2, 2); x[2, 0, 1, 1] = float("nan")
        >>> try:
        ...     check_batch(x, 16)
        ... except ValueError as err:
        ...     print(str(err)[:46])
        image 18 of the data set has 1 NaN or infinite
    """
    if not batch.is_floating_point():
        raise TypeError(
            f"data set images have dtype {batch.dtype} (image {first} onwards); a floating dtype "
            "is needed, as for Inspector.image: convert them (e.g. x.float() / 255, normalised "
            "as the model was trained) or give the Dataset such a transform"
        )
    wide = batch.detach()
    x = wide.float()
    if torch.isfinite(x.sum()) or torch.isfinite(x).all():  # see as_image: the cheap test first
        return
    bad = ~torch.isfinite(x.flatten(1))
    row = int(bad.any(1).nonzero()[0, 0])
    huge = int((bad[row] & torch.isfinite(wide[row].flatten())).sum())
    if huge:
        raise ValueError(
            f"image {first + row} of the data set has {huge} values beyond float32's range "
            "(|x| > 3.4e38); the model computes in float32: scale the images as the model was "
            "trained"
        )
    raise ValueError(
        f"image {first + row} of the data set has {int(bad[row].sum())} NaN or infinite values; "
        "all pixels must be finite: fix or drop that image"
    )


def check_finite_weights(model) -> None:
    """Every floating parameter and buffer of ``model`` finite, or a ValueError naming the
    first one that is not (a NaN weight turns every picture into NaN).

    Example:
        >>> from torch import nn
        >>> m = nn.Sequential(nn.Linear(2, 2))
        >>> with torch.no_grad():
        ...     m[0].bias[1] = float("nan")
        >>> try:
        ...     check_finite_weights(m)
        ... except ValueError as err:
        ...     print(str(err)[:34])
        model parameter '0.bias' has 1 NaN
    """
    named = [*model.named_parameters(), *model.named_buffers()]
    for name, t in named:
        lazy = isinstance(t, torch.nn.parameter.UninitializedTensorMixin)
        if lazy or not t.is_floating_point() or t.device.type == "meta" or not t.numel():
            continue
        t = t.detach()
        if torch.isfinite(t.sum()) or torch.isfinite(t).all():
            continue
        kind = "parameter" if any(n == name for n, _ in model.named_parameters()) else "buffer"
        raise ValueError(
            f"model {kind} {name!r} has {int((~torch.isfinite(t)).sum())} NaN or infinite "
            "values; every weight must be finite (a diverged training run?): load or train "
            "weights that are finite, then inspect"
        )


def closest_names(name: str, names: Sequence[str]) -> str:
    """A 'did you mean' suffix listing the names closest to ``name``."""
    close = difflib.get_close_matches(str(name), list(names), n=3, cutoff=0.4)
    if close:
        return "; did you mean " + " or ".join(repr(c) for c in close) + "?"
    return ""


def check_channel(channel, count: int, layer: str) -> int:
    """``channel`` as an int in [0, count)."""
    if isinstance(channel, bool) or not isinstance(channel, int | np.integer):
        raise TypeError(f"channel must be an int; got {type(channel).__name__} {channel!r}")
    if not 0 <= channel < count:
        raise ValueError(f"channel {channel} is out of range for layer '{layer}': 0..{count - 1}")
    return int(channel)


def check_class(target, count: int) -> int:
    """``target`` as a class index in [0, count).

    Example:
        >>> check_class(3, 10)
        3
    """
    if isinstance(target, bool) or not isinstance(target, int | np.integer):
        raise TypeError(
            f"target class must be an int or None; got {type(target).__name__} {target!r}"
        )
    if not 0 <= target < count:
        raise ValueError(f"target class {target} is out of range: 0..{count - 1}")
    return int(target)


def check_fill(fill, image: Tensor):
    """An occluder fill for ``image`` (1, C, H, W): a number, one value per channel (C,) or an
    image (C, H, W), every value finite; returned as given.

    Example:
        >>> check_fill(float("nan"), torch.zeros(1, 1, 4, 4))
        Traceback (most recent call last):
        ValueError: fill has NaN or infinite values; it is a pixel value in model-input units
    """
    kinds = int | float | np.number | np.ndarray | Tensor
    if isinstance(fill, bool) or not isinstance(fill, kinds):
        raise TypeError(
            "fill must be a number, one value per channel (C,) or an image (C, H, W); got "
            f"{type(fill).__name__} {fill!r}"
        )
    values = torch.as_tensor(fill)
    c, h, w = image.shape[-3:]
    if tuple(values.shape) not in {(), (c,), (c, h, w)}:
        raise ValueError(
            f"fill has shape {tuple(values.shape)}; for a ({c}, {h}, {w}) image it must be a "
            f"number, ({c},) or ({c}, {h}, {w})"
        )
    if not torch.isfinite(values.float()).all():
        raise ValueError(
            "fill has NaN or infinite values; it is a pixel value in model-input units"
        )
    return fill


def check_position(position, hw: tuple[int, ...] | None, layer: str):
    """None, "max" or an in-range (y, x) pair; ``hw`` is None for a fully connected layer."""
    if isinstance(position, np.ndarray | Tensor) and tuple(position.shape) == (2,):
        position = position.tolist()  # np.array([y, x]) is a pair too
    if position is None or (isinstance(position, str) and position == "max"):
        return position
    if hw is None:
        raise ValueError(
            f"layer '{layer}' is fully connected: position must be None or 'max'; got {position!r}"
        )
    if (
        not isinstance(position, tuple | list)
        or len(position) != 2
        or not all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in position)
    ):
        raise TypeError(f"position must be None, 'max' or a (y, x) pair of ints; got {position!r}")
    y, x = (int(v) for v in position)
    if not (0 <= y < hw[0] and 0 <= x < hw[1]):
        raise ValueError(
            f"position {(y, x)} is outside layer '{layer}' of size {hw[0]}x{hw[1]}: "
            f"y in 0..{hw[0] - 1}, x in 0..{hw[1] - 1}"
        )
    return (y, x)


def fitting_side(
    features: Callable[[int], int | None], wanted: int, largest: int = 4096
) -> tuple[int, int] | None:
    """The sides ``(smallest, largest)`` of square inputs with ``features(side) == wanted``.

    ``features(s)`` is the feature count a layer sees for an ``s`` x ``s`` input (None when such
    an input does not even reach it); it never decreases as ``s`` grows (pools round down, so
    several sides can fit), so two binary searches find the range in a few dozen cheap shape
    traces. None when no side fits.
    """

    def first_side(at_least: int) -> int:
        lo, hi = 1, largest + 1
        while lo < hi:
            mid = (lo + hi) // 2
            got = features(mid)
            if got is None or got < at_least:
                lo = mid + 1
            else:
                hi = mid
        return lo

    low = first_side(wanted)
    if low > largest or features(low) != wanted:
        return None
    if features(largest) == wanted:  # any larger side fits (an adaptive pool): no second search
        return low, largest
    return low, first_side(wanted + 1) - 1


class ImageCollator:
    """``collate_fn`` for data sets of images or ``(image, label)``: stacks the images.

    Counts the items it has seen, so an image whose shape differs from the first one is named
    by its index in the data set, with both shapes.

    Example:
        >>> collate = ImageCollator()
        >>> collate([torch.zeros(1, 4, 4), torch.zeros(1, 4, 4)]).shape
        torch.Size([2, 1, 4, 4])
    """

    def __init__(self) -> None:
        self.seen = 0
        self.shape: tuple[int, ...] | None = None

    def __call__(self, items: Sequence) -> Tensor:
        images = []
        for item in items:
            image = item[0] if isinstance(item, tuple | list) else item
            if isinstance(image, np.ndarray):
                image = torch.from_numpy(image)
            if not isinstance(image, Tensor):
                raise TypeError(
                    f"data set item {self.seen} is a {type(image).__name__}; items must be image "
                    "tensors (C, H, W) or (image, label) pairs"
                )
            if self.shape is None:
                self.shape = tuple(image.shape)
            elif tuple(image.shape) != self.shape:
                raise ValueError(
                    f"data set item {self.seen} is an image of shape {tuple(image.shape)} but the "
                    f"items before it are {self.shape}; every image must have the same shape"
                )
            images.append(image)
            self.seen += 1
        return torch.stack(images)
