"""Image files to model inputs: what a widget's upload button hands to the engine.

Example:
    >>> import io
    >>> from PIL import Image
    >>> png = io.BytesIO()
    >>> Image.new("RGB", (40, 30), "white").save(png, "PNG")  # what an upload hands over
    >>> image_from_bytes(png.getvalue(), channels=1, size=(28, 28)).shape
    torch.Size([1, 28, 28])
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import torch
from PIL import Image as PILImage
from PIL import ImageOps

__all__ = ["MAX_PIXELS", "image_from_bytes"]

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
) -> torch.Tensor:
    """An image file as a float32 (C, H, W) model input in [0, 1] minus ``mean``.

    Decodes with Pillow, converts to grey (``channels == 1``) or RGB (3), resizes to ``size``
    (H, W) when given.

    Raises:
        ValueError: the bytes are not a complete image Pillow can read, the picture has more
            than ``max_pixels`` pixels (refused before decoding), or the model takes a channel
            count pictures do not have.
    """
    if channels not in (1, 3):
        raise ValueError(f"the model takes {channels} channels; uploads can be grey (1) or RGB (3)")
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
    if size is not None and picture.size != (size[1], size[0]):
        picture = picture.resize((size[1], size[0]), PILImage.BILINEAR)
    pixels = np.asarray(picture, dtype=np.float32) / 255.0
    x = torch.from_numpy(pixels.reshape(picture.size[1], picture.size[0], channels).copy())
    x = x.permute(2, 0, 1).contiguous()
    if mean is not None:
        if tuple(mean.shape[-2:]) != tuple(x.shape[-2:]):
            raise ValueError(
                f"the mean image is {tuple(mean.shape[-2:])} but {name} became "
                f"{tuple(x.shape[-2:])}"
            )
        x = x - mean.to(x.device, x.dtype).reshape(-1, *x.shape[-2:])
    return x
