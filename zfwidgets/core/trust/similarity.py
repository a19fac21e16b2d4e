"""How alike two maps are: Spearman rank correlation, SSIM and HOG similarity (Adebayo et al.).

Each takes two (H, W) maps and returns a float in [-1, 1]; NaN when a map is constant (a rank
correlation of a map that is all zero means nothing).

Example:
    >>> import torch
    >>> a = torch.arange(16.0).view(4, 4)
    >>> spearman(a, a), spearman(a, -a), ssim(a, a)
    (1.0, -1.0, 1.0)
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["hog_available", "hog_similarity", "normalise", "ranks", "spearman", "ssim"]


def _flat(a) -> np.ndarray:
    return torch.as_tensor(a).detach().to("cpu", torch.float64).flatten().numpy()


def ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (as ``scipy.stats.rankdata``).

    Example:
        >>> ranks(np.array([3.0, 1.0, 3.0])).tolist()
        [2.5, 1.0, 2.5]
    """
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    starts = np.r_[True, sorted_values[1:] != sorted_values[:-1]]
    group = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    last = np.r_[first[1:], len(values)] - 1
    average = (first + last) / 2.0 + 1.0
    out = np.empty(len(values))
    out[order] = average[group]
    return out


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    den = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
    if den == 0.0:
        return float("nan")
    return float(np.clip((a * b).sum() / den, -1.0, 1.0))


def spearman(a, b, absolute: bool = False) -> float:
    """Spearman rank correlation of two maps (of ``|a|`` and ``|b|`` when ``absolute``)."""
    x, y = _flat(a), _flat(b)
    if x.shape != y.shape:
        raise ValueError(f"maps must have one shape; got {x.shape} and {y.shape}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        # a NaN would take an arbitrary rank and give a number that means nothing
        raise ValueError(
            f"maps have NaN or infinite values ({int((~np.isfinite(x)).sum())} and "
            f"{int((~np.isfinite(y)).sum())}): compare maps of finite values"
        )
    if absolute:
        x, y = np.abs(x), np.abs(y)
    return _pearson(ranks(x), ranks(y))


def normalise(a) -> Tensor:
    """A map scaled to [0, 1] (min to 0, max to 1; a constant map gives zeros)."""
    t = torch.as_tensor(a).detach().to("cpu", torch.float64)
    low, high = t.min(), t.max()
    return (t - low) / (high - low) if high > low else torch.zeros_like(t)


def ssim(a, b, sigma: float = 1.5, size: int = 11) -> float:
    """Mean structural similarity of two maps normalised to [0, 1], gaussian window.

    Wang et al. (2004) with C1 = 0.01^2 and C2 = 0.03^2 (data range 1); the window shrinks
    to fit small maps; means over the valid positions.
    """
    x, y = normalise(a), normalise(b)
    if x.shape != y.shape or x.ndim != 2:
        raise ValueError(
            f"maps must be (H, W) of one shape; got {tuple(x.shape)}, {tuple(y.shape)}"
        )
    size = min(size, *x.shape)
    size -= 1 - size % 2  # odd
    r = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    g = g / g.sum()
    win = (g[:, None] * g[None, :])[None, None]

    def filt(t: Tensor) -> Tensor:
        return F.conv2d(t[None, None], win)[0, 0]

    mx, my = filt(x), filt(y)
    vx = filt(x * x) - mx * mx
    vy = filt(y * y) - my * my
    cov = filt(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(s.mean())


def hog_available() -> bool:
    """Whether scikit-image (which computes the HOG descriptors) is installed."""
    try:
        import skimage.feature  # noqa: F401
    except ImportError:
        return False
    return True


def hog_similarity(a, b) -> float:
    """Pearson correlation of the HOG descriptors of the two maps normalised to [0, 1].

    Needs scikit-image (``pip install scikit-image``); NaN without it (the tables say so).
    Cells of 1/8 of the shorter side (at least 2 pixels), 2x2 cells per block, 9 orientations.
    """
    if not hog_available():
        return float("nan")
    from skimage.feature import hog

    x, y = normalise(a).numpy(), normalise(b).numpy()
    cell = max(2, min(x.shape) // 8)
    options = {"orientations": 9, "pixels_per_cell": (cell, cell), "cells_per_block": (2, 2)}
    return _pearson(hog(x, **options), hog(y, **options))
