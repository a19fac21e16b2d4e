"""Small pieces every zfwidgets widget shares.

(The skeleton itself, status line, background work and refusals, is
:mod:`zfwidgets.widgets.base`.)

- :class:`ImageSource`: the images a widget can show, from a tensor, a list or a Dataset.
- :func:`image_from_bytes`: an uploaded file as a model input.
- :func:`widget_preprocessing`: a widget's ``preprocessing=`` / ``mean=`` as one object.
- :class:`GridGeometry`: where each tile of a :func:`zfwidgets.core.render.grid` picture lies.
- picture helpers (:func:`png_image`, :func:`blank_png`, :func:`zoom_for`, :func:`rgba`,
  :func:`fit_patch`) and dark-theme-friendly HTML (:func:`text_html`, :func:`caption`).

Colours come from JupyterLab's CSS variables (with fallbacks for other front ends), so every
widget reads well in the light and the dark theme.

Example:
    >>> zoom_for(28), full_width().width
    (6, '100%')
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import ipywidgets as widgets
import numpy as np
import torch
import traitlets

from zfwidgets.core import render
from zfwidgets.core.data_labels import as_label
from zfwidgets.core.images import image_from_bytes
from zfwidgets.core.preprocess import Preprocessing, as_preprocessing
from zfwidgets.core.receptive import Box

__all__ = [
    "Caption",
    "GridGeometry",
    "ImageSource",
    "blank_png",
    "caption",
    "class_options",
    "fit_patch",
    "full_width",
    "nice_ticks",
    "projector_mode",
    "bar_font_size",
    "image_from_bytes",
    "place_patch",
    "png_image",
    "rgba",
    "size_canvas",
    "text_html",
    "uploaded_files",
    "mean_colour",
    "widget_preprocessing",
    "zoom_for",
    "area_downscale",
    "picture_scale",
    "show_at",
]

# JupyterLab theme variables, with fallbacks for front ends without them (classic, Voila).
COLOURS = {
    "body": "var(--jp-ui-font-color1, inherit)",
    "muted": "var(--jp-ui-font-color2, #777)",
    "error": "var(--jp-error-color1, #d32f2f)",
    "busy": "var(--jp-brand-color1, #1976d2)",
    "info": "var(--jp-success-color1, #388e3c)",
}
FONT = "var(--jp-ui-font-family, sans-serif)"
PICTURE_SIDE = 168  # about how big the main pictures are on screen, in pixels
# Projector mode (switched by zfwidgets.projector): text the back row of a lecture hall can
# read. Captions, ticks and labels follow through CSS (base.STYLE); the numbers drawn into
# colour-bar pictures follow through bar_font_size().
PROJECTOR_FONT_PX = 18
NORMAL_BAR_FONT_PX = 13
_projector = {"on": False}


def projector_mode() -> bool:
    """Whether projector mode is on (see :func:`zfwidgets.projector`).

    Example:
        >>> projector_mode()
        False
    """
    return _projector["on"]


def bar_font_size() -> int:
    """Pixel size of the numbers drawn under colour bars: larger in projector mode.

    Example:
        >>> bar_font_size()
        13
    """
    return PROJECTOR_FONT_PX if _projector["on"] else NORMAL_BAR_FONT_PX


# Projector mode's 18 px tick numbers need about this much more room than the usual 13 px.
PROJECTOR_ROOM = 1.4


def fit_ticks(figure: Any) -> None:
    """Gives a bqplot figure's tick numbers and axis titles room for the mode's text size.

    In projector mode the margin on each side that holds an axis, and each axis title's
    offset given in px, grow by ``PROJECTOR_ROOM``; out of it they are the figure's own again
    (recorded at the first call). The plot keeps its size: only the room inside it moves.

    Example:
        >>> from bqplot import Axis, Figure, LinearScale
        >>> y = Axis(scale=LinearScale(), orientation="vertical", label_offset="40px")
        >>> fig = Figure(axes=[y], fig_margin={"top": 10, "bottom": 40, "left": 50, "right": 10})
        >>> _projector["on"] = True; fit_ticks(fig); fig.fig_margin["left"], y.label_offset
        (70, '56px')
        >>> _projector["on"] = False; fit_ticks(fig); fig.fig_margin["left"], y.label_offset
        (50, '40px')
    """
    own = getattr(figure, "_zfw_own_room", None)
    if own is None:
        own = (dict(figure.fig_margin), [axis.label_offset for axis in figure.axes])
        figure._zfw_own_room = own
    margin, offsets = dict(own[0]), own[1]
    grow = PROJECTOR_ROOM if _projector["on"] else 1.0
    for axis, offset in zip(figure.axes, offsets, strict=False):  # axes added later: as given
        side = axis.side or ("left" if axis.orientation == "vertical" else "bottom")
        margin[side] = round(own[0][side] * grow)
        if isinstance(offset, str) and offset.endswith("px"):
            axis.label_offset = f"{round(float(offset[:-2]) * grow)}px"
    figure.fig_margin = margin


def class_options(classes: Sequence[str]) -> list[tuple[str, int]]:
    """A class menu's ``(label, index)`` options: ``"3: cat"``, but a class named by its own
    number reads ``"3"``, not ``"3: 3"``.

    Example:
        >>> class_options(["0", "cat"])
        [('0', 0), ('1: cat', 1)]
    """
    return [(name if name == str(i) else f"{i}: {name}", i) for i, name in enumerate(classes)]


def full_width(**kwargs: Any) -> widgets.Layout:
    """A layout that fills the notebook's width (extra CSS properties as keyword arguments)."""
    return widgets.Layout(width="100%", **kwargs)


def text_html(
    text: str, role: str = "body", title: str = "", size: str = "var(--jp-ui-font-size1, 13px)"
) -> str:
    """``text`` (escaped) as HTML in a theme colour, with ``title`` as its hover help.

    ``role`` is body, muted, error, busy or info.
    """
    # A block with its own line height: ipywidgets gives HTML content a 28 px line box.
    hover = f' title="{html.escape(title)}"' if title else ""
    return (
        f'<div{hover} style="color: {COLOURS[role]}; font-family: {FONT}; font-size: {size}; '
        f'line-height: 1.35; margin: 2px 0">{html.escape(text)}</div>'
    )


class Caption(widgets.HTML):
    """A line of text in a theme colour with hover help: set ``text``, ``role``, ``help``.

    The help is the HTML ``title`` of the text itself: an HTML widget's own ``tooltip`` lands
    on its hidden description label in ipywidgets 8.1, where nobody can hover over it.

    Example:
        >>> c = Caption(text="map 5", help="the selected feature map")
        >>> 'title="the selected feature map"' in c.value
        True
    """

    text = traitlets.Unicode("")
    role = traitlets.Enum(tuple(COLOURS), default_value="muted")
    help = traitlets.Unicode("")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_class("zfw-caption")
        self._show()

    def say(self, text: str, role: str | None = None) -> None:
        """Sets the text (and the role) in one update."""
        with self.hold_trait_notifications():
            self.text = text
            if role is not None:
                self.role = role

    @traitlets.observe("text", "role", "help")
    def _show(self, change: dict | None = None) -> None:
        self.value = text_html(self.text, self.role, self.help)


def caption(text: str = "", role: str = "muted", tooltip: str = "", **layout: Any) -> Caption:
    """A :class:`Caption` (small text under or above a picture); ``tooltip`` explains it."""
    return Caption(text=text, role=role, help=tooltip, layout=widgets.Layout(**layout))


class ImageSource:
    """The images a widget can show: a tensor (N, C, H, W), one image (C, H, W), a list of
    images, or a Dataset whose items are images or ``(image, label)``.

    Example:
        >>> source = ImageSource(torch.zeros(5, 1, 28, 28))
        >>> len(source), source[0][0].shape, source[0][1]
        (5, torch.Size([1, 28, 28]), None)
    """

    def __init__(self, images: Any = None) -> None:
        if isinstance(images, torch.Tensor | np.ndarray) and images.ndim == 3:
            images = images[None]  # one image: a source of one
        if images is not None and not hasattr(images, "__getitem__"):
            raise TypeError(
                "images must be a tensor (N, C, H, W), a list of images or a Dataset; "
                f"got {type(images).__name__}"
            )
        self.images = images

    def __len__(self) -> int:
        return 0 if self.images is None else len(self.images)

    def __getitem__(self, index: int) -> tuple[Any, int | None]:
        """``(image, label)``; label is None when the items carry none."""
        item = self.images[index]
        if isinstance(item, tuple | list):
            # a label that is not a class number ("cat", a box) is no label, not a crash
            return item[0], (as_label(item[1]) if len(item) > 1 else None)
        return item, None

    @property
    def shape(self) -> tuple[int, ...] | None:
        """Shape (C, H, W) of the first image, or None when there are no images."""
        if len(self) == 0:
            return None
        return tuple(self[0][0].shape[-3:])


ALLOWED_PREPROCESSING = (
    "a zfwidgets Preprocessing, torchvision's weights.transforms() or a transforms.Compose "
    "(preprocessing=), or the older mean= alone: a mean image (C, H, W) or one number per channel"
)


def widget_preprocessing(
    widget: str, preprocessing: Any = None, mean: Any = None, channels: int | None = None
) -> Preprocessing | None:
    """What a widget was given as ``preprocessing=`` or the older ``mean=``, as one
    :class:`~zfwidgets.core.preprocess.Preprocessing` (None when neither).

    ``channels`` (the model's, when known) spreads a single mean number over every channel.

    Raises:
        ValueError: both are given, or the value cannot be read; the message names the widget,
            what was given and what is allowed.

    Example:
        >>> widget_preprocessing("LayerBrowser", mean=torch.tensor([0.5, 0.4, 0.3])).describe()
        'RGB any size, (x - (0.5, 0.4, 0.3)) / (1, 1, 1)'
        >>> widget_preprocessing("LayerBrowser", preprocessing="imagenet")
        Traceback (most recent call last):
        ...
        ValueError: LayerBrowser: preprocessing='imagenet' cannot be used (cannot read the ...
    """
    if preprocessing is not None and mean is not None:
        raise ValueError(
            f"{widget}: give either preprocessing= (the model's preprocessing) or the older "
            "mean=, not both"
        )
    if preprocessing is None and isinstance(mean, Preprocessing):  # the object given as mean=
        preprocessing, mean = mean, None
    if preprocessing is None and mean is None:
        return None
    given, what = (preprocessing, "preprocessing") if mean is None else (mean, "mean")
    spread = channels if mean is not None and np.size(_numbers(mean)) == 1 else None
    try:
        prep = as_preprocessing(preprocessing, mean, spread if spread in (1, 3) else None)
    except (TypeError, ValueError) as err:
        if hasattr(given, "shape"):
            shown = f"<{type(given).__name__} of shape {tuple(given.shape)}>"
        else:
            shown = f"{given!r:.60}"
        raise ValueError(
            f"{widget}: {what}={shown} cannot be used ({err}); allowed: {ALLOWED_PREPROCESSING}"
        ) from err
    if channels is not None and prep.channels != channels:
        raise ValueError(
            f"{widget}: the {what} is for {'grey' if prep.channels == 1 else 'RGB'} pictures "
            f"({prep.describe()}) but the model takes {channels} channels"
        )
    return prep


def mean_colour(preprocessing: Preprocessing) -> str:
    """The colour of model input 0 (the occluder's fill) in words, for captions.

    Example:
        >>> from zfwidgets.core.preprocess import IMAGENET
        >>> mean_colour(IMAGENET)
        'RGB (124, 116, 104)'
        >>> mean_colour(Preprocessing(mean=(0.5,), std=(1.0,), channels=1))
        'grey level 128'
    """
    zero = torch.zeros(preprocessing.channels, 1, 1)
    if preprocessing.mean_image:
        return "the data set's mean image"
    pixel = preprocessing.picture(zero).reshape(-1).tolist()
    if preprocessing.channels == 1:
        return f"grey level {pixel[0]}"
    return "RGB (" + ", ".join(str(v) for v in pixel) + ")"


def _numbers(value: Any) -> Any:
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value


def uploaded_files(value: Any) -> list[tuple[str, bytes]]:
    """``(name, content)`` of each file in a ``FileUpload.value`` (ipywidgets 7 or 8 form)."""
    entries = value.values() if isinstance(value, dict) else value
    files = []
    for entry in entries or ():
        name = entry.get("name") or entry.get("metadata", {}).get("name", "upload")
        files.append((name, bytes(entry["content"])))
    return files


def nice_ticks(
    low: float, high: float, count: int = 5, steps: Sequence[float] = (1, 2, 2.5, 5)
) -> list[float]:
    """Round tick values inside [low, high]: multiples of a step ``m x 10^n`` (``m`` from
    ``steps``) giving at most about ``count`` intervals. (bqplot's ``num_ticks`` spaces ticks
    evenly between the padded ends of the scale, which gives labels such as -0.067 and 0.31.)

    Example:
        >>> nice_ticks(0, 1), nice_ticks(-6, 6, steps=(1, 2, 3, 5))
        ([0.0, 0.2, 0.4, 0.6, 0.8, 1.0], [-6.0, -3.0, 0.0, 3.0, 6.0])
    """
    span = high - low
    if not span > 0:
        return [float(low)]
    power = 10.0 ** np.floor(np.log10(span / count))
    step = next(
        (m * f * power for f in (1, 10) for m in steps if m * f * power >= span / count - 1e-12),
        10 * power,
    )
    first = np.ceil(low / step - 1e-9)
    last = np.floor(high / step + 1e-9)
    return [round(float(i * step), 10) + 0.0 for i in np.arange(first, last + 1)]


# ----- pictures ------------------------------------------------------------------------------


def png_image(tooltip: str = "", css_class: str = "", **layout: Any) -> widgets.Image:
    """An empty PNG ``Image`` widget, with a CSS class (for tests and styling).

    ``tooltip`` is the picture's help text. It is kept as ``image.help_text`` and deliberately
    not set as the Image's ``tooltip``: ipywidgets 8.1's front end fails to draw an Image, Box
    or Canvas that has one (jupyter-widgets/ipywidgets#3860). Show it on a caption instead.

    The picture is shown at its own pixel size (``align_self: flex-start``): a flex box would
    otherwise stretch it to the box's width (168 px shown at 180), which blurs every pixel.
    Draw it at the size it should appear on screen, an integer multiple of the data.
    """
    layout = {"align_self": "flex-start", **layout}
    image = widgets.Image(value=blank_png(8), format="png", layout=widgets.Layout(**layout))
    image.help_text = tooltip
    image.add_class("zfw-picture")
    if css_class:
        image.add_class(css_class)
    return image


def blank_png(side: int = PICTURE_SIDE) -> bytes:
    """A square of the background grey: shown where there is nothing to show yet."""
    return render.to_png(np.full((side, side), render.BACKGROUND, np.uint8))


def zoom_for(size: int, target: int = PICTURE_SIDE) -> int:
    """The whole-number enlargement that brings ``size`` pixels closest to ``target``."""
    return max(1, round(target / max(size, 1)))


def picture_scale(size: int, largest: int, target: int = PICTURE_SIDE) -> tuple[int, int]:
    """``(zoom, shrink)`` for a picture of ``size`` pixels in ``largest`` pixels of room: the
    whole-number enlargement closest to ``target`` (shrink 1), or, when even 1:1 is wider than
    the room, the smallest whole-number reduction that fits (zoom 1). Whole numbers keep every
    pixel crisp; a reduction averages blocks of pixels (:func:`area_downscale`).

    Example:
        >>> picture_scale(28, 180), picture_scale(224, 180), picture_scale(224, 400)
        ((6, 1), (1, 2), (1, 1))
    """
    zoom = zoom_for(size, target)
    if size * zoom <= largest:
        return zoom, 1
    if size <= largest:  # a smaller enlargement fits
        return largest // size, 1
    return 1, -(-size // max(largest, 1))  # ceil: the fewest times smaller that fits


def area_downscale(picture: np.ndarray, factor: int) -> np.ndarray:
    """``picture`` (H, W) or (H, W, C) made ``factor`` times smaller: each pixel the mean of a
    ``factor`` x ``factor`` block (a partial block at the edge: the mean of the pixels it has),
    rounded to the input's integer type, so no detail is dropped and no colour invented.

    Example:
        >>> area_downscale(np.array([[0, 2, 4, 4], [2, 4, 8, 8]], np.uint8), 2).tolist()
        [[2, 6]]
    """
    if not isinstance(factor, int) or factor < 1:
        raise ValueError(f"area_downscale: factor must be a whole number >= 1; got {factor!r}")
    if factor == 1:
        return picture
    starts = [np.arange(0, n, factor) for n in picture.shape[:2]]
    sums = picture.astype(np.float64)
    for axis, at in enumerate(starts):
        sums = np.add.reduceat(sums, at, axis=axis)
    height, width = picture.shape[:2]
    rows = np.diff(np.append(starts[0], height))  # pixels in each block (the last: the rest)
    cols = np.diff(np.append(starts[1], width))
    counts = np.outer(rows, cols)
    mean = sums / counts.reshape(counts.shape + (1,) * (picture.ndim - 2))
    if np.issubdtype(picture.dtype, np.integer):
        return np.rint(mean).astype(picture.dtype)
    return mean.astype(picture.dtype)


def show_at(picture: np.ndarray, zoom: int, shrink: int) -> np.ndarray:
    """``picture`` enlarged ``zoom`` times (nearest: crisp) or reduced ``shrink`` times (block
    means), as :func:`picture_scale` chose.

    Example:
        >>> show_at(np.ones((224, 224), np.uint8), 1, 2).shape
        (112, 112)
    """
    return area_downscale(picture, shrink) if shrink > 1 else render.upscale(picture, zoom)


def size_canvas(canvas: Any, height: int, width: int) -> None:
    """Gives an ipycanvas ``canvas`` ``height`` x ``width`` pixels and shows it at exactly that
    size on screen: a canvas keeps its first CSS size otherwise, and one stretched from 379 to
    444 px looks soft. Call inside ``hold_canvas()``, before drawing."""
    if (canvas.width, canvas.height) != (width, height):
        canvas.width, canvas.height = width, height
    if (canvas.layout.width, canvas.layout.height) != (f"{width}px", f"{height}px"):
        canvas.layout.width, canvas.layout.height = f"{width}px", f"{height}px"


def rgba(picture: np.ndarray) -> np.ndarray:
    """A grey or RGB uint8 picture as opaque RGBA (what ipycanvas sends losslessly, as PNG)."""
    rgb = render.to_rgb(picture)
    alpha = np.full(rgb.shape[:2] + (1,), 255, np.uint8)
    return np.concatenate([rgb, alpha], axis=2)


def fit_patch(picture: np.ndarray, box: Box, side: tuple[int, int]) -> np.ndarray:
    """The part of a whole-image ``picture`` inside ``box``, placed by :func:`place_patch`."""
    rows, cols = box.slices
    return place_patch(picture[rows, cols], box, side)


def place_patch(patch: np.ndarray, box: Box, side: tuple[int, int]) -> np.ndarray:
    """A ``patch`` already cut out at ``box``, placed on a ``side`` (h, w) tile of background.

    A box cut short by the image border keeps its content on the side away from that border,
    so that every patch of one layer lines up as in the paper's Fig. 2.
    """
    h, w = max(side[0], patch.shape[0]), max(side[1], patch.shape[1])
    tile = np.full((h, w) + patch.shape[2:], render.BACKGROUND, np.uint8)
    top = h - patch.shape[0] if box.top == 0 else 0
    left = w - patch.shape[1] if box.left == 0 else 0
    tile[top : top + patch.shape[0], left : left + patch.shape[1]] = patch
    return tile


@dataclass(frozen=True)
class GridGeometry:
    """Where the tiles of ``render.grid(tiles, cols, pad)`` lie, to map clicks to tiles.

    Example:
        >>> g = GridGeometry(count=10, tile=(20, 20), cols=4, pad=2)
        >>> g.size, g.origin(5), g.cell_at(30, 30)
        ((90, 68), (24, 24), 5)
    """

    count: int
    tile: tuple[int, int]
    cols: int
    pad: int

    @property
    def rows(self) -> int:
        """Rows of tiles."""
        return -(-self.count // self.cols)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the whole picture in pixels."""
        h, w = self.tile
        return self.cols * (w + self.pad) + self.pad, self.rows * (h + self.pad) + self.pad

    def origin(self, index: int) -> tuple[int, int]:
        """(x, y) of tile ``index``'s top-left pixel."""
        r, c = divmod(index, self.cols)
        return self.pad + c * (self.tile[1] + self.pad), self.pad + r * (self.tile[0] + self.pad)

    def center(self, index: int) -> tuple[float, float]:
        """(x, y) of tile ``index``'s centre."""
        x, y = self.origin(index)
        return x + self.tile[1] / 2, y + self.tile[0] / 2

    def cell_at(self, x: float, y: float) -> int | None:
        """The tile under (x, y); a gap counts for the tile left of / above it; None outside."""
        c = int((x - self.pad) // (self.tile[1] + self.pad))
        r = int((y - self.pad) // (self.tile[0] + self.pad))
        if x < 0 or y < 0 or not (0 <= c < self.cols and 0 <= r < self.rows):
            return None
        index = r * self.cols + c
        return index if index < self.count else None

    @staticmethod
    def for_tiles(
        count: int,
        map_size: Sequence[int],
        width: int = 360,
        height: int = 400,
        pad: int = 3,
        biggest: int = 64,
    ) -> tuple[GridGeometry, int]:
        """A layout of ``count`` maps of ``map_size`` (h, w) in about ``width`` x ``height``.

        Returns ``(geometry, zoom)``, ``zoom`` being each map's whole-number enlargement. The
        column count that gives the biggest tiles (at most ``biggest`` pixels) wins; among
        equals, the one leaving the fewest empty cells in its last row (64 maps as 8 x 8, not
        9 across with one map alone), then the wider; when nothing fits, maps stay 1:1 in a
        near-square grid.

        Example:
            >>> GridGeometry.for_tiles(32, (28, 28))[0].cols
            6
        """
        h, w = int(map_size[0]), int(map_size[1])
        best, best_cols = (0, 0), max(1, int(np.ceil(np.sqrt(count))))
        for cols in range(count, 0, -1):
            rows = -(-count // cols)
            zoom = min(
                (width // cols - pad) // w,
                (height // rows - pad) // h,
                max(1, biggest // max(h, w)),
            )
            score = (zoom, count - rows * cols)  # bigger tiles, then fewer empty cells
            if score > best:  # strictly: the wider layout stays among equals
                best, best_cols = score, cols
        zoom = max(best[0], 1)
        return GridGeometry(count, (h * zoom, w * zoom), best_cols, pad), zoom
