"""ROAD's noisy linear imputation (Rong et al., ICML 2022): removed pixels from their neighbours.

Deleting pixels to a constant fill leaves a pattern (the shape of the removed set) that a model
can read, so a deletion curve partly measures that pattern. ROAD ("Remove And Debias") instead
sets each removed pixel to the weighted mean of its eight neighbours (edge neighbours 1/6,
corner neighbours 1/12; neighbours outside the image left out), the removed neighbours being
unknowns too: one sparse linear system per channel. A little gaussian noise is added to the
imputed pixels, as in the paper.

Example:
    >>> img = torch.arange(16.0).view(1, 4, 4)  # a linear ramp: its own neighbours' mean
    >>> removed = torch.zeros(4, 4, dtype=torch.bool)
    >>> removed[1, 2] = True
    >>> road_impute(img, removed, noise=0.0)[0, 1, 2].item()
    6.0
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

__all__ = ["NEIGHBOURS", "road_impute"]

# (dy, dx, weight): ROAD's neighbour weights (edge neighbours twice the corner ones).
NEIGHBOURS = (
    (-1, 0, 1 / 6),
    (1, 0, 1 / 6),
    (0, -1, 1 / 6),
    (0, 1, 1 / 6),
    (-1, -1, 1 / 12),
    (-1, 1, 1 / 12),
    (1, -1, 1 / 12),
    (1, 1, 1 / 12),
)


def _system(removed: np.ndarray, img: np.ndarray):
    """The sparse system ``A v = b``: per removed pixel, weight sum * v - removed neighbours'
    weighted v = known neighbours' weighted values (b has one column per channel)."""
    from scipy.sparse import coo_matrix  # scipy comes with scikit-learn, a dependency

    h, w = removed.shape
    ys, xs = np.nonzero(removed)
    n = len(ys)
    unknown = np.full((h, w), -1, dtype=np.int64)
    unknown[ys, xs] = np.arange(n)
    diag = np.zeros(n)
    b = np.zeros((n, img.shape[0]))
    rows, cols, vals = [np.arange(n)], [np.arange(n)], []
    for dy, dx, weight in NEIGHBOURS:
        ny, nx = ys + dy, xs + dx
        inside = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
        diag[inside] += weight
        at = np.nonzero(inside)[0]
        other = unknown[ny[at], nx[at]]
        free = other >= 0
        rows.append(at[free])
        cols.append(other[free])
        vals.append(np.full(int(free.sum()), -weight))
        known = at[~free]
        b[known] += weight * img[:, ny[known], nx[known]].T
    vals.insert(0, diag)
    a = coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), (n, n))
    return a.tocsc(), b


def road_impute(
    img: Tensor,
    removed: Tensor,
    noise: float = 0.01,
    generator: torch.Generator | None = None,
    empty: float = 0.0,
) -> Tensor:
    """``img`` (C, H, W) with the ``removed`` (H, W) pixels imputed by ROAD's linear system.

    Each removed pixel becomes the weighted mean of its in-image neighbours (removed ones
    imputed too), plus gaussian noise of standard deviation ``noise`` (model-input units;
    drawn from ``generator``). Known pixels are returned unchanged. With every pixel removed
    nothing anchors the system: those pixels become ``empty`` (plus the noise).

    Example:
        >>> img = torch.full((3, 5, 5), 0.25)
        >>> removed = torch.rand(5, 5, generator=torch.Generator().manual_seed(0)) < 0.5
        >>> torch.allclose(road_impute(img, removed, noise=0.0), img)  # constant stays constant
        True
    """
    if not (isinstance(noise, int | float) and math.isfinite(noise) and noise >= 0):
        raise ValueError(f"road_noise must be a finite number >= 0; got {noise!r}")
    if removed.shape != img.shape[-2:]:
        raise ValueError(f"removed must be (H, W) = {tuple(img.shape[-2:])}; got {removed.shape}")
    mask = removed.detach().cpu().numpy().astype(bool)
    out = img.detach().clone()
    count = int(mask.sum())
    if count == 0:
        return out
    if count == mask.size:
        values = torch.full((img.shape[0], count), float(empty), dtype=torch.float64)
    else:
        from scipy.sparse.linalg import spsolve

        a, b = _system(mask, img.detach().cpu().double().numpy())
        solved = spsolve(a, b)
        values = torch.from_numpy(np.asarray(solved).reshape(count, -1).T.copy())
    if noise:
        values = values + noise * torch.randn(values.shape, generator=generator, dtype=values.dtype)
    where = torch.from_numpy(mask).to(img.device)
    out[:, where] = values.to(img.dtype).to(img.device)
    return out
