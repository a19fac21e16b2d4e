"""The lecture's "visualize the filters": first-layer weights as small pictures.

Example:
    >>> import torch.nn as nn
    >>> tiles = filter_images(nn.Conv2d(3, 4, 5).weight)
    >>> len(tiles), tiles[0].shape
    (4, (5, 5, 3))
"""

from __future__ import annotations

import numpy as np
from torch import Tensor

from zfwidgets.core.render import as_numpy, projection_image

__all__ = ["filter_images"]


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
