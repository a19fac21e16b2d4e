"""Class-driven methods on the same recorded forward pass: Grad-CAM and guided Grad-CAM.

From the lecture (Selvaraju et al.): for class c and a conv layer with maps A_k,
``alpha_k = mean over positions of dS_c/dA_k`` and ``M = ReLU(sum_k alpha_k A_k)``.
Guided Grad-CAM multiplies guided backprop of ``S_c`` by ``M`` upsampled to the image.
Both reuse the inspector's cached record: no extra forward pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from zfwidgets.core.inspector import Inspector, Position

__all__ = [
    "cam_layer_for",
    "class_gradient",
    "compare",
    "gradcam",
    "guided_gradcam",
]


def class_gradient(
    insp: Inspector, x, target: int | None, layer: str | None = None, method: str = "saliency"
) -> Tensor:
    """d(score of ``target``)/d(output of ``layer``) for one image (pixels when ``layer`` is None).

    ``target=None`` takes the predicted class. ``method="guided"`` gives guided backprop.
    """
    target = insp.target_class(x, target)
    stop = -1 if layer is None else insp.layer_index(layer)
    rec = insp.record(x, [] if layer is None else [insp.layer_name(layer)])
    last = len(insp.steps) - 1
    top = torch.zeros_like(rec.outputs[last])
    top[0, target] = 1.0
    return insp.pass_down(rec, top, last, method, stop)[0]


def gradcam(insp: Inspector, x, layer: str, target: int | None = None) -> Tensor:
    """Grad-CAM map (H, W) at ``layer``'s resolution (non-negative)."""
    img = insp.image(x)
    if not _has_maps(insp, img, insp.layer_index(layer)):
        maps = insp.map_layers(tuple(img.shape[1:]))
        raise ValueError(
            f"Grad-CAM needs a layer with feature maps; '{layer}' has none (fully connected): "
            f"give one of {', '.join(maps[-4:])} (Inspector.map_layers lists them all)"
        )
    grads = class_gradient(insp, x, target, layer)
    acts = insp.activations(x, layer)
    alpha = grads.mean(dim=(1, 2))
    return torch.relu((alpha[:, None, None] * acts).sum(0))


def upsample(cam: Tensor, size: tuple[int, int]) -> Tensor:
    """A (h, w) map bilinearly resized to ``size``."""
    return F.interpolate(cam[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]


def guided_gradcam(insp: Inspector, x, layer: str, target: int | None = None) -> Tensor:
    """Guided backprop of the class score times the upsampled Grad-CAM map: (C, H, W)."""
    img = insp.image(x)
    cam = upsample(gradcam(insp, x, layer, target), tuple(img.shape[-2:]))
    return class_gradient(insp, x, target, None, method="guided") * cam


def compare(
    insp: Inspector,
    x,
    layer: str,
    channel: int,
    position: Position = "max",
    target: int | None = None,
    cam_layer: str | None = None,
) -> dict[str, Tensor]:
    """Every method the model supports, for one image: the unit's projections (deconvnet,
    guided, saliency) and the class's maps (Grad-CAM upsampled to the image, guided Grad-CAM).

    ``cam_layer`` defaults to ``layer`` when it has feature maps, else the last block with maps.
    """
    from zfwidgets.core.methods import REGISTRY  # the registry builds on this module

    cam_layer = cam_layer or cam_layer_for(insp, layer, x)
    out = {}
    for name in insp.methods:
        where = layer if REGISTRY[name].kind == "unit" else cam_layer
        out[name] = REGISTRY[name].compute(insp, x, where, channel, position, target)
    return out


def _has_maps(insp: Inspector, img: Tensor, index: int) -> bool:
    shape = insp.shapes(tuple(img.shape[1:]))[index]
    return isinstance(shape, torch.Size) and len(shape) == 4


def cam_layer_for(insp: Inspector, layer: str, x) -> str:
    """``layer`` itself when it has feature maps, else the last block before it with maps
    larger than 1x1, for images shaped like ``x``."""
    index = insp.layer_index(layer)
    shape = tuple(insp.image(x).shape[1:])
    if _has_maps(insp, torch.empty(1, *shape), index):
        return insp.steps[index].name
    maps = [b for b in insp.spatial_layers(shape) if insp.layer_index(b) <= index]
    if not maps:
        raise ValueError(f"no layer with feature maps at or before '{layer}' for Grad-CAM")
    return maps[-1]
