"""Class activation maps (Zhou et al., CVPR 2016): ``M_c = sum_k w_{k,c} f_k``.

For a model whose head is global average pooling then one linear layer, the class score is
``S_c = sum_k w_{k,c} mean(f_k) + b_c``, so the map ``M_c`` of the layer ``f`` that feeds the
pool says where in the image each part of the score comes from; its mean plus the bias is the
score itself. Only such heads have a CAM: any other model gets an error naming its head (and
Grad-CAM, which works on every head, as what to use instead).

Example:
    >>> import torch, torch.nn as nn
    >>> from zfwidgets import Inspector
    >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    ...                     nn.Linear(4, 2))
    >>> insp = Inspector(net)
    >>> cam_head(insp)
    CamHead(features='conv1', pool='2', linear='4')
    >>> cam(insp, torch.randn(1, 9, 9), target=1).shape      # at the resolution of conv1
    torch.Size([7, 7])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from zfwidgets.core.graph import Step, UnsupportedModelError
from zfwidgets.core.inspector import Inspector

__all__ = ["CamHead", "cam", "cam_head", "head_description"]

# Steps between the pool and the linear layer that change nothing at inference time.
_PASS_THROUGH = ("flatten", "reshape", "dropout", "identity")
_AVERAGES = ("AdaptiveAvgPool2d", "AvgPool2d", "adaptive_avg_pool2d", "avg_pool2d", "mean")


@dataclass(frozen=True)
class CamHead:
    """Where a global-average-pooling head starts and ends.

    Attributes:
        features: the block whose maps feed the pool (the CAM's layer), as a block name when
            it ends one (``layer4``), else the step name.
        pool: the global average pooling step.
        linear: the one linear layer after it.
    """

    features: str
    pool: str
    linear: str


def _before(insp: Inspector, step: Step) -> Step | None:
    return insp.steps[step.inputs[0]] if len(step.inputs) == 1 and step.inputs[0] >= 0 else None


def head_description(insp: Inspector, count: int = 8) -> str:
    """The model's last steps, input side first: ``"avgpool (AdaptiveAvgPool2d) -> fc (Linear)"``.

    Follows the first input of each step back from the output, for at most ``count`` steps.
    """
    step, names = insp.steps[-1], []
    while step is not None and len(names) < count:
        names.append(f"{step.name} ({step.source})")
        if step.kind == "conv":
            break
        step = _before(insp, step)
    return " -> ".join(reversed(names))


def _refuse(insp: Inspector, why: str) -> UnsupportedModelError:
    return UnsupportedModelError(
        f"CAM needs a head of global average pooling then one linear layer, and {why}; "
        f"{type(insp.model).__name__}'s head is {head_description(insp)}. Grad-CAM works on "
        "any head: use method='gradcam'"
    )


def cam_head(insp: Inspector) -> CamHead:
    """The model's global-average-pooling head, read from its steps.

    Raises:
        UnsupportedModelError: the head is something else (the message shows it).
    """
    linear = insp.steps[-1]
    while linear.kind in _PASS_THROUGH and _before(insp, linear) is not None:
        linear = _before(insp, linear)
    if linear.kind != "linear":
        raise _refuse(insp, f"its last layer is {linear.name} ({linear.source}), not linear")
    pool = _before(insp, linear)
    while pool is not None and pool.kind in _PASS_THROUGH:
        pool = _before(insp, pool)
    if pool is None or pool.source not in _AVERAGES:
        found = "nothing" if pool is None else f"{pool.name} ({pool.source})"
        raise _refuse(insp, f"{linear.name} is fed by {found}, not an average pool")
    features = _before(insp, pool)
    if features is None:
        raise _refuse(insp, f"{pool.name} reads the input image directly")
    return CamHead(insp.short_name(features.name), pool.name, linear.name)


def cam(insp: Inspector, x, target: int | None = None) -> Tensor:
    """The class activation map ``sum_k w_{k,target} f_k`` (h, w) of one image, signed.

    ``target=None`` takes the predicted class. The map is at the resolution of the layer that
    feeds the pool (:func:`cam_head`); its mean plus the linear layer's bias is the class score.

    Raises:
        UnsupportedModelError: the model's head is not global average pooling then one linear
            layer, or the pool does not average over the whole map for this image size.
    """
    head = cam_head(insp)
    target = insp.target_class(x, target)
    rec = insp.record(x, [insp.layer_name(head.features), head.pool])
    maps = rec.outputs[insp.layer_index(head.features)][0]
    pooled = rec.outputs[insp.layer_index(head.pool)][0].flatten()
    if maps.ndim != 3 or not torch.allclose(
        pooled, maps.mean(dim=(1, 2)), rtol=1e-4, atol=1e-5 * float(maps.abs().max()) + 1e-7
    ):
        raise _refuse(
            insp,
            f"for images of shape {tuple(insp.image(x).shape[1:])} {head.pool} does not average "
            "each whole feature map to one value",
        )
    weight = insp.current_weights()[insp.layer_index(head.linear)]["weight"]
    return torch.einsum("k,khw->hw", weight[target], maps)
