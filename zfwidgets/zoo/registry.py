"""Models by name, for the command line and notebooks: the demo, our ZF nets, torchvision's.

Example:
    >>> model, input_shape = get_model("demo")
    >>> input_shape
    (1, 28, 28)
"""

from __future__ import annotations

import warnings

import torchvision
from torch import nn

__all__ = ["get_model", "MODEL_NAMES"]

_TORCHVISION = ("alexnet", "vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg16_bn")
MODEL_NAMES = ("demo", *_TORCHVISION)


def get_model(name: str, pretrained: bool = False) -> tuple[nn.Module, tuple[int, int, int]]:
    """The model called ``name`` in eval mode and its input shape (C, H, W).

    ``pretrained`` loads torchvision's ImageNet weights; they come from the network, so when
    they cannot be had the model keeps random weights and a warning says so.
    """
    if name == "demo":
        from zfwidgets import demo

        return demo.load().model, (1, 28, 28)
    if name not in _TORCHVISION:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    builder = getattr(torchvision.models, name)
    if not pretrained:
        return builder().eval(), (3, 224, 224)
    try:
        weights = torchvision.models.get_model_weights(name).DEFAULT
        return builder(weights=weights).eval(), (3, 224, 224)
    except Exception as err:  # offline: urllib/OSError/RuntimeError depending on the failure
        warnings.warn(
            f"could not load ImageNet weights for {name} ({type(err).__name__}: {err}); "
            "continuing with random weights",
            stacklevel=2,
        )
        return builder().eval(), (3, 224, 224)
