"""The lecture's "visualize the filters": first-layer weights as small pictures, and how much
structure each has.

A small model trained for a few epochs on small digits has filters that look like noise at a
glance; :func:`neighbour_correlation` measures the structure that is there (smooth edges and
blobs have neighbouring weights alike; noise has not), so a figure can show the most
structured filters first and compare them with the untrained initialisation.

Example:
    >>> import torch.nn as nn
    >>> tiles = filter_images(nn.Conv2d(3, 4, 5).weight)
    >>> len(tiles), tiles[0].shape
    (4, (5, 5, 3))
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from zfwidgets.core.render import as_numpy, projection_image

__all__ = ["filter_images", "neighbour_correlation"]


def filter_images(weight: Tensor, per_filter: bool = True) -> list[np.ndarray]:
    """One uint8 picture per output filter of a conv weight (out, in, kh, kw).

    Three input channels give colour pictures, one gives grey, any other count the mean over
    input channels. Zero is mid grey; each filter is stretched on its own (``per_filter``) or
    all by the largest weight of the layer, which shows dead and dominating filters.
    """
    w = as_numpy(weight)
    if w.ndim != 4:
        raise ValueError(f"expected a conv weight (out, in, kh, kw); got shape {w.shape}")
    if w.shape[1] not in (1, 3):
        w = w.mean(axis=1, keepdims=True)
    scale = None if per_filter else float(np.abs(w).max())
    return [projection_image(f, scale=scale) for f in w]


def neighbour_correlation(weight: Tensor) -> Tensor:
    """How smooth each filter of a conv weight (out, in, kh, kw) is: the correlation (Pearson)
    between every weight and its right-hand and lower neighbour, over all input channels.

    About 1 for a smooth ramp, blob or blurred edge, about 0 for white noise (what a fresh
    initialisation is), -1 for a checkerboard; 0 for a flat filter, which has no structure.
    Returns a (out,) float32 tensor.

    Example:
        >>> ramp = torch.arange(5.0).expand(5, 5)           # a smooth left-to-right edge
        >>> checker = (torch.arange(5)[:, None] + torch.arange(5)) % 2 * 2.0 - 1
        >>> r = neighbour_correlation(torch.stack([ramp, checker])[:, None])
        >>> [round(v, 2) for v in r.tolist()]
        [0.93, -1.0]
    """
    if weight.ndim != 4:
        raise ValueError(
            f"expected a conv weight (out, in, kh, kw); got shape {tuple(weight.shape)}"
        )
    if weight.shape[-1] < 2 and weight.shape[-2] < 2:
        raise ValueError(f"a 1x1 filter has no neighbours; got shape {tuple(weight.shape)}")
    w = weight.detach().to("cpu", torch.float64)
    out = w.shape[0]
    first = torch.cat([w[..., :, :-1].reshape(out, -1), w[..., :-1, :].reshape(out, -1)], 1)
    second = torch.cat([w[..., :, 1:].reshape(out, -1), w[..., 1:, :].reshape(out, -1)], 1)
    first = first - first.mean(1, keepdim=True)
    second = second - second.mean(1, keepdim=True)
    spread = (first.pow(2).sum(1) * second.pow(2).sum(1)).sqrt()
    together = (first * second).sum(1)
    r = torch.where(spread > 1e-12, together / spread.clamp_min(1e-300), torch.zeros_like(spread))
    return r.float()
