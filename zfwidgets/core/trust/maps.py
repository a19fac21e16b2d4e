"""One class map (H, W) per method, at image size: what the sanity checks compare.

Every method of :data:`zfwidgets.core.methods.REGISTRY` the model supports, plus occlusion.
Unit methods (deconvnet, guided backprop, saliency) are projected from the class score, as
their class versions; picture signals with colour channels are summed over the channels
(signed). Grad-CAM and CAM are upsampled to the image. Occlusion's map at a pixel is the mean
drop of the class probability over the occluder positions that cover it.

Example:
    >>> from zfwidgets import Inspector, demo
    >>> d = demo.load()
    >>> insp = Inspector(d.model)
    >>> trust_methods(insp)
    ['deconvnet', 'guided', 'saliency', 'gradcam', 'guided_gradcam', 'occlusion']
    >>> class_map(insp, d.dataset[0][0], "guided").shape
    torch.Size([28, 28])
"""

from __future__ import annotations

import torch
from torch import Tensor

from zfwidgets.core import gradcam as _gradcam
from zfwidgets.core.inspector import Inspector
from zfwidgets.core.methods import REGISTRY

__all__ = ["OCCLUSION", "check_trust_method", "class_map", "heat_map", "trust_methods"]

OCCLUSION = "occlusion"


def trust_methods(insp: Inspector) -> list[str]:
    """The methods ``insp``'s model supports, in registry order, then occlusion."""
    return [*insp.methods, OCCLUSION]


def check_trust_method(insp: Inspector, method) -> str:
    """``method`` if the model has it; else ValueError naming the allowed ones (and why not)."""
    allowed = trust_methods(insp)
    if isinstance(method, str) and method in allowed:
        return method
    if isinstance(method, str) and method in REGISTRY:
        why = REGISTRY[method].refusal(insp)
        raise ValueError(
            f"method {method!r} is not available for {type(insp.model).__name__}: {why}; "
            f"allowed methods: {', '.join(allowed)}"
        )
    raise ValueError(f"unknown method {method!r}; allowed methods: {', '.join(allowed)}")


def heat_map(method: str) -> bool:
    """True for maps whose sign means something (Grad-CAM, CAM, occlusion): ranked by value.

    Picture signals (deconvnet, guided, saliency, guided Grad-CAM) are ranked by magnitude.
    """
    return method == OCCLUSION or REGISTRY[method].heat_map


def _occlusion_map(insp: Inspector, img: Tensor, target: int, size: int | None, stride: int | None):
    from zfwidgets.core.occlusion import occlusion_sweep  # occlusion imports the inspector

    h, w = img.shape[-2:]
    # None takes the defaults; any other value (0 included) is checked by the sweep, never
    # silently replaced.
    size = max(1, round(min(h, w) / 7)) if size is None else size
    stride = max(1, size // 2) if stride is None and isinstance(size, int) else stride
    maps = occlusion_sweep(insp, img, size, stride, target=target)
    drop = (maps.base_prob - maps.target_prob.double()).to(img.device)
    total = torch.zeros((h, w), dtype=torch.float64, device=img.device)
    count = torch.zeros_like(total)
    for i, y in enumerate(maps.ys):
        for j, x0 in enumerate(maps.xs):
            total[y : y + size, x0 : x0 + size] += drop[i, j]
            count[y : y + size, x0 : x0 + size] += 1
    return (total / count.clamp(min=1)).float()


def class_map(
    insp: Inspector,
    x,
    method: str,
    target: int | None = None,
    layer: str | None = None,
    occluder: tuple[int, int] | None = None,
) -> Tensor:
    """The map (H, W) of class ``target`` (None: the predicted class) for image ``x``.

    Args:
        insp: the inspector of the model.
        x: one image (C, H, W) or (1, C, H, W).
        method: a name from :func:`trust_methods`.
        target: the class explained.
        layer: the layer of Grad-CAM and guided Grad-CAM (default the last block with maps
            larger than 1x1); CAM always uses the layer that feeds its pool.
        occluder: (size, stride) of the occlusion sweep; default a side of 1/7 of the
            image and half that as the stride.

    Raises:
        ValueError: an unknown method, or one the model lacks (naming the allowed ones).

    Example:
        >>> import torch, torch.nn as nn
        >>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3))
        >>> class_map(Inspector(net), torch.randn(1, 4, 4), "saliency", target=1).shape
        torch.Size([4, 4])
    """
    method = check_trust_method(insp, method)
    img = insp.image(x)
    target = insp.target_class(img, target)
    if method == OCCLUSION:
        size, stride = occluder if occluder is not None else (None, None)
        return _occlusion_map(insp, img, target, size, stride)
    entry = REGISTRY[method]
    if entry.kind == "unit":
        out = _gradcam.class_gradient(insp, img, target, None, method=method)
    else:
        layer = layer or insp.default_layer(tuple(img.shape[1:]))
        where = entry.where(insp, layer, img) if entry.where else layer
        out = entry.compute(insp, img, where, None, None, target)
    if out.ndim == 3:
        out = out.sum(0)
    if tuple(out.shape) != tuple(img.shape[-2:]):
        out = _gradcam.upsample(out, tuple(img.shape[-2:]))
    return out.float()
