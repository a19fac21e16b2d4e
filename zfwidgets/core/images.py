"""Image files to model inputs: what a widget's upload button hands to the engine.

Example:
    >>> import io
    >>> from PIL import Image
    >>> png = io.BytesIO()
    >>> Image.new("RGB", (40, 30), "white").save(png, "PNG")  # what an upload hands over
    >>> image_from_bytes(png.getvalue(), channels=1, size=(28, 28)).shape
    torch.Size([1, 28, 28])

With the model's preprocessing, an upload is prepared exactly as the model's transforms would
(shorter side resized, centre crop, normalised):

    >>> from zfwidgets.core.preprocess import IMAGENET
    >>> image_from_bytes(png.getvalue(), channels=3, preprocessing=IMAGENET).shape
    torch.Size([3, 224, 224])
"""

from __future__ import annotations

import dataclasses
import io
import warnings

import numpy as np
import torch
from PIL import Image as PILImage
from PIL import ImageOps

from zfwidgets.core.preprocess import Preprocessing, as_preprocessing

__all__ = [
    "MAX_PIXELS",
    "background_level",
    "image_from_bytes",
    "input_pixels",
    "inverted_input",
    "opposite_background",
]

# Largest upload decoded, in pixels (a 7,000 x 7,000 photo). Checked from the file's header
# before any pixel is decoded: a few KiB of PNG can claim gigabytes of pixels (a
# "decompression bomb").
MAX_PIXELS = 50_000_000


def _eight_bit(picture: PILImage.Image) -> PILImage.Image:
    """A 16- or 32-bit grey picture scaled to 8 bits (Pillow's own conversion clips at 255,
    which turns almost all of a 16-bit image white); other pictures as they are."""
    if not picture.mode.startswith("I"):
        return picture
    values = np.asarray(picture, dtype=np.float64)
    full = 65535.0 if picture.mode.startswith("I;16") or values.max() <= 65535 else values.max()
    scaled = np.round(np.clip(values, 0, None) / full * 255.0)
    return PILImage.fromarray(scaled.astype(np.uint8), "L")


def image_from_bytes(
    data: bytes,
    channels: int,
    size: tuple[int, int] | None = None,
    mean: torch.Tensor | None = None,
    name: str = "the file",
    max_pixels: int = MAX_PIXELS,
    preprocessing: Preprocessing | None = None,
) -> torch.Tensor:
    """An image file as a float32 (C, H, W) model input.

    Decodes with Pillow (refusing pictures over ``max_pixels`` before decoding, turning phone
    photos upright from their EXIF tag, scaling 16-bit pictures to 8 bits), converts to grey
    (``channels == 1``) or RGB (3), then prepares it as the model expects:

    - with ``preprocessing`` (a :class:`~zfwidgets.core.preprocess.Preprocessing`):
      ``preprocessing.prepare`` (resize, centre crop, ``(x - mean) / std``), exactly as
      torchvision's ``weights.transforms()`` would;
    - otherwise (the older shorthand): resized to ``size`` (H, W) when given, pixels in [0, 1]
      minus ``mean`` (a mean image or one number per channel) when given.

    Example:
        >>> import io
        >>> from PIL import Image
        >>> from zfwidgets.core.preprocess import Preprocessing
        >>> png = io.BytesIO()
        >>> Image.new("L", (4, 4), 51).save(png, "PNG")
        >>> prep = Preprocessing(mean=(0.1,), std=(0.5,), channels=1)
        >>> round(float(image_from_bytes(png.getvalue(), 1, preprocessing=prep)[0, 0, 0]), 4)
        0.2

    Raises:
        ValueError: the bytes are not a complete image Pillow can read, the picture has more
            than ``max_pixels`` pixels (refused before decoding), the model takes a channel
            count pictures do not have, ``preprocessing`` is given with ``mean`` or ``size``
            or makes another channel count, or the picture does not fit the mean image.
    """
    if channels not in (1, 3):
        raise ValueError(f"the model takes {channels} channels; uploads can be grey (1) or RGB (3)")
    prep = _preprocessing(channels, size, mean, preprocessing)
    limit = f"uploads may have at most {max_pixels:,} pixels"
    try:
        with warnings.catch_warnings():
            # Pillow warns about big pictures; the size is checked here, with a clearer message.
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            picture = PILImage.open(io.BytesIO(data))
        with picture:
            width, height = picture.size
            if width * height > max_pixels:
                raise ValueError(
                    f"{name} is {width}x{height} = {width * height:,} pixels; {limit} "
                    "(refused before decoding)"
                )
            picture.load()  # decodes now, so a truncated file fails here and not later
            # A phone photo stores "rotate me" in EXIF instead of rotating its pixels.
            picture = ImageOps.exif_transpose(_eight_bit(picture))
            picture = picture.convert("L" if channels == 1 else "RGB")
    except PILImage.UnidentifiedImageError as err:
        raise ValueError(f"{name} is not an image file (PNG, JPEG, GIF, BMP, ...)") from err
    except PILImage.DecompressionBombError as err:
        raise ValueError(f"{name} is too large to decode ({err}); {limit}") from err
    except (OSError, SyntaxError) as err:
        raise ValueError(
            f"{name} could not be decoded, it may be damaged or cut short ({err})"
        ) from err
    try:
        return prep.prepare(picture)
    except ValueError as err:  # the picture does not fit the mean image
        raise ValueError(f"{name}: {err}") from err


def _preprocessing(
    channels: int,
    size: tuple[int, int] | None,
    mean: torch.Tensor | None,
    preprocessing: Preprocessing | None,
) -> Preprocessing:
    """The one Preprocessing an upload goes through: the given one, or the older
    ``size``/``mean`` shorthand as one (std 1, plain resize to ``size``)."""
    if preprocessing is not None:
        if mean is not None or size is not None:
            raise ValueError(
                "give either preprocessing= or the older size=/mean=, not both "
                "(the preprocessing holds the size and the mean)"
            )
        if not isinstance(preprocessing, Preprocessing):
            preprocessing = as_preprocessing(preprocessing)
        if preprocessing.channels != channels:
            raise ValueError(
                f"the model takes {channels} channels but the preprocessing makes "
                f"{preprocessing.channels} ({preprocessing.describe()})"
            )
        return preprocessing
    prep = as_preprocessing(mean=mean, channels=channels)
    if prep is None:
        prep = Preprocessing(mean=(0.0,), std=(1.0,), channels=channels)
    # The older rule: the picture is resized to ``size`` only (never to the mean image's).
    return dataclasses.replace(prep, size=None if size is None else tuple(size))


def background_level(pixels: torch.Tensor) -> float:
    """How bright a picture's background is: the mean of its outer ring (one tenth of the
    shorter side, at least one pixel), 0 = black, 1 = white. ``pixels`` is (C, H, W) or
    (H, W) in [0, 1].

    Example:
        >>> seven = torch.ones(1, 28, 28)
        >>> seven[0, 6:9, 6:22] = 0.0             # a black stroke on white paper
        >>> background_level(seven)
        1.0
    """
    a = pixels.detach().double().cpu()
    a = a if a.ndim == 3 else a.reshape(1, *a.shape[-2:])
    ring = max(1, min(a.shape[-2:]) // 10)
    mask = torch.ones(a.shape[-2:], dtype=torch.bool)
    mask[ring:-ring, ring:-ring] = False
    return float(a[:, mask].mean())


def opposite_background(picture: torch.Tensor, examples: list[torch.Tensor]) -> bool:
    """Whether ``picture``'s background is light where the ``examples``' is dark, or dark where
    theirs is light (pixels in [0, 1]): a black-on-white drawing for a model trained on
    white-on-black digits. Both sides must be clear (median example background below 0.25 and
    the picture's above 0.75, or the reverse); anything in between is left alone.

    Example:
        >>> digits = [torch.zeros(1, 28, 28)] * 3              # white on black
        >>> paper = torch.ones(1, 28, 28)                      # black on white
        >>> opposite_background(paper, digits), opposite_background(paper * 0.5, digits)
        (True, False)
    """
    if not examples:
        return False
    theirs = float(np.median([background_level(e) for e in examples]))
    mine = background_level(picture)
    return (theirs < 0.25 and mine > 0.75) or (theirs > 0.75 and mine < 0.25)


def input_pixels(x: torch.Tensor, preprocessing: Preprocessing | None) -> torch.Tensor:
    """A model input (C, H, W) as pixels in [0, 1]: ``x * std + mean`` with a preprocessing,
    else ``x`` itself (clipped).

    Example:
        >>> prep = Preprocessing(mean=(0.5,), std=(0.5,), channels=1)
        >>> input_pixels(torch.tensor([[[-1.0, 1.0]]]), prep).tolist()
        [[[0.0, 1.0]]]
    """
    if preprocessing is None:
        return x.detach().float().clamp(0.0, 1.0)
    return preprocessing.to_pixels(x)


def inverted_input(x: torch.Tensor, preprocessing: Preprocessing | None) -> torch.Tensor:
    """The model input of ``x``'s picture with black and white swapped (pixels ``1 - p``).

    Example:
        >>> prep = Preprocessing(mean=(0.5,), std=(0.5,), channels=1)
        >>> inverted_input(torch.tensor([[[-1.0, 0.5]]]), prep).tolist()
        [[[1.0, -0.5]]]
    """
    flipped = 1.0 - input_pixels(x, preprocessing)
    return flipped if preprocessing is None else preprocessing.normalise(flipped)
