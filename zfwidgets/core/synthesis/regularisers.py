"""Image priors for synthesis: the regularisers of Yosinski et al. (2015) and Mahendran &
Vedaldi (2015), each a small function on an image batch (1, C, H, W) in model-input space.

Example:
    >>> import torch
    >>> x = torch.zeros(1, 1, 9, 9)
    >>> x[0, 0, 4, 4] = 1.0
    >>> round(float(gaussian_blur(x, 1.0).sum()), 4)  # blurring keeps the total
    1.0
    >>> float(total_variation(torch.ones(1, 1, 4, 4)))  # a flat image has no variation
    0.0
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "clip_small_contribution",
    "clip_small_values",
    "gaussian_blur",
    "jitter_offsets",
    "total_variation",
]


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """``x`` blurred channel by channel with a Gaussian of ``sigma`` pixels (reflected edges).

    Example:
        >>> gaussian_blur(torch.ones(1, 3, 8, 8), 0.8).allclose(torch.ones(1, 3, 8, 8))
        True
    """
    if sigma <= 0:
        return x
    radius = max(1, math.ceil(2 * sigma))
    radius = min(radius, (min(x.shape[-2:]) - 1))  # reflect padding needs pad < side
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    c = x.shape[1]
    # Separable: one row pass and one column pass, each a depthwise conv.
    h = F.conv2d(
        F.pad(x, (radius, radius, 0, 0), mode="reflect"),
        k.view(1, 1, 1, -1).repeat(c, 1, 1, 1),
        groups=c,
    )
    return F.conv2d(
        F.pad(h, (0, 0, radius, radius), mode="reflect"),
        k.view(1, 1, -1, 1).repeat(c, 1, 1, 1),
        groups=c,
    )


def _below_quantile(score: Tensor, fraction: float) -> Tensor:
    """Mask (1, 1, H, W) of the ``fraction`` of pixels with the smallest ``score``."""
    flat = score.flatten()
    count = int(fraction * flat.numel())
    mask = torch.zeros_like(flat, dtype=torch.bool)
    if count > 0:
        mask[torch.topk(flat, count, largest=False).indices] = True
    return mask.view(score.shape)


def clip_small_values(x: Tensor, fraction: float) -> Tensor:
    """``x`` with the ``fraction`` of pixels of smallest norm (over channels) set to zero.

    Example:
        >>> clip_small_values(torch.tensor([[[[0.1, -2.0, 0.5, 3.0]]]]), 0.5).tolist()
        [[[[0.0, -2.0, 0.0, 3.0]]]]
    """
    if fraction <= 0:
        return x
    return x.masked_fill(_below_quantile(x.norm(dim=1, keepdim=True), fraction), 0.0)


def clip_small_contribution(x: Tensor, grad: Tensor, fraction: float) -> Tensor:
    """``x`` with the ``fraction`` of pixels contributing least, ``|sum_c x * grad|`` (the
    first-order estimate of what zeroing the pixel would change), set to zero.

    Example:
        >>> x = torch.tensor([[[[1.0, 1.0]]]])
        >>> clip_small_contribution(x, torch.tensor([[[[0.1, 5.0]]]]), 0.5).tolist()
        [[[[0.0, 1.0]]]]
    """
    if fraction <= 0:
        return x
    contribution = (x * grad).sum(dim=1, keepdim=True).abs()
    return x.masked_fill(_below_quantile(contribution, fraction), 0.0)


def total_variation(x: Tensor, beta: float = 2.0) -> Tensor:
    """Mahendran & Vedaldi's R_TV^beta: sum over pixels of
    ``((dx)^2 + (dy)^2)^(beta / 2)``, divided by the pixel count.

    Example:
        >>> x = torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]])
        >>> float(total_variation(x, beta=2.0))  # one unit step (top-left pixel) over four
        0.25
    """
    dx = x[..., :-1, 1:] - x[..., :-1, :-1]
    dy = x[..., 1:, :-1] - x[..., :-1, :-1]
    squared = dx**2 + dy**2
    # A tiny floor keeps the gradient finite for beta < 2 where the image is flat.
    value = squared.sum() if beta == 2.0 else (squared + 1e-8).pow(beta / 2).sum()
    return value / x[0, 0].numel()


def jitter_offsets(jitter: int, generator: torch.Generator) -> tuple[int, int]:
    """A random (dy, dx) shift in ``-jitter..jitter`` drawn from ``generator``.

    Example:
        >>> jitter_offsets(0, torch.Generator().manual_seed(0))
        (0, 0)
    """
    if jitter <= 0:
        return 0, 0
    dy, dx = torch.randint(-jitter, jitter + 1, (2,), generator=generator).tolist()
    return int(dy), int(dx)
