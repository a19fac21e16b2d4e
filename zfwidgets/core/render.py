"""Tensors to pictures: uint8 arrays and PNG bytes, as the paper's figures show them.

Projections have no natural range, so we follow the paper: zero is mid grey and the contrast
is stretched symmetrically, so the strongest positive or negative value reaches the end of
the scale and the sign stays readable.

Example:
    >>> import torch
    >>> projection_image(torch.tensor([[[-1.0, 0.0, 2.0]]]))[0].tolist()
    [64, 128, 255]
"""

from __future__ import annotations

import colorsys
import io
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Number

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

__all__ = [
    "BACKGROUND",
    "BORDER",
    "FAINT_GAIN",
    "Shown",
    "TAB10",
    "as_numpy",
    "class_colours",
    "colormap",
    "colour_bar",
    "grid",
    "heatmap",
    "input_image",
    "overlay",
    "projection_image",
    "saliency_image",
    "shown_projection",
    "to_png",
    "to_rgb",
    "upscale",
]

BACKGROUND = 40  # grey level behind tiles: reads as "nothing here" in light and dark themes
# Image borders: a mid grey shows on a white page and on the dark theme's near-black alike
# (black vanished on the dark theme, white on the light one).
BORDER = "#888888"
# A projection whose 99th percentile |value| is below 1/FAINT_GAIN of its peak shows as a speck
# on mid grey at the peak's contrast; it is stretched further (and the caption says by how much).
FAINT_GAIN = 4.0
MAX_GAIN = 1000.0  # beyond this the "signal" is rounding noise: it is not stretched further
# matplotlib's tab10: distinct, colour-blind friendlier than a rainbow, readable on dark and light
TAB10 = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
]

# A perceptually ordered dark-to-bright map (after matplotlib's "inferno"): anchors are
# interpolated to 256 entries, so no plotting library is needed.
_ANCHORS = np.array(
    [
        [0, 0, 4],
        [40, 11, 84],
        [101, 21, 110],
        [159, 42, 99],
        [212, 72, 66],
        [245, 125, 21],
        [250, 193, 39],
        [252, 255, 164],
    ],
    dtype=np.float64,
)


def colormap() -> np.ndarray:
    """The 256x3 uint8 lookup table used for heat maps."""
    pos = np.linspace(0, len(_ANCHORS) - 1, 256)
    lo = np.floor(pos).astype(int).clip(0, len(_ANCHORS) - 2)
    frac = (pos - lo)[:, None]
    return np.round(_ANCHORS[lo] * (1 - frac) + _ANCHORS[lo + 1] * frac).astype(np.uint8)


_LUT = colormap()


def as_numpy(x) -> np.ndarray:
    """A CPU float64 numpy copy of a tensor or array."""
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def _hwc(a: np.ndarray) -> np.ndarray:
    """(C, H, W) -> (H, W) for one channel, (H, W, 3) otherwise."""
    if a.ndim == 4:
        a = a[0]
    if a.ndim == 2:
        return a
    if a.shape[0] == 1:
        return a[0]
    if a.shape[0] == 3:
        return a.transpose(1, 2, 0)
    return a.mean(0)  # any other channel count: show the mean plane


def projection_image(p, per_channel: bool = False, scale: float | None = None) -> np.ndarray:
    """A projection as uint8, zero at mid grey, symmetric contrast stretch.

    ``p`` is (C, H, W) or (1, C, H, W). With ``per_channel`` every colour channel is
    stretched on its own (brighter colours, less faithful relative strengths). ``scale``
    fixes the value shown at full contrast (to compare several pictures on one scale).
    """
    a = _hwc(as_numpy(p))
    axes = (0, 1) if per_channel and a.ndim == 3 else None
    if scale is None:
        scale = np.abs(a).max(axis=axes, keepdims=True)
    scale = np.where(scale > 0, scale, 1.0)
    return np.clip(np.round(127.5 + 127.5 * a / scale + 0.25), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Shown:
    """A projection as drawn, and what the caption must add so the picture does not mislead.

    Attributes:
        picture: uint8 (H, W) or (H, W, 3).
        gain: the contrast stretch over the usual peak-to-full-scale one (1: none); values
            beyond ``1 / gain`` of the peak are clipped.
        note: ``""``, ``"all zero: ..."`` or ``"x40 contrast: ..."``, for the caption.
    """

    picture: np.ndarray
    gain: float = 1.0
    note: str = ""


def _nice_gain(gain: float) -> float:
    """``gain`` rounded down to two significant digits (the caption states it exactly)."""
    digits = 10 ** (np.floor(np.log10(gain)) - 1)
    return float(np.floor(gain / digits) * digits)


def shown_projection(p, saliency: bool = False, empty: str = "nothing reached the pixels") -> Shown:
    """A projection drawn so that it shows something, or says why it cannot.

    All zero (or not finite): a flat picture and ``"all zero: <empty>"``. Faint (99% of the
    non-zero pixels within 1/``FAINT_GAIN`` of the peak, so it reads as a speck on grey): the
    contrast is raised until their 99th percentile reaches full scale (at most ``MAX_GAIN``),
    the few stronger values are clipped, and the note states the factor. Otherwise as
    :func:`projection_image` (or :func:`saliency_image` with ``saliency``).

    Example:
        >>> speck = torch.zeros(1, 20, 20)
        >>> speck[0, 4:16, 4:16] = 0.01                   # a faint square ...
        >>> speck[0, 10, 10] = 1.0                        # ... and one strong pixel
        >>> shown = shown_projection(speck)
        >>> shown.gain, shown.note.split(":")[0], int(shown.picture[5, 5])
        (100.0, 'x100 contrast', 255)
        >>> shown_projection(torch.zeros(1, 4, 4), empty="no unit of this map fired").note
        'all zero: no unit of this map fired'
    """
    a = as_numpy(p)
    size = np.abs(a)
    draw = saliency_image if saliency else projection_image
    if not np.isfinite(size).all():
        return Shown(draw(np.zeros(a.shape)), 1.0, "not drawn: it holds NaN or infinite values")
    if size.max() == 0:
        return Shown(draw(np.zeros(a.shape)), 1.0, f"all zero: {empty}")
    peak = float(size.max())
    shown = size.max(axis=-3) if saliency and size.ndim >= 3 else size
    # Over the pixels that carry a signal: a unit's projection is zero outside its receptive
    # field, which may be under 1% of the picture; that is a small picture, not a faint one.
    level = float(np.percentile(shown[shown > 0], 99))
    if level <= 0 or peak / level < FAINT_GAIN:
        return Shown(draw(a))
    gain = _nice_gain(min(peak / level, MAX_GAIN))
    if saliency:
        plane = shown[0] if shown.ndim == 3 else shown
        picture = np.round(np.clip(255 * plane * gain / peak, 0, 255)).astype(np.uint8)
    else:
        picture = projection_image(a, scale=peak / gain)
    note = f"x{gain:g} contrast: faint, values above 1/{gain:g} of the peak are clipped"
    return Shown(picture, gain, note)


def saliency_image(p) -> np.ndarray:
    """The lecture's saliency picture: absolute value, max over colour channels, 0..255."""
    a = np.abs(as_numpy(p))
    if a.ndim == 4:
        a = a[0]
    a = a.max(axis=0) if a.ndim == 3 else a
    top = a.max()
    return np.round(255 * a / top if top > 0 else a).astype(np.uint8)


def heatmap(a, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """A 2-D map as an RGB heat map (dark = low); range from the data unless given."""
    m = as_numpy(a)
    lo = float(m.min()) if lo is None else lo
    hi = float(m.max()) if hi is None else hi
    span = hi - lo if hi > lo else 1.0
    idx = np.clip(np.round(255 * (m - lo) / span), 0, 255).astype(np.uint8)
    return _LUT[idx]


def input_image(x, mean=None, preprocessing=None) -> np.ndarray:
    """A model input (C, H, W) or (1, C, H, W) back as a uint8 picture (H, W) or (H, W, 3).

    With the model's preprocessing (``preprocessing=``, or a
    :class:`~zfwidgets.core.preprocess.Preprocessing` or torchvision transforms given as
    ``mean``) the picture has its true colours: ``x * std + mean``, clipped to 0..1. The older
    ``mean`` alone (a mean image, or one number per channel such as a (3,) tensor) is added
    back the same way (std 1). With neither, values are stretched min..max.

    Example:
        >>> from zfwidgets.core.preprocess import IMAGENET
        >>> x = IMAGENET.normalise(torch.full((3, 2, 2), 0.5))
        >>> input_image(x, preprocessing=IMAGENET)[0, 0].tolist()
        [128, 128, 128]
        >>> input_image(torch.zeros(3, 1, 1), torch.tensor([0.2, 0.4, 0.6]))[0, 0].tolist()
        [51, 102, 153]
    """
    from zfwidgets.core.preprocess import as_preprocessing

    if preprocessing is not None and mean is not None:
        raise ValueError("give either preprocessing= or mean=, not both")
    if mean is not None and not isinstance(mean, torch.Tensor | np.ndarray | Number | list | tuple):
        preprocessing, mean = mean, None  # a Preprocessing or transforms given as ``mean``
    if preprocessing is not None:
        prep = as_preprocessing(preprocessing)
        x = torch.as_tensor(x)
        return prep.picture(x[0] if x.ndim == 4 else x)
    a = as_numpy(x)
    a = a[0] if a.ndim == 4 else a
    channels = a.shape[-3] if a.ndim >= 3 else 1
    if mean is not None and channels in (1, 3):
        prep = as_preprocessing(mean=mean, channels=channels)
        return prep.picture(torch.as_tensor(a, dtype=torch.float64))
    if mean is not None:  # another channel count: add the mean, show the mean plane
        m = as_numpy(mean)
        a = np.clip(a.reshape(m.shape) + m if m.size == a.size else a + m, 0, 1)
    else:
        span = a.max() - a.min()
        a = (a - a.min()) / (span if span > 0 else 1.0)
    return np.round(255 * _hwc(a)).astype(np.uint8)


def class_colours(count: int) -> np.ndarray:
    """``count`` x 3 uint8 colours, one per class: tab10, then evenly spaced hues.

    Example:
        >>> class_colours(12).shape, class_colours(2)[0].tolist()
        ((12, 3), [31, 119, 180])
    """
    extra = [
        tuple(round(255 * c) for c in colorsys.hsv_to_rgb((i * 0.618034) % 1.0, 0.65, 0.9))
        for i in range(max(0, count - len(TAB10)))
    ]
    return np.array((TAB10 + extra)[:count], dtype=np.uint8).reshape(count, 3)


def to_rgb(picture: np.ndarray) -> np.ndarray:
    """A grey (H, W) or RGB (H, W, 3) uint8 picture as RGB; RGB input is returned as it is.

    Example:
        >>> to_rgb(np.zeros((2, 5), np.uint8)).shape
        (2, 5, 3)
    """
    return np.repeat(picture[..., None], 3, axis=2) if picture.ndim == 2 else picture


def upscale(img: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement, so small digits stay crisp in the browser."""
    if factor < 1:
        raise ValueError(f"upscale factor must be >= 1; got {factor}")
    return img.repeat(factor, axis=0).repeat(factor, axis=1)


def resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``img`` at ``size`` (height, width): whole-number enlargements stay crisp (nearest), any
    other size is resampled smoothly (Lanczos), so a 224-pixel photo patch shrinks legibly.

    Example:
        >>> resize(np.zeros((224, 224), np.uint8), (112, 112)).shape
        (112, 112)
        >>> resize(np.eye(2, dtype=np.uint8), (4, 4))[:, 0].tolist()
        [1, 1, 0, 0]
    """
    h, w = img.shape[:2]
    if tuple(size) == (h, w):
        return img
    if size[0] % h == 0 and size[1] % w == 0 and size[0] // h == size[1] // w:
        return upscale(img, size[0] // h)
    return np.asarray(Image.fromarray(img).resize((size[1], size[0]), Image.LANCZOS))


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blends an RGB heat map over an image (grey images are promoted to RGB)."""
    base = to_rgb(image)
    if heat.shape[:2] != base.shape[:2]:
        heat = np.asarray(Image.fromarray(heat).resize(base.shape[1::-1], Image.BILINEAR))
    mixed = (1 - alpha) * base.astype(np.float64) + alpha * heat.astype(np.float64)
    return np.round(mixed).astype(np.uint8)


def grid(
    images: Sequence[np.ndarray],
    cols: int,
    pad: int = 2,
    background: int = BACKGROUND,
    labels: Sequence[str] | None = None,
    label_px: int | None = None,
) -> np.ndarray:
    """Tiles equally sized uint8 images (grey or RGB) into one RGB picture, row by row.

    ``labels``, if given, are written in the top-left corner of each tile, ``label_px``
    pixels high (default: as large as the tile allows, 9 to 16 px), smaller where a label
    would not fit its tile's width.

    Example:
        >>> tiles = [np.zeros((84, 84), np.uint8)] * 2
        >>> grid(tiles, cols=2, labels=["#1 one", "#2 two"], label_px=18).shape
        (88, 174, 3)
    """
    if not images:
        raise ValueError("grid needs at least one image")
    tiles = [to_rgb(t) for t in images]
    h, w = tiles[0].shape[:2]
    rows = -(-len(tiles) // cols)
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), background, np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        out[y : y + h, x : x + w] = tile
    if labels:
        out = _label_tiles(out, labels, cols, (h, w), pad, label_px)
    return out


def _label_tiles(
    out: np.ndarray,
    labels: Sequence[str],
    cols: int,
    tile: tuple[int, int],
    pad: int,
    label_px: int | None = None,
) -> np.ndarray:
    """Writes each label at the top of its tile: white text on a darkened band, in a font of
    ``label_px`` or, by default, as large as the tile allows (9 to 16 px), so it reads on any
    picture (a photo, a bright digit) and from the back of a room; shrunk (to 9 px at least)
    where it would not fit the tile's width. The picture keeps its size."""
    h, w = tile
    pic = Image.fromarray(out)
    draw = ImageDraw.Draw(pic)
    for i, text in enumerate(labels):
        if not text:
            continue
        r, c = divmod(i, cols)
        x0, y0 = pad + c * (w + pad), pad + r * (h + pad)
        size = int(min(16, max(9, h // 7))) if label_px is None else int(label_px)
        font = _font(size)
        while size > 9 and draw.textlength(text, font=font) > w - 6:
            size -= 1
            font = _font(size)
        band = min(size + 6, h)
        region = out[y0 : y0 + band, x0 : x0 + w].astype(np.float64) * 0.3
        pic.paste(Image.fromarray(np.round(region).astype(np.uint8)), (x0, y0))
        draw.text((x0 + 3, y0 + 2), text, fill=(255, 255, 255), font=font)
    return np.asarray(pic)


def to_png(img: np.ndarray) -> bytes:
    """PNG bytes of a uint8 grey or RGB array (what ``ipywidgets.Image.value`` takes)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(img)).save(buf, format="PNG")
    return buf.getvalue()


def _font(size: int) -> ImageFont.ImageFont:
    """Pillow's bundled font at ``size`` pixels (a bitmap font where FreeType is missing)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow < 10.1 or no FreeType
        return ImageFont.load_default()


def _tick_text(value: float) -> str:
    text = f"{value:.3g}"
    return "0" if text in ("-0", "0.0") else text


def colour_bar(
    lo: float,
    hi: float,
    width: int,
    kind: str = "heat",
    ticks: Sequence[float] | None = None,
    height: int = 12,
    font_size: int = 13,
    background: int = BACKGROUND,
) -> np.ndarray:
    """A horizontal colour bar from ``lo`` to ``hi``, ``width`` pixels long, with values under it.

    ``kind`` is ``"heat"`` (the heat-map colours, dark = ``lo``), ``"signed"`` (projections:
    black = ``lo`` = -m, mid grey = 0, white = ``hi`` = +m) or ``"grey"`` (black to white).
    ``ticks`` default to both ends (and 0 for a signed bar). The labels are light text on the
    background grey, legible in the light and the dark theme.

    Example:
        >>> bar = colour_bar(0.0, 1.63, 168)
        >>> bar.shape[1], bar.dtype.name, bar[2, 1].tolist(), bar[2, -2].tolist()
        (168, 'uint8', [0, 0, 4], [252, 255, 164])
    """
    if kind not in ("heat", "signed", "grey"):
        raise ValueError(f"kind must be 'heat', 'signed' or 'grey'; got {kind!r}")
    width = max(int(width), 16)
    font = _font(font_size)
    text_h = font_size + 6
    out = np.full((height + 2 + text_h, width, 3), background, np.uint8)
    ramp = np.linspace(0, 255, width - 2).round().astype(np.uint8)
    colours = _LUT[ramp] if kind == "heat" else np.repeat(ramp[:, None], 3, axis=1)
    out[1 : 1 + height, 1 : width - 1] = colours[None]
    if ticks is None:
        ticks = [lo, 0.0, hi] if kind == "signed" and lo < 0 < hi else [lo, hi]
    span = hi - lo if hi > lo else 1.0
    pic = Image.fromarray(out)
    draw = ImageDraw.Draw(pic)
    for value in ticks:
        x = 1 + (width - 3) * (float(value) - lo) / span
        x = min(max(x, 1), width - 2)
        draw.line([(x, height + 1), (x, height + 4)], fill=(230, 230, 230))
        text = _tick_text(float(value))
        w = draw.textlength(text, font=font)
        left = min(max(x - w / 2, 0), width - w)
        draw.text((left, height + 4), text, fill=(235, 235, 235), font=font)
    return np.asarray(pic)
