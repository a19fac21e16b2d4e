"""Pictures put together into one: rows, columns, wrapped rows and text, for slides and files.

Pure numpy and Pillow (no widgets): :mod:`zfwidgets.widgets.export` walks a widget for what
it shows and lays the pictures out with these; :func:`save_png` writes any picture.

- :func:`text_picture`: text wrapped to a width, at a size legible on a slide;
- :func:`row` and :func:`column`: pictures side by side or stacked, top- / left-aligned;
- :func:`flow`: a row that wraps onto new lines past a width (as a notebook wraps a flex row);
- :func:`on_background`: an RGBA or grey picture as RGB on a plain background;
- :func:`save_png`: a uint8 picture to a PNG file.

Example:
    >>> import numpy as np
    >>> a, b = np.zeros((10, 20, 3), np.uint8), np.zeros((30, 5), np.uint8)
    >>> row([a, b], gap=4).shape, column([a, b], gap=4).shape
    ((30, 29, 3), (44, 20, 3))
    >>> text_picture("conv2 · map 17", 400).shape[0] >= SLIDE_TEXT
    True
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = [
    "SLIDE_TEXT",
    "WHITE",
    "column",
    "flow",
    "on_background",
    "row",
    "save_png",
    "text_picture",
]

SLIDE_TEXT = 22  # pixels: text that reads on a projected slide
WHITE = 255


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow < 10.1 or no FreeType
        return ImageFont.load_default()


def on_background(picture: np.ndarray, background: int = WHITE) -> np.ndarray:
    """A grey (H, W), RGB or RGBA (H, W, 4) uint8 picture as RGB; transparency is blended
    onto ``background``.

    Example:
        >>> on_background(np.zeros((1, 1, 4), np.uint8))[0, 0].tolist()   # fully transparent
        [255, 255, 255]
    """
    a = np.asarray(picture)
    if a.dtype != np.uint8:
        raise TypeError(f"pictures must be uint8; got {a.dtype}")
    if a.ndim == 2:
        return np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise ValueError(f"a picture must be (H, W), (H, W, 3) or (H, W, 4); got {a.shape}")
    if a.shape[2] == 1:
        return np.repeat(a, 3, axis=2)
    if a.shape[2] == 3:
        return a
    alpha = a[..., 3:].astype(np.float64) / 255.0
    mixed = a[..., :3].astype(np.float64) * alpha + background * (1.0 - alpha)
    return np.round(mixed).astype(np.uint8)


def text_picture(
    text: str,
    width: int,
    size: int = SLIDE_TEXT,
    colour: tuple[int, int, int] = (0, 0, 0),
    background: int = WHITE,
) -> np.ndarray:
    """``text`` in ``size``-pixel letters, wrapped at word boundaries to ``width`` pixels
    (a word longer than the line keeps its own line); the picture is as wide as its longest
    line (at most ``width``) and as high as its lines.

    Example:
        >>> text_picture("a b c " * 40, 200).shape[1] <= 200
        True
    """
    if width < 1:
        raise ValueError(f"width must be positive; got {width}")
    font = _font(size)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for word in paragraph.split():
            candidate = f"{line} {word}" if line else word
            if line and probe.textlength(candidate, font=font) > width - 4:
                lines.append(line)
                line = word
            else:
                line = candidate
        lines.append(line)
    step = int(round(size * 1.3))
    used = max(int(probe.textlength(line, font=font)) for line in lines) + 4
    picture = Image.new("RGB", (max(1, min(width, used)), step * len(lines) + 4), (background,) * 3)
    draw = ImageDraw.Draw(picture)
    for i, line in enumerate(lines):
        draw.text((2, 2 + step * i), line, fill=colour, font=font)
    return np.asarray(picture)


def row(pictures: Sequence[np.ndarray], gap: int = 16, background: int = WHITE) -> np.ndarray:
    """Pictures side by side, top-aligned, ``gap`` pixels apart, on ``background``."""
    return _join(pictures, gap, background, axis=1)


def column(pictures: Sequence[np.ndarray], gap: int = 12, background: int = WHITE) -> np.ndarray:
    """Pictures stacked top to bottom, left-aligned, ``gap`` pixels apart, on ``background``."""
    return _join(pictures, gap, background, axis=0)


def flow(
    pictures: Sequence[np.ndarray],
    width: int,
    gap: int = 16,
    background: int = WHITE,
) -> np.ndarray:
    """Pictures in reading order: side by side while they fit in ``width`` pixels, then on a
    new line (a picture wider than ``width`` gets a line of its own).

    Example:
        >>> tiles = [np.zeros((10, 40, 3), np.uint8)] * 3
        >>> flow(tiles, 100, gap=10).shape                    # two on the first line, one below
        (30, 90, 3)
    """
    lines: list[list[np.ndarray]] = []
    used = 0
    for picture in pictures:
        w = picture.shape[1]
        if lines and used + gap + w <= width:
            lines[-1].append(picture)
            used += gap + w
        else:
            lines.append([picture])
            used = w
    return column([row(line, gap, background) for line in lines], gap, background)


def _join(pictures: Sequence[np.ndarray], gap: int, background: int, axis: int) -> np.ndarray:
    if not pictures:
        raise ValueError("nothing to put together: no pictures")
    rgb = [on_background(p, background) for p in pictures]
    across = 1 - axis  # the other axis: the largest picture sets it
    extent = max(p.shape[across] for p in rgb)
    along = sum(p.shape[axis] for p in rgb) + gap * (len(rgb) - 1)
    shape = (along, extent, 3) if axis == 0 else (extent, along, 3)
    out = np.full(shape, background, np.uint8)
    at = 0
    for p in rgb:
        h, w = p.shape[:2]
        if axis == 0:
            out[at : at + h, :w] = p
            at += h + gap
        else:
            out[:h, at : at + w] = p
            at += w + gap
    return out


def save_png(picture: np.ndarray, path: str | os.PathLike) -> Path:
    """Writes a uint8 grey, RGB or RGBA picture to ``path`` as PNG; returns the path.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = save_png(np.zeros((4, 4, 3), np.uint8), Path(folder) / "blank.png")
        ...     Image.open(path).size
        (4, 4)
    """
    a = np.ascontiguousarray(picture)
    if a.dtype != np.uint8 or a.ndim not in (2, 3):
        raise ValueError(
            f"save_png takes a uint8 (H, W) or (H, W, C) picture; got {a.dtype} {a.shape}"
        )
    path = Path(path)
    Image.fromarray(a[..., 0] if a.ndim == 3 and a.shape[2] == 1 else a).save(path, format="PNG")
    return path
