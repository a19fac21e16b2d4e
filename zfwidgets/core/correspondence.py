"""Correspondence analysis (paper Table 1): does the model tie the same part across images?

Mask the same part (say the left eye) in several images. For image i and layer l, the change
``eps_i = x_i - x~_i`` (features before minus after masking) says how the layer registered
the loss of that part. If the model encodes the part consistently, the signs of eps agree
across images. We report

    Delta_l = mean over pairs i < j of Hamming(sign(eps_i), sign(eps_j)) / length(eps)

which is the paper's sum over pairs, normalised by the number of pairs and the vector length
so that it lies in [0, 1] and compares across layers (independent random signs give about
0.5, identical changes 0). Lower means more consistent. The baseline masks a random box of
the same size, at the same random place in every image, over several draws.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from zfwidgets.core.checks import check_count, check_fill
from zfwidgets.core.inspector import Inspector
from zfwidgets.core.occlusion import occlude

__all__ = ["Consistency", "consistency", "correspondence"]


@dataclass(frozen=True)
class Consistency:
    """Delta for one layer: for the part masks, and the random baseline's mean and spread."""

    layer: str
    part: float
    random_mean: float
    random_std: float


def consistency(changes: Tensor) -> float:
    """Mean normalised Hamming distance between the signs of every pair of rows of ``changes``."""
    if changes.shape[0] < 2:
        raise ValueError(f"need at least 2 images to compare; got {changes.shape[0]}")
    signs = torch.sign(changes.flatten(1))
    n = signs.shape[0]
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    distances = [(signs[i] != signs[j]).double().mean() for i, j in pairs]
    return float(torch.stack(distances).mean())


def _changes(insp: Inspector, images: Tensor, corners, size: int, fill, names) -> dict:
    masked = torch.cat(
        [occlude(img[None], y, x, size, fill) for img, (y, x) in zip(images, corners, strict=True)]
    )
    before = insp.run_batch(images, names)
    after = insp.run_batch(masked, names)
    return {n: (before[n] - after[n]).flatten(1) for n in names}


def correspondence(
    insp: Inspector,
    images: Sequence[Tensor],
    corners: Sequence[tuple[int, int]],
    size: int,
    layers: Sequence[str],
    fill: float | Tensor = 0.0,
    draws: int = 10,
    seed: int = 0,
) -> list[Consistency]:
    """Delta per layer for masking the ``size`` square at ``corners[i]`` in ``images[i]``.

    The random baseline uses ``draws`` random corners (the same one in every image per draw).
    """
    if len(images) != len(corners):
        raise ValueError(f"got {len(images)} images but {len(corners)} mask corners; give one each")
    # a mask of no pixels, or no random draws, would give numbers that mean nothing
    size, draws = check_count("mask size", size), check_count("draws", draws)
    batch = torch.cat([insp.image(img) for img in images])
    check_fill(fill, batch[:1])
    height, width = batch.shape[-2:]
    if size > min(height, width):
        raise ValueError(
            f"mask size {size} is larger than the {height}x{width} images: give "
            f"1..{min(height, width)}"
        )
    for y, x in corners:
        if not (0 <= y <= height - size and 0 <= x <= width - size):
            raise ValueError(
                f"mask at ({y}, {x}) of size {size} leaves the {height}x{width} image: give "
                f"corners with row in 0..{height - size} and column in 0..{width - size}"
            )
    names = [insp.layer_name(layer) for layer in layers]
    part = _changes(insp, batch, corners, size, fill, names)
    generator = torch.Generator().manual_seed(seed)
    random = {n: [] for n in names}
    for _ in range(draws):
        y = int(torch.randint(0, height - size + 1, (1,), generator=generator))
        x = int(torch.randint(0, width - size + 1, (1,), generator=generator))
        changes = _changes(insp, batch, [(y, x)] * len(batch), size, fill, names)
        for n in names:
            random[n].append(consistency(changes[n]))
    results = []
    for layer, n in zip(layers, names, strict=True):
        r = torch.tensor(random[n], dtype=torch.float64)
        std = float(r.std()) if draws > 1 else 0.0
        results.append(Consistency(layer, consistency(part[n]), float(r.mean()), std))
    return results
