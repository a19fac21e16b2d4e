"""Does a class picture show its class, or only fool the exact image? The robust class
probability: the mean softmax probability of the class over random views of the picture.

The views are torchvision's ``RandomResizedCrop(size, scale=(0.5, 1.0))``,
``RandomRotation(10)`` and ``RandomHorizontalFlip()``, drawn from a seeded local generator
(torch's global RNG untouched) and made with ``torchvision.transforms.v2.functional`` on the
picture's pixels; the model runs through the Inspector's weight copies.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

from zfwidgets.core.checks import as_int, check_class

if TYPE_CHECKING:
    from zfwidgets.core.inspector import Inspector

__all__ = ["random_view", "robustness", "view_params"]

_RATIO = (3 / 4, 4 / 3)


def view_params(
    h: int, w: int, generator: torch.Generator, scale=(0.5, 1.0), degrees: float = 10.0
) -> tuple[tuple[int, int, int, int], float, bool]:
    """One view's random draws: the crop (top, left, height, width) as torchvision's
    RandomResizedCrop draws it, the rotation angle, whether to flip.

    Example:
        >>> (top, left, ch, cw), angle, flip = view_params(224, 224, torch.Generator())
        >>> 0 < ch <= 224 and 0 < cw <= 224 and -10 <= angle <= 10
        True
    """

    def uniform(low: float, high: float) -> float:
        return low + (high - low) * float(torch.rand(1, generator=generator))

    crop = None
    area = h * w
    for _ in range(10):
        target = area * uniform(*scale)
        ratio = math.exp(uniform(math.log(_RATIO[0]), math.log(_RATIO[1])))
        cw, ch = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
        if 0 < cw <= w and 0 < ch <= h:
            top = int(torch.randint(0, h - ch + 1, (1,), generator=generator))
            left = int(torch.randint(0, w - cw + 1, (1,), generator=generator))
            crop = (top, left, ch, cw)
            break
    if crop is None:  # torchvision's fallback: the central crop, its ratio within bounds
        cw, ch = w, h
        if w / h < _RATIO[0]:
            ch = round(w / _RATIO[0])
        elif w / h > _RATIO[1]:
            cw = round(h * _RATIO[1])
        crop = ((h - ch) // 2, (w - cw) // 2, ch, cw)
    angle = uniform(-degrees, degrees)
    flip = bool(torch.rand(1, generator=generator) < 0.5)
    return crop, angle, flip


def random_view(
    image: Tensor, size: tuple[int, int], generator: torch.Generator, fill: float = 0.0
) -> Tensor:
    """One random view ``(C, *size)`` of ``image`` (C, H, W): resized crop, rotation, flip.

    Example:
        >>> tuple(random_view(torch.rand(3, 40, 40), (32, 32), torch.Generator()).shape)
        (3, 32, 32)
    """
    (top, left, ch, cw), angle, flip = view_params(*image.shape[-2:], generator)
    view = TF.resized_crop(image, top, left, ch, cw, list(size), antialias=True)
    view = TF.rotate(view, angle, fill=fill)
    return TF.horizontal_flip(view) if flip else view


def robustness(
    insp: Inspector,
    images: Tensor,
    target: int,
    views: int = 32,
    seed: int = 0,
    preprocessing: Any = None,
    size: tuple[int, int] | int | None = None,
) -> Tensor:
    """The mean softmax probability of ``target`` over ``views`` random views of each image.

    Args:
        insp: the inspector of a classifier (its output: class scores (N, classes)).
        images: model inputs (N, C, H, W) or (C, H, W).
        target: the class.
        views: random views per image (the same views for every image).
        seed: seeds the local generator of the views.
        preprocessing: a :class:`~zfwidgets.core.preprocess.Preprocessing`: the views are made
            of the pixels (``to_pixels``, rotation corners black) and normalised again; None:
            made of the model inputs directly (corners 0, the mean colour).
        size: the views' (H, W) (RandomResizedCrop's size); None: the images' own size.

    Returns:
        (N,) the robust class probability of each image.

    Example:
        >>> import torch.nn as nn
        >>> from zfwidgets import Inspector
        >>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 6 * 6, 4))
        >>> p = robustness(Inspector(net, device="cpu"), torch.zeros(2, 1, 8, 8), 1, views=4)
        >>> tuple(p.shape), bool(((p >= 0) & (p <= 1)).all())
        ((2,), True)
    """
    views = as_int(views)
    if isinstance(views, bool) or not isinstance(views, int) or not 1 <= views <= 10_000:
        raise ValueError(f"views must be an int in 1..10000; got {views!r}")
    seed = as_int(seed)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an int >= 0; got {seed!r}")
    images = torch.as_tensor(images, dtype=torch.float32).detach().cpu()
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W) or (C, H, W); got {tuple(images.shape)}")
    if not torch.isfinite(images).all():
        raise ValueError("images must be finite (no NaN or inf)")
    h, w = images.shape[-2:]
    size = (h, w) if size is None else (size, size) if isinstance(size, int) else tuple(size)
    out = insp.shapes(tuple(images.shape[1:]))[-1]
    if len(out) != 2:
        raise ValueError(f"robustness needs a model whose output is class scores (N, classes); "
                         f"this model's output has shape {tuple(out)}")  # fmt: skip
    target = check_class(target, out[-1])
    last = insp.layers[-1]
    result = []
    for image in images:
        pixels = image if preprocessing is None else preprocessing.to_pixels(image)
        generator = torch.Generator().manual_seed(seed)
        batch = torch.stack([random_view(pixels, size, generator) for _ in range(views)])
        if preprocessing is not None:
            batch = preprocessing.normalise(batch)
        logits = insp.run_batch(batch, [last])[last]
        result.append(torch.softmax(logits.float(), dim=-1)[:, target].mean().cpu())
    return torch.stack(result)
