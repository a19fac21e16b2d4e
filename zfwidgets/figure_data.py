"""The models and images :mod:`zfwidgets.figures` draws from: the demo digits, photos, folders.

Example:
    >>> fd = load_figure_data("demo", limit=20)
    >>> fd.name, tuple(fd.images.shape), fd.classes[:3]
    ('demo', (20, 1, 28, 28), ['0', '1', '2'])

``photos`` is the real-photo demo (:func:`zfwidgets.demo.photos`): EfficientNet-Lite0 on the
five labelled photos followed by their probe crops:

    >>> fd = load_figure_data("photos", limit=40)
    >>> tuple(fd.images.shape), fd.classes[int(fd.labels[0])], fd.notes[0][:40]
    ((40, 3, 224, 224), 'tiger cat', 'images 0-4: the photos (chelsea, coffee,')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from zfwidgets.core import Inspector

__all__ = ["FigureData", "load_figure_data", "shape_is_imagenet"]


@dataclass
class FigureData:
    """A model with the images the figures are made from.

    Attributes:
        name: the model's name (``demo``, ``alexnet``...).
        model: the model (never modified).
        images: (N, C, H, W) model inputs.
        labels: (N,) true classes.
        classes: class names.
        mean: the mean image subtracted from the inputs (for display), or None.
        run: the model's training run (``demo.snapshots()``), or None.
        train: a training set for the architecture comparison (the demo's), or None.
    """

    name: str
    model: nn.Module
    images: Tensor
    labels: Tensor
    classes: list[str]
    mean: Tensor | None = None
    run: Any = None
    train: Any = None
    notes: list[str] = field(default_factory=list)


def load_figure_data(model: str = "demo", data: str | None = None, limit: int = 1000) -> FigureData:
    """The model called ``model`` (a :func:`~zfwidgets.zoo.registry.get_model` name) with images.

    ``data``: ``None`` picks the demo digits for 28-pixel models and scikit-image's photos for
    ImageNet models; ``"demo"``, ``"photos"`` or a folder of class folders of pictures
    (torchvision ``ImageFolder``) choose explicitly. At most ``limit`` images are used.
    """
    from zfwidgets import demo
    from zfwidgets.zoo.registry import get_model

    if model == "photos":
        if data not in (None, "photos"):
            raise ValueError(f"the photos model comes with its own photos; got data={data!r}")
        return _photo_demo(limit)
    if model == "demo":
        d = demo.load()
        net, shape = d.model, (1, 28, 28)
    else:
        net, shape = get_model(model, pretrained=shape_is_imagenet(model))
        d = None
    data = data or ("demo" if shape[-1] == 28 else "photos")
    if data == "demo":
        d = d or demo.load()
        if shape[0] != 1 or shape[-1] != 28:
            raise ValueError(f"the demo digits are (1, 28, 28) but {model} takes {shape}")
        # Evenly spread over the held-out split (sorted by class): every class is present.
        picks = torch.linspace(0, len(d.dataset) - 1, min(limit, len(d.dataset))).long()
        return FigureData(
            model,
            net,
            d.dataset.images[picks],
            d.dataset.labels[picks],
            d.classes,
            d.mean,
            run=demo.snapshots() if model == "demo" else None,
            train=d.train,
        )
    if data == "photos":
        return _photos(model, net, shape, limit)
    return _image_folder(model, net, shape, Path(data), limit)


def shape_is_imagenet(model: str) -> bool:
    """True for torchvision's ImageNet models (they are loaded with their pretrained weights).

    Example:
        >>> shape_is_imagenet("alexnet"), shape_is_imagenet("demo")
        (True, False)
    """
    from zfwidgets.zoo.registry import MODEL_NAMES

    return model in MODEL_NAMES and model.startswith(("alexnet", "vgg"))


def _imagenet_names(model: str, count: int) -> list[str]:
    import torchvision

    try:
        names = list(torchvision.models.get_model_weights(model).DEFAULT.meta["categories"])
    except (ValueError, KeyError, AttributeError):
        names = []
    return names if len(names) == count else [str(i) for i in range(count)]


_IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
_IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225])[:, None, None]


def _prepare(picture: np.ndarray, shape: tuple[int, ...]) -> Tensor:
    """An RGB uint8 picture resized and centre-cropped to ``shape``, ImageNet-normalised."""
    channels, size = shape[0], shape[-1]
    img = Image.fromarray(picture).convert("RGB" if channels == 3 else "L")
    scale = size / min(img.size)
    img = img.resize((max(size, round(img.width * scale)), max(size, round(img.height * scale))))
    left, top = (img.width - size) // 2, (img.height - size) // 2
    img = img.crop((left, top, left + size, top + size))
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0)
    x = x.permute(2, 0, 1) if x.ndim == 3 else x[None]
    if channels == 3:
        x = (x - _IMAGENET_MEAN) / _IMAGENET_STD
    return x


def _photos(model: str, net: nn.Module, shape, limit: int) -> FigureData:
    from skimage import data as skdata

    names = ["chelsea", "astronaut", "coffee", "rocket", "coins", "camera", "cat", "horse"]
    pictures = []
    for name in names:
        picture = getattr(skdata, name)()
        picture = picture if picture.dtype == np.uint8 else (picture * 255).astype(np.uint8)
        pictures.append(_prepare(picture, shape))
    images = torch.stack(pictures[:limit])
    insp = Inspector(net, device="cpu")
    logits = insp.run_batch(images, [insp.layers[-1]])[insp.layers[-1]]
    labels = logits.argmax(1)  # photos have no labels: the model's own answer stands in
    classes = _imagenet_names(model, int(logits.shape[1]))
    return FigureData(model, net, images, labels.cpu(), classes, None)


def _photo_demo(limit: int) -> FigureData:
    """The real-photo demo: its photos first, then as many probe crops as ``limit`` allows."""
    from zfwidgets import demo

    p = demo.photos()
    count = max(0, min(limit - len(p.dataset), len(p.probe)))
    crops = [p.probe[i][0] for i in range(count)]
    images = torch.cat([p.dataset.images, *([torch.stack(crops)] if crops else [])])[:limit]
    labels = torch.cat([p.dataset.labels, p.probe.labels[:count]])[:limit]
    notes = [
        f"images 0-{len(p.dataset) - 1}: the photos ({', '.join(p.names)}); "
        f"then {count} probe crops and flips of them, labelled with their photo's class",
        "pictures are shown stretched min..max (the inputs are scaled (x - 0.498) / 0.502)",
    ]
    return FigureData("photos", p.model, images, labels, p.classes, None, notes=notes)


def _image_folder(model: str, net: nn.Module, shape, folder: Path, limit: int) -> FigureData:
    from torchvision.datasets import ImageFolder

    if not folder.is_dir():
        raise ValueError(
            f"data must be 'demo', 'photos' or a folder of class folders; got {folder}"
        )
    dataset = ImageFolder(str(folder))
    if len(dataset) == 0:
        raise ValueError(f"no pictures found under {folder}")
    count = min(limit, len(dataset))
    images = torch.stack([_prepare(np.asarray(dataset[i][0]), shape) for i in range(count)])
    labels = torch.tensor([dataset[i][1] for i in range(count)])
    return FigureData(model, net, images, labels, list(dataset.classes), None)
