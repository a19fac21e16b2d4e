"""The one list of visualisation methods: every widget, figure and doc reads it from here.

Each entry says what the method is called, a one-line help for tooltips, whether it explains
one unit (``"unit"``: pick a layer, a map, a position) or one class (``"class"``: pick a
target), which models it works on, and the function that computes it. A new method is one
entry here.

Example:
    >>> import torch.nn as nn
    >>> from zfwidgets.core.inspector import Inspector
    >>> insp = Inspector(nn.Sequential(nn.Conv2d(1, 2, 3), nn.SiLU(), nn.Flatten()))
    >>> [m for m in REGISTRY if m not in insp.methods]
    ['deconvnet', 'guided', 'guided_gradcam', 'cam']
    >>> REGISTRY["saliency"].kind
    'unit'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

from zfwidgets.core import cam as class_map
from zfwidgets.core import gradcam as cam
from zfwidgets.core.graph import UnsupportedModelError
from zfwidgets.core.inspector import Inspector

__all__ = ["Method", "REGISTRY", "available"]


@dataclass(frozen=True)
class Method:
    """One visualisation method.

    Attributes:
        name: the key used everywhere (``method="guided"``).
        label: a short label for buttons and figure titles.
        help: one line for tooltips and docs.
        kind: ``"unit"`` (explains one activation) or ``"class"`` (explains a class score).
        rectifier_rules: needs a rule at every nonlinearity (deconvnet, guided backprop).
        compute: ``compute(insp, x, layer, channel, position, target)``: a (C, H, W) picture
            signal for unit methods, an (H, W) or (C, H, W) map at image size for class ones.
        requires: ``requires(insp)`` says why the model cannot have the method (None: it can),
            for needs other than rectifier rules (CAM's pooling head).
        heat_map: drawn as a heat map over the input (Grad-CAM, CAM) rather than as a signed
            picture signal.
        where: for class methods, ``where(insp, layer, x)`` is the layer the map is computed
            at when ``layer`` is chosen (Grad-CAM: the chosen layer or the last with maps
            before it; CAM: always the layer that feeds the pool).
    """

    name: str
    label: str
    help: str
    kind: str
    rectifier_rules: bool
    compute: Callable[..., Tensor]
    requires: Callable[[Inspector], str | None] | None = None
    heat_map: bool = False
    where: Callable[[Inspector, str, Tensor], str] | None = None

    def refusal(self, insp: Inspector) -> str | None:
        """Why ``insp``'s model cannot have this method, or None when it can."""
        if self.rectifier_rules and (reason := insp.no_rule_reason()):
            return reason
        return self.requires(insp) if self.requires else None


def _projection(name: str) -> Callable[..., Tensor]:
    def compute(insp, x, layer, channel, position="max", target=None) -> Tensor:
        return insp.project_many(x, layer, [channel], [position], method=name)[0]

    return compute


def _gradcam(insp, x, layer, channel=None, position=None, target=None) -> Tensor:
    img = insp.image(x)
    layer = cam.cam_layer_for(insp, layer, x)
    return cam.upsample(cam.gradcam(insp, x, layer, target), tuple(img.shape[-2:]))


def _guided_gradcam(insp, x, layer, channel=None, position=None, target=None) -> Tensor:
    return cam.guided_gradcam(insp, x, cam.cam_layer_for(insp, layer, x), target)


def _cam(insp, x, layer=None, channel=None, position=None, target=None) -> Tensor:
    size = tuple(insp.image(x).shape[-2:])
    return cam.upsample(class_map.cam(insp, x, target), size)


def _pool_layer(insp: Inspector, layer: str, x) -> str:
    return class_map.cam_head(insp).features


def _pooling_head(insp: Inspector) -> str | None:
    try:
        class_map.cam_head(insp)
    except UnsupportedModelError as err:
        return str(err)
    return None


REGISTRY: dict[str, Method] = {
    m.name: m
    for m in (
        Method(
            "deconvnet",
            "deconvnet",
            "Zeiler & Fergus: unpool with the switches, rectify, transposed filters",
            "unit",
            True,
            _projection("deconvnet"),
        ),
        Method(
            "guided",
            "guided",
            "Guided backprop: the deconvnet also masked where the forward ReLU was off",
            "unit",
            True,
            _projection("guided"),
        ),
        Method(
            "saliency",
            "saliency",
            "Saliency: the plain gradient of the unit (shown as |gradient|, max over colours)",
            "unit",
            False,
            _projection("saliency"),
        ),
        Method(
            "gradcam",
            "Grad-CAM",
            "Grad-CAM: where the predicted class's evidence lies (a class map)",
            "class",
            False,
            _gradcam,
            heat_map=True,
            where=cam.cam_layer_for,
        ),
        Method(
            "guided_gradcam",
            "guided Grad-CAM",
            "Guided Grad-CAM: guided backprop of the class score times its Grad-CAM map",
            "class",
            True,
            _guided_gradcam,
            where=cam.cam_layer_for,
        ),
        Method(
            "cam",
            "CAM",
            "CAM (Zhou et al.): the class's linear weights times the maps that feed the global "
            "average pool (any layer chosen: CAM has one)",
            "class",
            False,
            _cam,
            _pooling_head,
            heat_map=True,
            where=_pool_layer,
        ),
    )
}


def available(insp: Inspector) -> list[str]:
    """The names of the methods ``insp``'s model supports, in registry order."""
    return [name for name, m in REGISTRY.items() if m.refusal(insp) is None]
