"""Models by name, for the command line and notebooks: the demo, our own nets, torchvision's.

``demo`` is the trained :class:`~zfwidgets.zoo.SmallZFNet`; ``photos`` is
:class:`~zfwidgets.zoo.EfficientNetLite0` with its ImageNet weights (from the ``imagenet`` extra,
offline); ``small_zfnet``, ``small_krizhevsky``, ``small_resnet``, ``zfnet``, ``krizhevsky`` and
``efficientnet_lite0`` are our architectures freshly initialised (digits-sized 1x28x28 for the
small ones, 3x224x224 for the others); the rest are torchvision's.

Example:
    >>> model, input_shape = get_model("demo")
    >>> input_shape
    (1, 28, 28)
    >>> get_model("small_krizhevsky")[1]
    (1, 28, 28)
    >>> model, input_shape = get_model("photos")
    >>> type(model).__name__, input_shape
    ('EfficientNetLite0', (3, 224, 224))
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import torchvision
from torch import nn

from zfwidgets.core.preprocess import IMAGENET, Preprocessing
from zfwidgets.zoo.efficientnet_lite import EfficientNetLite0, load_efficientnet_lite0
from zfwidgets.zoo.residual import SmallResNet
from zfwidgets.zoo.small import SmallKrizhevskyNet, SmallZFNet
from zfwidgets.zoo.zfnet import KrizhevskyNet, ZFNet

__all__ = ["MODEL_NAMES", "cached_weights", "get_model", "preprocessing_for"]

# Every torchvision classification model: chains (AlexNet, VGG) and graphs (ResNet, DenseNet...).
_TORCHVISION = tuple(torchvision.models.list_models(module=torchvision.models))
# Our own architectures: (builder, input shape). They have no published weights.
_ZOO: dict[str, tuple[Callable[[], nn.Module], tuple[int, int, int]]] = {
    "small_zfnet": (SmallZFNet, (1, 28, 28)),
    "small_krizhevsky": (SmallKrizhevskyNet, (1, 28, 28)),
    "small_resnet": (SmallResNet, (1, 28, 28)),
    "zfnet": (ZFNet, (3, 224, 224)),
    "krizhevsky": (KrizhevskyNet, (3, 224, 224)),
    "efficientnet_lite0": (EfficientNetLite0, (3, 224, 224)),
}
MODEL_NAMES = ("demo", "photos", *_ZOO, *_TORCHVISION)


def get_model(
    name: str, pretrained: bool = False, download: bool = True
) -> tuple[nn.Module, tuple[int, int, int]]:
    """The model called ``name`` in eval mode and its input shape (C, H, W).

    ``pretrained`` loads torchvision's ImageNet weights; they come from the network, so when
    they cannot be had the model keeps random weights and a warning says so. Our own
    architectures have no pretrained weights (train them, or use ``"demo"``); ``"photos"`` is
    EfficientNet-Lite0 with the ImageNet weights the ``imagenet`` extra installs (offline;
    without the extra a ``ModuleNotFoundError`` says what to install). ``download=False`` takes
    torchvision's weights only from the local cache (:func:`cached_weights`), never the network:
    for notebooks and tests that must run offline.
    """
    if name == "demo":
        from zfwidgets import demo

        return demo.load().model, (1, 28, 28)
    if name == "photos":
        return load_efficientnet_lite0(), (3, 224, 224)
    if name in _ZOO:
        if pretrained:
            raise ValueError(
                f"{name!r} has no pretrained weights; use 'demo' for the trained small ZF net, "
                "'photos' for EfficientNet-Lite0 with ImageNet weights, or train one "
                "(zfwidgets.train)"
            )
        builder, shape = _ZOO[name]
        return builder().eval(), shape
    if name not in _TORCHVISION:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    builder = getattr(torchvision.models, name)
    shape = _input_shape(name)
    if not pretrained:
        return builder().eval(), shape
    if not download and cached_weights(name) is None:
        warnings.warn(
            f"ImageNet weights for {name} are not in the local cache ({_hub_checkpoints()}); "
            "using random weights (nothing is downloaded)",
            stacklevel=2,
        )
        return builder().eval(), shape
    try:
        weights = torchvision.models.get_model_weights(name).DEFAULT
        return builder(weights=weights).eval(), shape
    except Exception as err:  # offline: urllib/OSError/RuntimeError depending on the failure
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:120]
        warnings.warn(
            f"could not load ImageNet weights for {name} (offline? {type(err).__name__}: "
            f"{reason}); using random weights",
            stacklevel=2,
        )
        return builder().eval(), shape


def cached_weights(name: str) -> Path | None:
    """The file of torchvision's DEFAULT weights for ``name`` when it is already in the local
    cache (``torch.hub.get_dir()/checkpoints``), else None; never downloads.

    Example:
        >>> cached_weights("not_a_model") is None
        True
    """
    if name not in _TORCHVISION:
        return None
    url = torchvision.models.get_model_weights(name).DEFAULT.url
    path = _hub_checkpoints() / Path(urlparse(url).path).name
    return path if path.is_file() else None


def _hub_checkpoints() -> Path:
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def preprocessing_for(name: str) -> Preprocessing:
    """How pictures become the inputs of the model called ``name``: torchvision's
    ``weights.transforms()`` for its models (metadata only, nothing is downloaded), the demos'
    own, and ImageNet's for our 224-pixel architectures (grey 28x28 in [0, 1] for the small ones).

    Example:
        >>> preprocessing_for("resnet18").resize, preprocessing_for("resnet18").size
        (256, (224, 224))
        >>> preprocessing_for("demo").size
        (28, 28)
    """
    if name == "demo":
        from zfwidgets import demo

        return demo.load().preprocessing
    if name == "photos":
        from zfwidgets.zoo.photos import MEAN, SIDE, STD

        return Preprocessing(
            mean=(MEAN,) * 3,
            std=(STD,) * 3,
            size=(SIDE, SIDE),
            resize=SIDE,
            interpolation="bicubic",
        )
    if name in _ZOO:
        channels, height, width = _ZOO[name][1]
        if channels == 1:
            return Preprocessing(mean=(0.0,), std=(1.0,), size=(height, width), channels=1)
        return IMAGENET
    if name not in _TORCHVISION:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    weights = torchvision.models.get_model_weights(name).DEFAULT
    return Preprocessing.from_transforms(weights.transforms())


def _input_shape(name: str) -> tuple[int, int, int]:
    """The input a torchvision model's weights were made for (Inception v3: 299), from their
    metadata (nothing is downloaded)."""
    weights = torchvision.models.get_model_weights(name).DEFAULT
    crop = getattr(weights.transforms, "keywords", {}).get("crop_size", 224)
    side = crop[0] if isinstance(crop, list | tuple) else crop
    return (3, int(side), int(side))
