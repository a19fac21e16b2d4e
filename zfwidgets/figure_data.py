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

import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from zfwidgets.core import Inspector
from zfwidgets.core.checks import as_int
from zfwidgets.core.preprocess import Preprocessing

__all__ = [
    "FigureData",
    "load_figure_data",
    "model_class_names",
    "shape_is_imagenet",
    "stratified",
]


@dataclass
class FigureData:
    """A model with the images the figures are made from.

    Attributes:
        name: the model's name (``demo``, ``alexnet``...).
        model: the model (never modified).
        images: (N, C, H, W) model inputs.
        labels: (N,) the data set's own labels (indices into ``classes``).
        classes: the data set's class names (an image folder's folder names).
        mean: the mean image subtracted from the inputs (for display), or None.
        run: the model's training run (``demo.snapshots()``), or None.
        train: a training set for the architecture comparison (the demo's), or None.
        notes: lines about the data, for captions.
        preprocessing: how pictures became ``images`` (draws them in their true colours), or None.
        model_classes: the model's class names (ImageNet's for torchvision models); None: the
            same as ``classes`` (the model was trained on this data set's classes).
        targets: (N,) the class each image is measured against, an index into
            ``model_classes``: the label where the model knows the data set's classes, else the
            model's own answer on the untouched image. None: ``labels``.
        dataset: the whole data set ``images`` were drawn from (an image folder), or None.
        indices: which of ``dataset``'s items ``images`` are, or None.
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
    preprocessing: Preprocessing | None = None
    model_classes: list[str] | None = None
    targets: Tensor | None = None
    dataset: Any = None
    indices: list[int] | None = None

    @property
    def target_names(self) -> list[str]:
        """The names of the classes ``targets`` index (the model's)."""
        return self.classes if self.model_classes is None else self.model_classes

    @property
    def target_labels(self) -> Tensor:
        """``targets``, or ``labels`` where the model's classes are the data set's."""
        return self.labels if self.targets is None else self.targets


def _stderr_line(message: str) -> None:
    print(message, file=sys.stderr)


def load_figure_data(
    model: str = "demo",
    data: str | None = None,
    limit: int = 1000,
    pretrained: bool = False,
    warn: Callable[[str], None] | None = _stderr_line,
) -> FigureData:
    """The model called ``model`` (a :func:`~zfwidgets.zoo.registry.get_model` name) with images.

    ``data``: ``None`` picks the demo digits for 28-pixel models and scikit-image's photos for
    ImageNet models; ``"demo"``, ``"photos"`` or a folder of class folders of pictures
    (torchvision ``ImageFolder``, read with the model's preprocessing) choose explicitly. At
    most ``limit`` images are used (from a folder: a class-stratified subset, see
    :func:`stratified`). ``pretrained`` loads torchvision's ImageNet weights; when they cannot
    be had the model keeps random weights and ``warn`` gets one line saying so.
    """
    from zfwidgets import demo
    from zfwidgets.zoo.registry import preprocessing_for

    limit = as_int(limit)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be a positive whole number; got {limit!r}")
    if model == "photos":
        if data not in (None, "photos"):
            raise ValueError(f"the photos model comes with its own photos; got data={data!r}")
        return _photo_demo(limit)
    if model == "demo":
        d = demo.load()
        net, shape = d.model, (1, 28, 28)
    else:
        net, shape = _get_model(model, pretrained, warn)
        d = None
    data = data or ("demo" if shape[-1] == 28 else "photos")
    if data == "demo":
        d = d or demo.load()
        if shape[0] != 1 or shape[-1] != 28:
            raise ValueError(f"the demo digits are (1, 28, 28) but {model} takes {shape}")
        # The first ``limit`` held-out digits: the split is interleaved by class (digit i is an
        # i % 10), so any 10 in a row hold every class once and the figures open on varied digits.
        picks = torch.arange(min(limit, len(d.dataset)))
        return FigureData(
            model,
            net,
            d.dataset.images[picks],
            d.dataset.labels[picks],
            d.classes,
            d.mean,
            run=demo.snapshots() if model == "demo" else None,
            train=d.train,
            preprocessing=d.preprocessing if model == "demo" else None,
        )
    prep = preprocessing_for(model)
    if data == "photos":
        return _photos(model, net, prep, limit)
    return _image_folder(model, net, prep, Path(data), limit)


def _get_model(
    name: str, pretrained: bool, warn: Callable[[str], None] | None
) -> tuple[nn.Module, tuple[int, int, int]]:
    """get_model, its warning about missing ImageNet weights turned into one line."""
    from zfwidgets.zoo.registry import get_model

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        net, shape = get_model(name, pretrained=pretrained)
    for w in caught:
        if "could not load ImageNet weights" in str(w.message):
            if warn is not None:
                warn(f"could not load ImageNet weights for {name} (offline?): using random weights")
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return net, shape


def shape_is_imagenet(model: str) -> bool:
    """True for torchvision's chains with ImageNet-sized inputs (AlexNet, VGG).

    Example:
        >>> shape_is_imagenet("alexnet"), shape_is_imagenet("demo")
        (True, False)
    """
    from zfwidgets.zoo.registry import MODEL_NAMES

    return model in MODEL_NAMES and model.startswith(("alexnet", "vgg"))


def model_class_names(model: str, count: int) -> list[str]:
    """The names of the ``count`` classes the model called ``model`` answers with: ImageNet's
    for torchvision's models (from their weights' metadata: nothing is downloaded), else
    ``"class 0"``, ``"class 1"``...

    Example:
        >>> model_class_names("alexnet", 1000)[281], model_class_names("zfnet", 2)
        ('tabby', ['class 0', 'class 1'])
    """
    import torchvision

    try:
        names = list(torchvision.models.get_model_weights(model).DEFAULT.meta["categories"])
    except (ValueError, KeyError, AttributeError):
        names = []
    return names if len(names) == count else [f"class {i}" for i in range(count)]


def stratified(labels: Sequence[int], limit: int) -> list[int]:
    """Indices of up to ``limit`` items taken round-robin over the classes (each class's items
    in order), returned sorted: every class is present when ``limit`` allows it.

    Example:
        >>> stratified([0, 0, 0, 0, 1, 1, 2], 5)
        [0, 1, 4, 5, 6]
    """
    by_class: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        by_class.setdefault(int(label), []).append(i)
    queues = [by_class[c] for c in sorted(by_class)]
    picks: list[int] = []
    for rank in range(max((len(q) for q in queues), default=0)):
        for q in queues:
            if rank < len(q) and len(picks) < limit:
                picks.append(q[rank])
    return sorted(picks)


def _predictions(net: nn.Module, images: Tensor) -> tuple[Tensor, int]:
    """The model's answer (class index) for every image, and how many classes it has."""
    insp = Inspector(net, device="cpu")
    logits = insp.run_batch(images, [insp.layers[-1]])[insp.layers[-1]]
    return logits.argmax(1).cpu(), int(logits.shape[1])


def _photos(model: str, net: nn.Module, prep: Preprocessing, limit: int) -> FigureData:
    from skimage import data as skdata

    names = ["chelsea", "astronaut", "coffee", "rocket", "coins", "camera", "cat", "horse"]
    pictures = []
    for name in names[:limit]:
        picture = getattr(skdata, name)()
        picture = picture if picture.dtype == np.uint8 else (picture * 255).astype(np.uint8)
        pictures.append(prep.prepare(Image.fromarray(picture)))
    images = torch.stack(pictures)
    labels, count = _predictions(net, images)  # photos have no labels: the model's answer
    classes = model_class_names(model, count)
    notes = ["scikit-image's photos, labelled with the model's own answers"]
    return FigureData(model, net, images, labels, classes, None, notes=notes, preprocessing=prep)


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
        f"pictures are shown in their true colours ({p.preprocessing.describe()})",
    ]
    return FigureData(
        "photos",
        p.model,
        images,
        labels,
        p.classes,
        None,
        notes=notes,
        preprocessing=p.preprocessing,
    )


def _image_folder(
    model: str, net: nn.Module, prep: Preprocessing, folder: Path, limit: int
) -> FigureData:
    """A class-stratified ``limit`` of the folder's pictures, prepared as the model expects;
    the model's own answers are what the figures measure p(class) of."""
    from torchvision.datasets import ImageFolder

    if not folder.is_dir():
        raise ValueError(
            f"data must be 'demo', 'photos' or a folder of class folders; {folder} is not a folder"
        )
    try:
        dataset = ImageFolder(str(folder), transform=prep.prepare)
    except (FileNotFoundError, OSError) as err:  # no class folders, or none holds a picture
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ValueError(f"no pictures found under {folder}: {reason}") from err
    indices = stratified(dataset.targets, limit)
    try:
        images = torch.stack([dataset[i][0] for i in indices])
    except (OSError, ValueError) as err:  # a damaged picture: name it
        raise ValueError(f"could not read a picture under {folder}: {err}") from err
    labels = torch.tensor([dataset.targets[i] for i in indices])
    targets, count = _predictions(net, images)
    present = len(set(labels.tolist()))
    notes = [
        f"{len(indices)} of the {len(dataset)} pictures under {folder} ({present} of its "
        f"{len(dataset.classes)} classes, taken in turn); p(class) is of the model's own answer",
    ]
    return FigureData(
        model,
        net,
        images,
        labels,
        list(dataset.classes),
        None,
        notes=notes,
        preprocessing=prep,
        model_classes=model_class_names(model, count),
        targets=targets,
        dataset=dataset,
        indices=indices,
    )
