"""Feature invariance (paper Fig. 5): how features and the output move as the image moves.

For each image and each amount of a transformation (vertical translation in pixels, scale
factor, rotation in degrees) we measure the Euclidean distance between the feature vectors of
the original and the transformed image at chosen layers (by default the first conv layer and
the penultimate fully connected one, the paper's layers 1 and 7), and the probability of the
true class. Transformed images are filled with ``fill`` where the original has no pixels.

Example:
    >>> curves = invariance_curves(insp, imgs, labels, "rotate", [-30, 0, 30])  # doctest: +SKIP
    >>> curves.distances["conv1"].shape   # (images, amounts)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torchvision.transforms.v2.functional as TF
from torch import Tensor

from zfwidgets.core.inspector import Inspector

__all__ = ["TRANSFORMS", "InvarianceCurves", "default_layers", "invariance_curves", "transform"]

TRANSFORMS = ("translate", "scale", "rotate")


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
    if kind not in TRANSFORMS:
        raise ValueError(f"unknown transformation {kind!r}; choose one of {', '.join(TRANSFORMS)}")
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
    """The paper's layers 1 and 7: the first conv layer and the penultimate linear layer."""
    convs = [a for a in insp.aliases if a.startswith("conv")]
    fcs = [a for a in insp.aliases if a.startswith("fc")]
    layers = convs[:1] + (fcs[-2:-1] if len(fcs) >= 2 else fcs[-1:])
    if not layers:
        raise ValueError("the model has no conv or linear layer to measure")
    return layers


def invariance_curves(
    insp: Inspector,
    images: Sequence[Tensor] | Tensor,
    labels: Sequence[int],
    kind: str,
    amounts: Sequence[float],
    layers: Sequence[str] | None = None,
    fill: float = 0.0,
) -> InvarianceCurves:
    """Feature distances and true-class probability for every image and amount."""
    amounts = [float(a) for a in amounts]
    if not amounts:
        raise ValueError("amounts is empty: give at least one transformation amount")
    if len(images) != len(labels):
        raise ValueError(f"got {len(images)} images but {len(labels)} labels")
    layers = list(layers) if layers is not None else default_layers(insp)
    names = [insp.layer_name(layer) for layer in layers] + [insp.layers[-1]]
    batch = torch.cat([insp.image(img) for img in images])
    originals = insp.run_batch(batch, names)
    distances = {layer: torch.zeros(len(batch), len(amounts)) for layer in layers}
    true_prob = torch.zeros(len(batch), len(amounts))
    label_index = torch.as_tensor(list(labels), device=insp.device)
    for j, amount in enumerate(amounts):
        moved = insp.run_batch(transform(batch, kind, amount, fill), names)
        for layer, name in zip(layers, names, strict=False):
            diff = (moved[name] - originals[name]).flatten(1)
            distances[layer][:, j] = diff.norm(dim=1).cpu()
        probs = torch.softmax(moved[names[-1]], dim=1)
        true_prob[:, j] = probs.gather(1, label_index[:, None])[:, 0].cpu()
    return InvarianceCurves(kind, amounts, distances, true_prob)
