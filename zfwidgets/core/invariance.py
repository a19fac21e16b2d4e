"""Feature invariance (paper Fig. 5): how features and the output move as the image moves.

For each image and each amount of a transformation (vertical translation in pixels, scale
factor, rotation in degrees) we measure the Euclidean distance between the feature vectors of
the original and the transformed image at chosen layers (by default the first conv layer and
the penultimate fully connected one, the paper's layers 1 and 7), and the probability of the
true class. Transformed images are filled with ``fill`` where the original has no pixels.

Ranges are configurable: :func:`amounts` spaces ``steps`` amounts evenly between two ends (and
always includes the identity when it lies inside them); :func:`default_amounts` gives the
ranges used by the widget and the figures (the paper's Fig. 5 swept translations of about a
quarter of the image, scales up to 1.8 and a full turn).

Example:
    >>> from zfwidgets import Inspector, demo
    >>> d = demo.load()
    >>> insp = Inspector(d.model, device="cpu")
    >>> images = [d.dataset[i][0] for i in range(3)]
    >>> labels = [d.dataset[i][1] for i in range(3)]
    >>> curves = invariance_curves(insp, images, labels, "rotate", amounts("rotate", -30, 30, 5))
    >>> curves.amounts
    [-30.0, -15.0, 0.0, 15.0, 30.0]
    >>> curves.distances["conv1"].shape   # (images, amounts)
    torch.Size([3, 5])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torchvision.transforms.v2.functional as TF
from torch import Tensor

from zfwidgets.core.checks import as_int
from zfwidgets.core.inspector import Inspector

__all__ = [
    "IDENTITY",
    "TRANSFORMS",
    "UNITS",
    "InvarianceCancelled",
    "InvarianceCurves",
    "amounts",
    "default_amounts",
    "default_layers",
    "invariance_curves",
    "transform",
]

TRANSFORMS = ("translate", "scale", "rotate")
IDENTITY = {"translate": 0.0, "scale": 1.0, "rotate": 0.0}
MAX_STEPS = 10_000  # amounts per sweep: far more than a curve can show
UNITS = {"translate": "pixels down", "scale": "scale factor", "rotate": "degrees"}


class InvarianceCancelled(RuntimeError):
    """Raised when ``should_stop()`` asked :func:`invariance_curves` to stop."""


def _check_kind(kind: str) -> None:
    if kind not in TRANSFORMS:
        raise ValueError(f"unknown transformation {kind!r}; choose one of {', '.join(TRANSFORMS)}")


def amounts(kind: str, start: float, stop: float, steps: int) -> list[float]:
    """``steps`` evenly spaced amounts from ``start`` to ``stop`` (both included).

    The identity (0, or a scale of 1) is added when it lies strictly inside the range and is not
    already one of the amounts, so that every curve passes through the untouched image.

    Example:
        >>> amounts("scale", 0.5, 1.5, 3), amounts("translate", -4, 4, 4)
        ([0.5, 1.0, 1.5], [-4.0, -1.3333333333333335, 0.0, 1.3333333333333335, 4.0])
    """
    _check_kind(kind)
    steps = as_int(steps)
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
        # a cap: a curve is drawn point by point, and 10**9 points would exhaust memory
        raise ValueError(f"steps must be a positive int; got {steps!r}: give 1..{MAX_STEPS}")
    start, stop = float(start), float(stop)
    if not (math.isfinite(start) and math.isfinite(stop)):
        raise ValueError(f"start and stop must be finite numbers; got {start} and {stop}")
    if kind == "scale" and min(start, stop) <= 0:
        raise ValueError(f"scale factors must be positive; got the range {start}..{stop}")
    values = torch.linspace(start, stop, steps, dtype=torch.float64).tolist() if steps > 1 else []
    values = values or [start]
    identity = IDENTITY[kind]
    close = [i for i, v in enumerate(values) if abs(v - identity) < 1e-9]
    if close:
        values[close[0]] = identity  # exactly the identity, not 1.0000000000000002
    elif min(start, stop) < identity < max(start, stop):
        values = sorted(values + [identity], reverse=start > stop)
    return values


def default_amounts(kind: str, image_size: int, steps: int = 13) -> list[float]:
    """The sweep used by the widget and the figures for images ``image_size`` pixels high.

    translate: -size/4..size/4 pixels (the paper: -60..60 on 224-pixel images); scale:
    0.6..1.8; rotate: -180..180 degrees (a full turn).
    """
    _check_kind(kind)
    if kind == "translate":
        reach = max(1, round(image_size / 4))
        return amounts(kind, -reach, reach, steps)
    if kind == "scale":
        return amounts(kind, 0.6, 1.8, steps)
    return amounts(kind, -180, 180, steps)


@dataclass(frozen=True)
class InvarianceCurves:
    """Curves for one transformation.

    Attributes:
        kind: translate, scale or rotate.
        amounts: the transformation amounts (pixels, factor, degrees).
        distances: layer -> (images, amounts) Euclidean feature distances to the original.
        true_prob: (images, amounts) probability of each image's true class.
    """

    kind: str
    amounts: list[float]
    distances: dict[str, Tensor]
    true_prob: Tensor


def transform(x: Tensor, kind: str, amount: float, fill: float = 0.0) -> Tensor:
    """Image(s) ``x`` (..., C, H, W) translated down by ``amount`` pixels, scaled by
    ``amount`` about the centre, or rotated by ``amount`` degrees (bilinear)."""
    _check_kind(kind)
    if kind == "scale" and amount <= 0:
        raise ValueError(f"scale factors must be positive; got {amount}")
    if float(amount) == IDENTITY[kind]:
        return x.clone()  # exactly the original: resampling at the identity still blurs a little
    angle, shift, scale = 0.0, [0.0, 0.0], 1.0
    if kind == "translate":
        shift = [0.0, float(amount)]
    elif kind == "scale":
        if amount <= 0:
            raise ValueError(f"scale factors must be positive; got {amount}")
        scale = float(amount)
    else:
        angle = float(amount)
    return TF.affine(
        x,
        angle=angle,
        translate=shift,
        scale=scale,
        shear=[0.0, 0.0],
        interpolation=TF.InterpolationMode.BILINEAR,
        fill=[fill] * x.shape[-3],
    )


def default_layers(insp: Inspector) -> list[str]:
    """The paper's layers 1 and 7: the first conv layer and the penultimate linear layer.

    On a graph: its first block and the block before the class scores (ResNet's avgpool).
    """
    if not insp.graph.is_chain:
        return [insp.blocks[0], insp.blocks[-2]] if len(insp.blocks) > 2 else insp.blocks[:1]
    convs = [a for a in insp.aliases if a.startswith("conv")]
    fcs = [a for a in insp.aliases if a.startswith("fc")]
    layers = convs[:1] + (fcs[-2:-1] if len(fcs) >= 2 else fcs[-1:])
    if not layers:
        raise ValueError("the model has no conv or linear layer to measure")
    return layers


def invariance_curves(
    insp: Inspector,
    images: Sequence[Tensor] | Tensor,
    labels: Sequence[int] | None,
    kind: str,
    amounts: Sequence[float],
    layers: Sequence[str] | None = None,
    fill: float = 0.0,
    callback: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> InvarianceCurves:
    """Feature distances and true-class probability for every image and amount.

    Args:
        insp: the Inspector of the model.
        images: images (C, H, W) of one shape, or a tensor (N, C, H, W).
        labels: each image's true class; None takes the class predicted for the untouched
            image (then the curve shows how sure the model stays of its own answer).
        kind: ``"translate"`` (vertical, pixels down), ``"scale"`` (factor) or ``"rotate"``
            (degrees).
        amounts: the transformation amounts, e.g. from :func:`amounts`.
        layers: the layers whose feature vectors are compared; default :func:`default_layers`.
        fill: the value of pixels the transformed image has no data for (0: the mean).
        callback: ``callback(done, total)`` after each amount.
        should_stop: returning True cancels (raises :class:`InvarianceCancelled`).
    """
    _check_kind(kind)
    amounts = [float(a) for a in amounts]
    if not amounts:
        raise ValueError("amounts is empty: give at least one transformation amount")
    if not all(math.isfinite(a) for a in amounts):
        raise ValueError(
            f"amounts must be finite numbers; got {amounts}: give {kind} amounts such as "
            f"{default_amounts(kind, 28, 3)}"
        )
    if len(images) == 0:
        raise ValueError("images is empty: give at least one image")
    if labels is not None and len(images) != len(labels):
        raise ValueError(
            f"got {len(images)} images but {len(labels)} labels: give one label per image, "
            "or labels=None for the predicted classes"
        )
    layers = list(layers) if layers is not None else default_layers(insp)
    names = [insp.layer_name(layer) for layer in layers] + [insp.layers[-1]]
    prepared = [insp.image(img) for img in images]
    shapes = sorted({tuple(p.shape[1:]) for p in prepared})
    if len(shapes) > 1:
        raise ValueError(
            f"images must all have one shape; got {', '.join(map(str, shapes))}: resize or "
            "crop them to one size, or compare each size separately"
        )
    batch = torch.cat(prepared)
    originals = insp.run_batch(batch, names)
    if labels is None:
        labels = originals[names[-1]].argmax(dim=1).tolist()
    classes = originals[names[-1]].shape[1]
    bad = [int(c) for c in labels if not 0 <= int(c) < classes]
    if bad:
        raise ValueError(f"labels {bad} are out of range: the model has classes 0..{classes - 1}")
    distances = {layer: torch.zeros(len(batch), len(amounts)) for layer in layers}
    true_prob = torch.zeros(len(batch), len(amounts))
    label_index = torch.as_tensor([int(c) for c in labels], device=insp.device)
    for j, amount in enumerate(amounts):
        if should_stop is not None and should_stop():
            raise InvarianceCancelled(f"stopped after {j} of {len(amounts)} amounts")
        moved = insp.run_batch(transform(batch, kind, amount, fill), names)
        for layer, name in zip(layers, names, strict=False):
            diff = (moved[name] - originals[name]).flatten(1)
            distances[layer][:, j] = diff.norm(dim=1).cpu()
        probs = torch.softmax(moved[names[-1]], dim=1)
        true_prob[:, j] = probs.gather(1, label_index[:, None])[:, 0].cpu()
        if callback is not None:
            callback(j + 1, len(amounts))
    return InvarianceCurves(kind, amounts, distances, true_prob)
