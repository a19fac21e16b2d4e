"""Transformation robustness: random pad, jitter, scale and rotation applied every step.

Each transform is called as ``t(x, generator)`` on a batch (N, C, H, W) and draws every random
number from ``generator`` (a CPU :class:`torch.Generator`): torch's global RNG is never used.
:class:`Jitter`, :class:`Scale` and :class:`Rotate` keep the shape, :class:`Pad` grows it, and
:class:`Compose` (with ``keep_size=True``) centre-crops its result back to the input's size so
that models with a fixed input size take it. Consecutive scales and rotations are fused into
one ``affine_grid`` / ``grid_sample``. The extension point: any callable ``(x, generator)``.

Example:
    >>> import torch
    >>> t = standard()
    >>> x = torch.rand(2, 3, 32, 32)
    >>> tuple(t(x, torch.Generator().manual_seed(0)).shape)
    (2, 3, 32, 32)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from zfwidgets.core.checks import as_int

__all__ = ["Compose", "Jitter", "Pad", "Rotate", "Scale", "Transform", "standard"]

Transform = Callable[[Tensor, torch.Generator], Tensor]


def _check_number(name: str, value, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ValueError(f"{name} must be a number in [{low:g}, {high:g}]; got {value!r}")
    return float(value)


def _check_int(name: str, value, low: int, high: int) -> int:
    value = as_int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an int in {low}..{high}; got {value!r}")
    return value


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


@dataclass(frozen=True)
class Pad:
    """Pads ``width`` pixels on every side (``mode``: "reflect", "replicate" or "constant"
    with ``value``, in model-input units).

    Example:
        >>> tuple(Pad(2)(torch.zeros(1, 1, 4, 4), torch.Generator()).shape)
        (1, 1, 8, 8)
    """

    width: int = 12
    mode: str = "reflect"
    value: float = 0.0

    def __post_init__(self) -> None:
        _check_int("pad width", self.width, 0, 1024)
        if self.mode not in ("reflect", "replicate", "constant"):
            raise ValueError(
                f"pad mode must be 'reflect', 'replicate' or 'constant'; got {self.mode!r}"
            )

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        if self.width == 0:
            return x
        w = self.width
        if self.mode == "reflect" and min(x.shape[-2:]) <= w:
            return F.pad(x, (w, w, w, w), mode="replicate")
        if self.mode == "constant":
            return F.pad(x, (w, w, w, w), mode="constant", value=self.value)
        return F.pad(x, (w, w, w, w), mode=self.mode)


@dataclass(frozen=True)
class Jitter:
    """Shifts the whole batch by a random (dy, dx) in ``-pixels..pixels`` (wrapping round).

    Example:
        >>> x = torch.arange(4.0).view(1, 1, 1, 4)
        >>> Jitter(0)(x, torch.Generator()).tolist()
        [[[[0.0, 1.0, 2.0, 3.0]]]]
    """

    pixels: int = 8

    def __post_init__(self) -> None:
        _check_int("jitter", self.pixels, 0, 1024)

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        if self.pixels == 0:
            return x
        dy, dx = torch.randint(-self.pixels, self.pixels + 1, (2,), generator=generator).tolist()
        return torch.roll(x, (int(dy), int(dx)), dims=(-2, -1))


@dataclass(frozen=True)
class Scale:
    """Zooms each image by a random factor in ``[low, high]`` about its centre.

    Example:
        >>> x = torch.rand(1, 1, 5, 5)
        >>> torch.allclose(Scale(1.0, 1.0)(x, torch.Generator()), x, atol=1e-6)
        True
    """

    low: float = 0.9
    high: float = 1.1

    def __post_init__(self) -> None:
        _check_number("scale low", self.low, 0.1, 10)
        _check_number("scale high", self.high, self.low, 10)

    def matrices(self, n: int, generator: torch.Generator) -> Tensor:
        """(n, 2, 2): the inverse map (output -> input) of each image's zoom."""
        s = _uniform(n, self.low, self.high, generator)
        return torch.eye(2).expand(n, 2, 2) / s.view(n, 1, 1)

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        return _warp(x, self.matrices(len(x), generator))


@dataclass(frozen=True)
class Rotate:
    """Rotates each image by a random angle within ``degrees`` about its centre.

    Example:
        >>> x = torch.rand(1, 1, 5, 5)
        >>> torch.allclose(Rotate(0)(x, torch.Generator()), x, atol=1e-6)
        True
    """

    degrees: float = 10.0

    def __post_init__(self) -> None:
        _check_number("rotation degrees", self.degrees, 0, 180)

    def matrices(self, n: int, generator: torch.Generator) -> Tensor:
        a = _uniform(n, -self.degrees, self.degrees, generator) * (math.pi / 180)
        cos, sin = torch.cos(a), torch.sin(a)
        return torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        return _warp(x, self.matrices(len(x), generator))


def _warp(x: Tensor, linear: Tensor) -> Tensor:
    """Resamples each image of ``x`` through its 2x2 output->input map (bilinear, borders
    replicated). Square-pixel geometry: the map acts in pixel units about the centre."""
    n, _, h, w = x.shape
    aspect = torch.tensor([[1.0, h / w], [w / h, 1.0]])  # normalised coords differ per axis
    theta = torch.zeros(n, 2, 3)
    theta[:, :, :2] = linear * aspect
    theta = theta.to(x)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class Compose:
    """Applies ``transforms`` in order; ``keep_size`` centre-crops (or pads) the result back
    to the input's size. Consecutive :class:`Scale` / :class:`Rotate` are fused into one
    resampling (the random draws are the same as applying them one by one).

    Example:
        >>> c = Compose([Pad(4), Jitter(2)])
        >>> tuple(c(torch.zeros(1, 3, 8, 8), torch.Generator()).shape)
        (1, 3, 8, 8)
        >>> c
        Compose([Pad(width=4, mode='reflect', value=0.0), Jitter(pixels=2)], keep_size=True)
    """

    def __init__(self, transforms: Sequence[Transform], keep_size: bool = True) -> None:
        self.transforms = list(transforms)
        for t in self.transforms:
            if not callable(t):
                raise TypeError(f"every transform must be callable (x, generator); got {t!r}")
        self.keep_size = keep_size

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        size = tuple(x.shape[-2:])
        pending: Tensor | None = None
        for t in self.transforms:
            if isinstance(t, Scale | Rotate):
                m = t.matrices(len(x), generator)
                pending = m if pending is None else pending @ m
                continue
            if pending is not None:
                x, pending = _warp(x, pending), None
            x = t(x, generator)
        if pending is not None:
            x = _warp(x, pending)
        return _centre(x, size) if self.keep_size else x

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r}, keep_size={self.keep_size})"


def _centre(x: Tensor, size: tuple[int, int]) -> Tensor:
    h, w = x.shape[-2:]
    if (h, w) == size:
        return x
    if h < size[0] or w < size[1]:
        dh, dw = max(size[0] - h, 0), max(size[1] - w, 0)
        x = F.pad(x, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2), mode="replicate")
        h, w = x.shape[-2:]
    top, left = (h - size[0]) // 2, (w - size[1]) // 2
    return x[..., top : top + size[0], left : left + size[1]]


def standard(keep_size: bool = True) -> Compose:
    """Lucid's standard transforms: pad 12, jitter 8, scale 0.9-1.1, rotate within 10
    degrees, jitter 4 (then back to the input's size when ``keep_size``).

    Example:
        >>> len(standard().transforms)
        5
    """
    return Compose([Pad(12), Jitter(8), Scale(0.9, 1.1), Rotate(10.0), Jitter(4)], keep_size)
