"""The model's preprocessing, one object: how pictures become inputs and inputs pictures again.

A pretrained model comes with the transforms it was trained with (torchvision's
``weights.transforms()``: resize the shorter side, centre crop, scale to [0, 1], normalise with a
per-channel mean and std). :class:`Preprocessing` holds those numbers so that every widget,
figure and command prepares uploads and image folders exactly as the model expects, draws inputs
and patches in their true colours (``x * std + mean``, clipped; never a min..max stretch), and
fills occluders with the mean (0 in model units).

Example:
    >>> import torch
    >>> from PIL import Image
    >>> prep = Preprocessing(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
    ...                      size=(224, 224), resize=256)
    >>> x = prep.prepare(Image.new("RGB", (640, 480), (124, 116, 104)))
    >>> tuple(x.shape), round(float(x.abs().max()), 2)      # the ImageNet mean grey is ~0
    ((3, 224, 224), 0.01)
    >>> prep.picture(x)[0, 0].tolist()                       # and drawn back in its colours
    [124, 116, 104]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image as PILImage
from torch import Tensor
from torchvision.transforms import InterpolationMode

__all__ = ["IMAGENET", "Preprocessing", "as_preprocessing"]

_MODES = {mode.value: mode for mode in InterpolationMode}


@dataclass(frozen=True, eq=False)
class Preprocessing:
    """How the model's inputs are made from pictures (and drawn back as pictures).

    Attributes:
        mean: per-channel means (a tuple of C floats), or a mean image (C, H, W) in [0, 1]
            (the digits demo subtracts its training set's mean image).
        std: per-channel standard deviations (C floats; 1 where inputs are not divided).
        size: the model's input (H, W): the centre crop, or the size pictures are resized to
            when ``resize`` is None. None: pictures keep their size.
        resize: the shorter side pictures are resized to before the centre crop (torchvision's
            ``resize_size``); None resizes straight to ``size``.
        interpolation: the resize filter, as torchvision names it ("bilinear", "bicubic", ...).
        channels: 1 (grey) or 3 (RGB).

    Example:
        >>> Preprocessing(mean=(0.5,), std=(0.25,), size=(28, 28)).fill
        0.0
    """

    mean: Any = (0.0, 0.0, 0.0)
    std: Any = (1.0, 1.0, 1.0)
    size: tuple[int, int] | None = None
    resize: int | None = None
    interpolation: str = "bilinear"
    channels: int = 3
    antialias: bool = True
    _mean: Tensor = field(init=False, repr=False)
    _std: Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grey) or 3 (RGB); got {self.channels!r}")
        mean = _as_tensor("mean", self.mean)
        std = _as_tensor("std", self.std)
        if mean.ndim == 1:
            mean = _per_channel("mean", mean, self.channels)
        elif mean.ndim != 3 or mean.shape[0] != self.channels:
            raise ValueError(
                f"mean must be {self.channels} numbers (one per channel) or a mean image "
                f"({self.channels}, H, W); got shape {tuple(mean.shape)}"
            )
        std = _per_channel("std", std.reshape(-1), self.channels)
        if (std <= 0).any():
            raise ValueError(
                f"std must be positive; got {std.tolist()}: a pixel is divided by it (use 1 "
                "for channels that are not divided)"
            )
        if self.interpolation not in _MODES:
            raise ValueError(f"interpolation {self.interpolation!r} is not one of {sorted(_MODES)}")
        for name, value in (("size", self.size), ("resize", self.resize)):
            if value is not None and not _positive_ints(value):
                raise ValueError(f"{name} must be positive whole numbers or None; got {value!r}")
        if self.size is not None:
            object.__setattr__(self, "size", tuple(int(s) for s in self.size))
        object.__setattr__(self, "_mean", mean.reshape(self.channels, *mean.shape[1:] or (1, 1)))
        object.__setattr__(self, "_std", std.reshape(self.channels, 1, 1))

    # ---- building one ------------------------------------------------------------------------

    @classmethod
    def from_transforms(cls, transforms: Any) -> Preprocessing:
        """Reads torchvision's ``weights.transforms()`` (or a Compose of Resize, CenterCrop,
        ToTensor / PILToTensor + ConvertImageDtype, Normalize).

        Example:
            >>> import torchvision
            >>> t = torchvision.models.ResNet18_Weights.DEFAULT.transforms()  # no download
            >>> p = Preprocessing.from_transforms(t)
            >>> p.size, p.resize, p.interpolation
            ((224, 224), 256, 'bilinear')
        """
        if all(hasattr(transforms, a) for a in ("crop_size", "resize_size", "mean", "std")):
            return cls(
                mean=tuple(transforms.mean),
                std=tuple(transforms.std),
                size=_pair(transforms.crop_size),
                resize=_single(transforms.resize_size, "resize_size"),
                interpolation=InterpolationMode(transforms.interpolation).value,
                antialias=bool(getattr(transforms, "antialias", True)),
            )
        steps = getattr(transforms, "transforms", None)
        if steps is None:
            raise TypeError(
                f"cannot read the preprocessing from {type(transforms).__name__}: pass "
                "torchvision's weights.transforms(), a transforms.Compose, or "
                "Preprocessing(mean=..., std=..., size=...) by hand"
            )
        return cls(**_read_compose(steps))

    # ---- pictures to inputs ------------------------------------------------------------------

    def prepare(self, picture: PILImage.Image | np.ndarray | Tensor) -> Tensor:
        """A picture (PIL image, (H, W[, C]) uint8 array, or (C, H, W) float tensor in [0, 1])
        as the model's float32 input (C, H, W), exactly as the model's transforms make it."""
        x = self._as_pixels(picture)
        mode = _MODES[self.interpolation]
        if self.resize is not None:
            x = TF.resize(x, [self.resize], interpolation=mode, antialias=self.antialias)
            if self.size is not None:
                x = TF.center_crop(x, list(self.size))
        elif self.size is not None and _hw(x) != self.size:
            x = TF.resize(x, list(self.size), interpolation=mode, antialias=self.antialias)
        if isinstance(x, PILImage.Image):  # resized as PIL, as torchvision's transforms do
            x = TF.pil_to_tensor(x)
        if x.dtype == torch.uint8:
            x = TF.convert_image_dtype(x, torch.float32)
        return self.normalise(x)

    def normalise(self, pixels: Tensor) -> Tensor:
        """Pixels in [0, 1] (C, H, W) or (N, C, H, W) to model inputs ``(x - mean) / std``."""
        mean = self._mean_for(pixels)
        return ((pixels - mean.to(pixels)) / self._std.to(pixels)).contiguous()

    # ---- inputs to pictures ------------------------------------------------------------------

    def to_pixels(self, x: Tensor) -> Tensor:
        """Model inputs back to pixels in [0, 1] (``x * std + mean``, clipped).

        An input of another size than a mean image (a smaller DeepDream octave) is drawn with
        the mean image resized to it, as the input itself was.
        """
        x = x.detach().float()
        return (x * self._std.to(x) + self._mean_resized(x).to(x)).clamp(0.0, 1.0)

    def picture(self, x: Tensor) -> np.ndarray:
        """One model input (C, H, W) as a uint8 picture (H, W, 3), or (H, W) for grey."""
        if x.ndim < 2 or (x.ndim >= 3 and x.shape[-3] != self.channels) or x.ndim > 4:
            raise ValueError(
                f"an input of shape {tuple(x.shape)} is not one picture of this preprocessing "
                f"({self.describe()}): give ({self.channels}, H, W)"
            )
        pixels = self.to_pixels(x.cpu().reshape(self.channels, *x.shape[-2:]))
        picture = (pixels * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        return picture[..., 0] if self.channels == 1 else picture

    @property
    def fill(self) -> float:
        """The occluder's value in model units: the mean, which is 0."""
        return 0.0

    @property
    def mean_image(self) -> bool:
        """True when ``mean`` is an image (C, H, W), not one number per channel."""
        return self._mean.shape[-2:] != (1, 1)

    def describe(self) -> str:
        """One line for captions and docs.

        Example:
            >>> Preprocessing(mean=(0.5,), std=(0.5,), size=(28, 28), channels=1).describe()
            'grey 28x28, (x - 0.5) / 0.5'
        """
        colour = "grey" if self.channels == 1 else "RGB"
        size = "any size" if self.size is None else f"{self.size[0]}x{self.size[1]}"
        if self.resize is not None:
            size = f"shorter side {self.resize}, centre crop {size}"
        if self.mean_image:
            mean = "the mean image"
        else:
            mean = "(" + ", ".join(f"{v:.4g}" for v in self._mean.flatten().tolist()) + ")"
            mean = mean[1:-1] if self.channels == 1 else mean
        std = [f"{v:.4g}" for v in self._std.flatten().tolist()]
        std = std[0] if self.channels == 1 else "(" + ", ".join(std) + ")"
        return f"{colour} {size}, (x - {mean}) / {std}"

    # ---- helpers -----------------------------------------------------------------------------

    def _mean_resized(self, x: Tensor) -> Tensor:
        if not self.mean_image or tuple(x.shape[-2:]) == tuple(self._mean.shape[-2:]):
            return self._mean
        size = list(x.shape[-2:])
        return TF.resize(self._mean[None], size, antialias=True)[0]

    def _mean_for(self, x: Tensor) -> Tensor:
        if not self.mean_image or tuple(x.shape[-2:]) == tuple(self._mean.shape[-2:]):
            return self._mean
        raise ValueError(
            f"the mean image is {tuple(self._mean.shape[-2:])} but the input is "
            f"{tuple(x.shape[-2:])}: inputs of this model must be that size"
        )

    def _as_pixels(self, picture) -> PILImage.Image | Tensor:
        if isinstance(picture, np.ndarray):
            picture = PILImage.fromarray(picture)
        if isinstance(picture, PILImage.Image):
            return picture.convert("L" if self.channels == 1 else "RGB")
        if isinstance(picture, Tensor) and picture.ndim == 3:
            return picture
        raise TypeError(
            f"a picture must be a PIL image, a uint8 array or a (C, H, W) tensor; got "
            f"{type(picture).__name__}"
        )


def as_preprocessing(
    preprocessing: Any = None, mean: Any = None, channels: int | None = None
) -> Preprocessing | None:
    """What a widget, figure or command was given, as one :class:`Preprocessing` (or None).

    Accepts a Preprocessing, torchvision transforms, or the older ``mean=`` alone (a mean image
    (C, H, W), or C numbers, with std 1).

    Example:
        >>> as_preprocessing(mean=torch.zeros(1, 28, 28)).describe()
        'grey 28x28, (x - the mean image) / 1'
    """
    if preprocessing is not None and mean is not None:
        raise ValueError("give either preprocessing= or mean=, not both")
    if preprocessing is None and mean is None:
        return None
    if isinstance(preprocessing, Preprocessing):
        return preprocessing
    if preprocessing is not None:
        return Preprocessing.from_transforms(preprocessing)
    mean_t = _as_tensor("mean", mean)
    if mean_t.ndim == 0:  # one number for every channel
        mean_t = mean_t.reshape(1)
    if mean_t.ndim == 2:  # (H, W): a grey mean image
        mean_t = mean_t[None]
    if mean_t.ndim == 4 and mean_t.shape[0] == 1:  # (1, C, H, W)
        mean_t = mean_t[0]
    count = mean_t.shape[0] if mean_t.ndim == 3 else mean_t.numel()
    count = channels or count
    if count not in (1, 3):
        raise ValueError(
            f"mean has {count} channels; images can be grey (1) or RGB (3): shape "
            f"{tuple(mean_t.shape)}"
        )
    image = mean_t.ndim == 3 and tuple(mean_t.shape[-2:]) != (1, 1)  # not (C, 1, 1) numbers
    size = tuple(mean_t.shape[-2:]) if image else None
    return Preprocessing(mean=mean_t, std=(1.0,) * count, size=size, channels=count)


def _as_tensor(name: str, value) -> Tensor:
    try:
        if not isinstance(value, Tensor):
            value = torch.as_tensor(np.asarray(value, dtype=np.float32))
        t = value.detach().to("cpu", torch.float32)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be numbers or a tensor; got {value!r:.80}") from err
    if not torch.isfinite(t).all():
        raise ValueError(
            f"{name} has NaN or infinite values ({t.flatten()[:6].tolist()}): give finite "
            f"numbers, e.g. the {name} your model was trained with"
        )
    return t


def _per_channel(name: str, values: Tensor, channels: int) -> Tensor:
    if values.numel() == 1:
        return values.reshape(1).expand(channels).clone()
    if values.numel() != channels:
        hint = ", or channels=3 for an RGB model" if values.numel() == 3 else ""
        raise ValueError(
            f"{name} has {values.numel()} values; the model's pictures have {channels} channels: "
            f"give one number per channel or one for all{hint}"
        )
    return values.reshape(channels)


def _hw(x: PILImage.Image | Tensor) -> tuple[int, int]:
    return (x.height, x.width) if isinstance(x, PILImage.Image) else tuple(x.shape[-2:])


def _positive_ints(value) -> bool:
    values = value if isinstance(value, Sequence) else (value,)
    return all(
        isinstance(v, int | np.integer) and not isinstance(v, bool) and v > 0 for v in values
    ) and len(values) in (1, 2)


def _pair(value) -> tuple[int, int]:
    values = list(value) if isinstance(value, Sequence) else [value]
    return (int(values[0]), int(values[-1]))


def _single(value, name: str) -> int:
    values = list(value) if isinstance(value, Sequence) else [value]
    if len(values) != 1:
        raise ValueError(f"{name} {value!r}: only a shorter-side resize (one number) is read")
    return int(values[0])


def _read_compose(steps) -> dict:
    """Resize / CenterCrop / ToTensor / Normalize of a Compose, as Preprocessing's fields."""
    import torchvision.transforms as T

    fields: dict[str, Any] = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}
    for step in steps:
        if isinstance(step, T.Resize):
            if isinstance(step.size, Sequence) and len(step.size) == 2:
                fields["size"] = _pair(step.size)
            else:
                fields["resize"] = _single(step.size, "Resize size")
            fields["interpolation"] = InterpolationMode(step.interpolation).value
        elif isinstance(step, T.CenterCrop):
            fields["size"] = _pair(step.size)
        elif isinstance(step, T.Normalize):
            fields["mean"], fields["std"] = tuple(step.mean), tuple(step.std)
        elif isinstance(step, T.ToTensor | T.PILToTensor | T.ConvertImageDtype):
            continue
        else:
            raise TypeError(
                f"the transforms hold {type(step).__name__}, which zfwidgets cannot read back; "
                "give Preprocessing(mean=..., std=..., size=..., resize=...) by hand"
            )
    if not math.isfinite(sum(fields["std"])):
        raise ValueError("Normalize's std is not finite")
    return fields


#: torchvision's ImageNet preprocessing (ResNet, VGG, AlexNet, ...): shorter side 256, crop 224.
IMAGENET = Preprocessing(
    mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), size=(224, 224), resize=256
)
