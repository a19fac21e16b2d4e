"""Pictures made legible for a projector: whole-number enlargements, titles, legends, crops.

A figure seen from the back of a room needs pixels enlarged by a whole number (a 5x5 filter
drawn 5.6 times larger has rows of uneven height and looks soft), text in a band of its own
rather than over the picture, a legend for colours that code categories, and projections
cropped to where they are non-zero (a 11-pixel projection in a 28-pixel tile is a blob).

- :func:`fit`: the largest whole-number enlargement that fits a tile, centred on it;
- :func:`titled`: a picture with a text band above it;
- :func:`legend`: colour swatches with their meaning;
- :func:`crop_to_support`: each picture of a batch cut to one common square around its
  non-zero pixels;
- :func:`fig2_panel`: the paper's Fig. 2 for chosen (or seeded random) maps of a layer, and
  :func:`save_png` to write it.

Example:
    >>> import numpy as np
    >>> tile = fit(np.eye(5, dtype=np.uint8) * 255, 64)   # 5 px enlarged 12 times, centred
    >>> tile.shape, int(tile[2:62, 2:62].max()), int(tile[0, 0, 0])
    ((64, 64, 3), 255, 40)
    >>> titled(tile, "conv1 map 0").shape[1]
    64
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from zfwidgets.core import render
from zfwidgets.core.compose import SLIDE_TEXT, save_png
from zfwidgets.core.render import BACKGROUND, resize, to_rgb, upscale

if TYPE_CHECKING:
    from zfwidgets.core.inspector import Inspector
    from zfwidgets.core.mining import TopK
    from zfwidgets.core.preprocess import Preprocessing

__all__ = [
    "FIG2_MAPS",
    "FIG2_TILE",
    "TEXT_SIZE",
    "crop_to_support",
    "fig2_panel",
    "fit",
    "legend",
    "save_png",
    "titled",
]

TEXT_SIZE = 16  # pixels: legible on a projected slide (Pillow's bitmap default is about 8)
_TEXT_RGB = (235, 235, 235)  # light text on the background grey, in light and dark themes


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow < 10.1 or no FreeType
        return ImageFont.load_default()


def _side(side: int | tuple[int, int]) -> tuple[int, int]:
    h, w = (side, side) if isinstance(side, int) else side
    if h < 1 or w < 1:
        raise ValueError(f"a tile needs a positive size; got {side!r}")
    return int(h), int(w)


def fit(
    picture: np.ndarray,
    side: int | tuple[int, int],
    background: int = BACKGROUND,
    zoom: int | None = None,
) -> np.ndarray:
    """``picture`` enlarged by the largest whole number that fits ``side`` (h, w, or one int
    for a square), nearest neighbour, centred on an RGB tile of ``background``. A picture
    larger than the tile is shrunk smoothly to fit (keeping its aspect ratio). ``zoom``
    fixes the enlargement instead (so that crops of one layer cut short at the image border
    keep the scale of the others); it must fit the tile.

    Example:
        >>> tile = fit(np.full((11, 11), 255, np.uint8), 112)   # 11 px x 10 = 110, centred
        >>> int(tile[1:111, 1:111].min()), int(tile[0, 0, 0]), int(tile[111, 111, 0])
        (255, 40, 40)
    """
    h, w = _side(side)
    rgb = to_rgb(np.asarray(picture, dtype=np.uint8))
    ph, pw = rgb.shape[:2]
    if zoom is not None and (zoom < 1 or zoom * ph > h or zoom * pw > w):
        raise ValueError(f"a {ph}x{pw} picture enlarged {zoom} times does not fit {h}x{w}")
    zoom = min(h // ph, w // pw) if zoom is None else zoom
    if zoom >= 1:
        big = upscale(rgb, zoom)
    else:
        scale = min(h / ph, w / pw)
        big = resize(rgb, (max(1, int(ph * scale)), max(1, int(pw * scale))))
    tile = np.full((h, w, 3), background, np.uint8)
    top, left = (h - big.shape[0]) // 2, (w - big.shape[1]) // 2
    tile[top : top + big.shape[0], left : left + big.shape[1]] = big
    return tile


def titled(
    picture: np.ndarray, title: str, size: int = TEXT_SIZE, background: int = BACKGROUND
) -> np.ndarray:
    """``picture`` (grey or RGB) with ``title`` written in a band of its own above it, light
    text on ``background``, ``size`` pixels high (smaller if the title would not fit)."""
    rgb = to_rgb(np.asarray(picture, dtype=np.uint8))
    width = rgb.shape[1]
    band = Image.new("RGB", (width, size + 8), (background,) * 3)
    draw = ImageDraw.Draw(band)
    font = _font(size)
    while size > 8 and draw.textlength(title, font=font) > width - 4:
        size -= 1
        font = _font(size)
    draw.text((2, 3), title, fill=_TEXT_RGB, font=font)
    return np.concatenate([np.asarray(band), rgb], axis=0)


def legend(
    items: Sequence[tuple[Sequence[int], str]],
    size: int = TEXT_SIZE,
    background: int = BACKGROUND,
) -> np.ndarray:
    """A row of colour swatches, each followed by what it means: ``items`` are
    ``(rgb, text)``. The swatches are ``size`` x ``size`` pixels with a light frame.

    Example:
        >>> key = legend([((0, 0, 4), "0"), ((252, 255, 164), "2 windows")])
        >>> key[8, 4].tolist(), key.shape[0]
        ([0, 0, 4], 24)
    """
    if not items:
        raise ValueError("a legend needs at least one (colour, text) item")
    font = _font(size)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    widths = [int(probe.textlength(text, font=font)) + 1 for _, text in items]
    gap = size  # between one item's text and the next swatch
    total = sum(size + 6 + w + gap for w in widths) + 2
    picture = Image.new("RGB", (total, size + 8), (background,) * 3)
    draw = ImageDraw.Draw(picture)
    x = 2
    for (colour, text), w in zip(items, widths, strict=True):
        draw.rectangle([x - 1, 3, x + size, 4 + size], outline=_TEXT_RGB)
        draw.rectangle([x, 4, x + size - 1, 3 + size], fill=tuple(int(c) for c in colour))
        draw.text((x + size + 6, 3), text, fill=_TEXT_RGB, font=font)
        x += size + 6 + w + gap
    return np.asarray(picture)


def crop_to_support(pictures: Tensor, margin: int = 1) -> Tensor:
    """Each picture of ``pictures`` (N, C, H, W) cut to one common square: the side of the
    largest non-zero region among them (plus ``margin`` pixels each side), centred on each
    picture's own non-zero region and kept inside the picture. An all-zero picture gives its
    centre. Used to show layer-2 projections, which are zero outside a unit's receptive
    field, at a size where their detail (and any aliasing grid) can be judged.

    Example:
        >>> p = torch.zeros(2, 1, 28, 28)
        >>> p[0, 0, 3:6, 4:7], p[1, 0, 20:22, 10:11] = 1.0, -1.0
        >>> crop_to_support(p).shape, float(crop_to_support(p)[1].abs().sum())
        (torch.Size([2, 1, 5, 5]), 2.0)
    """
    if pictures.ndim != 4:
        raise ValueError(f"pictures must be (N, C, H, W); got shape {tuple(pictures.shape)}")
    n, _, height, width = pictures.shape
    live = pictures.detach().abs().amax(1) > 0  # (N, H, W)
    boxes = []
    for mask in live:
        rows, cols = torch.nonzero(mask.any(1)).flatten(), torch.nonzero(mask.any(0)).flatten()
        if len(rows) == 0:
            boxes.append((height // 2, height // 2, width // 2, width // 2))
        else:
            boxes.append((int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])))
    extent = max(max(b[1] - b[0], b[3] - b[2]) + 1 for b in boxes)
    side = min(extent + 2 * margin, height, width)
    out = pictures.new_zeros((n, pictures.shape[1], side, side))
    for i, (top, bottom, left, right) in enumerate(boxes):
        y = min(max((top + bottom + 1 - side) // 2, 0), height - side)
        x = min(max((left + right + 1 - side) // 2, 0), width - side)
        out[i] = pictures[i, :, y : y + side, x : x + side]
    return out


FIG2_TILE = 64  # about how big each Fig. 2 tile is: a 5x5 conv1 patch is enlarged 13 times
FIG2_MAPS = 6  # maps drawn when none are chosen: a seeded random subset of this many


def fig2_panel(
    insp: Inspector,
    top: TopK,
    data,
    layer: str,
    maps: None | int | Sequence[int] = None,
    seed: int = 0,
    method: str = "deconvnet",
    preprocessing: Preprocessing | None = None,
    *,
    count: int = FIG2_MAPS,
    tile: int | None = None,
    text_size: int = SLIDE_TEXT,
    cols: int = 2,
) -> np.ndarray:
    """The paper's Fig. 2 for ``layer``: per map, a 3x3 grid of its top-9 projections beside
    a 3x3 grid of their image patches, the pair titled ``"conv2 · map 17"``; ``cols`` pairs
    a row. Returns a uint8 RGB picture (write it with :func:`save_png`).

    Args:
        insp: the Inspector of the model ``top`` was mined on.
        top: mining results (:func:`zfwidgets.core.mining.mine`) that include ``layer``.
        data: the images ``top`` was mined over (a tensor, list or Dataset).
        layer: a layer name or alias.
        maps: the maps to draw (a list, or one map as an int); None draws ``count`` maps
            chosen at random with ``seed`` (the same seed gives the same maps), in order.
        method: the projection method (``"deconvnet"``, ``"guided"``, ``"saliency"``).
        preprocessing: draws patches in their true colours; None stretches each patch's
            values to 0..255.
        tile: each tile's side in pixels; by default the layer's receptive field enlarged by
            a whole number to at least :data:`FIG2_TILE` (a field larger than that is shrunk).
        text_size: the titles' letter size in pixels (22: legible on a slide).

    Raises:
        ValueError: a map out of range (the message names the range), or ``layer`` not mined.

    Example:
        >>> import torch
        >>> from zfwidgets import Inspector, demo
        >>> from zfwidgets.core.mining import mine
        >>> d = demo.load()
        >>> insp, some = Inspector(d.model), torch.utils.data.Subset(d.dataset, range(100))
        >>> top = mine(insp, some, layers=["conv1"], k=9, progress=False)
        >>> fig2_panel(insp, top, some, "conv1", maps=[0, 3]).shape
        (315, 920, 3)
        >>> fig2_panel(insp, top, some, "conv1", maps=99)
        Traceback (most recent call last):
        ValueError: map 99 is out of range for layer 'conv1': 0..31
    """
    from zfwidgets.core.top_views import top_projections  # core's heavy parts, on first use

    name = insp.layer_name(layer)
    if name not in top.layers:
        raise ValueError(f"layer '{layer}' was not mined; mined layers: {', '.join(top.layers)}")
    chosen = _fig2_maps(top.layers[name].values.shape[0], layer, maps, seed, count)
    first = data[0]
    shape = tuple((first[0] if isinstance(first, tuple | list) else first).shape[-3:])
    side = tile if tile is not None else _fig2_side(insp, layer, shape)
    label = insp.short_name(layer)
    pairs = []
    for channel in chosen:
        entries = top_projections(insp, top, data, layer, channel, method)
        projections = [_signal_picture(e.projection_patch.cpu(), method) for e in entries]
        patches = [_patch_picture(e, preprocessing) for e in entries]
        halves = [
            titled(render.grid(_nine(tiles, side), cols=3, pad=2), title, text_size)
            for tiles, title in ((projections, "projections"), (patches, "patches"))
        ]
        pair = render.grid(halves, cols=2, pad=10)  # a wide gap between the two halves
        pairs.append(titled(pair, f"{label} · map {channel}", text_size))
    return render.grid(pairs, cols=min(cols, len(pairs)), pad=16)


def _fig2_maps(
    total: int, layer: str, maps: None | int | Sequence[int], seed: int, count: int
) -> list[int]:
    if maps is None:
        if count < 1:
            raise ValueError(f"count must be at least 1; got {count}")
        picks = torch.randperm(total, generator=torch.Generator().manual_seed(int(seed)))
        return sorted(int(i) for i in picks[: min(count, total)])
    chosen = [maps] if isinstance(maps, int | np.integer) else list(maps)
    if not chosen:
        raise ValueError("maps is empty: give at least one map, or None for a random subset")
    for m in chosen:
        if isinstance(m, bool) or not isinstance(m, int | np.integer):
            raise TypeError(f"maps must be whole numbers; got {m!r}")
        if not 0 <= m < total:
            raise ValueError(f"map {m} is out of range for layer '{layer}': 0..{total - 1}")
    return [int(m) for m in chosen]


def _fig2_side(insp: Inspector, layer: str, shape: tuple[int, ...]) -> int:
    """The layer's receptive field (within the image) enlarged by a whole number to at least
    :data:`FIG2_TILE`; a field larger than that is shrunk to it."""
    size = insp.describe(shape)[insp.layer_index(layer)]["rf_size"] or shape[-1]
    size = min(size, shape[-2], shape[-1])
    return size * -(-FIG2_TILE // size) if size <= FIG2_TILE else FIG2_TILE


def _signal_picture(signal: Tensor, method: str) -> np.ndarray:
    if method == "saliency":
        return render.saliency_image(signal)
    return render.projection_image(signal)


def _patch_picture(entry, preprocessing: Preprocessing | None) -> np.ndarray:
    rows, cols = entry.box.slices
    if preprocessing is None:
        return render.input_image(entry.patch.cpu())
    return preprocessing.picture(entry.image.cpu())[rows, cols]


def _nine(pictures: list[np.ndarray], side: int) -> list[np.ndarray]:
    blank = np.full((side, side, 3), BACKGROUND, np.uint8)
    tiles = [fit(p, side) for p in pictures]
    return tiles + [blank] * (9 - len(tiles))
