"""A widget's current view as a file for slides: ``.png``, or the curves as ``.svg`` / ``.pdf``.

Every :class:`~zfwidgets.widgets.base.WidgetBase` widget has ``export(path)`` and
``export_png_bytes()`` (and an Export control beside its status line); they call this module.

- PNG: the pictures on screen (each visible ``ipywidgets.Image`` holding PNG or JPEG bytes,
  each ipycanvas ``Canvas`` as last put there, each bqplot ``Figure`` drawn headlessly with
  matplotlib) with the captions around them, laid out as the widget lays them out (a VBox's
  children stacked, an HBox's side by side, wrapping past :data:`PAGE_WIDTH`), on white, text
  at :data:`~zfwidgets.core.compose.SLIDE_TEXT` pixels. Controls and the status line are left
  out.
- SVG / PDF: the widget's visible bqplot Figures (Lines, Scatter, Bars, Hist) redrawn as vector
  graphics with matplotlib, one panel per Figure. bqplot's own ``save_png`` / ``save_svg`` need
  a browser, so the marks are read here: x / y, colours, labels, the scales' min / max, the
  axes' labels and tick values.

Nothing here changes the widget: it reads trait values and pictures only. The composition of
pictures is numpy in :mod:`zfwidgets.core.compose`.

Known limit: an ipycanvas Canvas is exported as its last ``put_image_data`` picture (the
widgets draw every canvas that way); strokes drawn over it afterwards (a selection frame) are
not in the export.

Example:
    >>> import ipywidgets as widgets
    >>> from zfwidgets.core import render
    >>> picture = widgets.Image(value=render.to_png(np.zeros((40, 60), np.uint8)))
    >>> box = widgets.VBox([widgets.Label("digits"), picture])
    >>> view = view_picture(box)
    >>> view.shape[1] >= 60, view.dtype.name
    (True, 'uint8')
"""

from __future__ import annotations

import html
import io
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import numpy as np
from PIL import Image

from zfwidgets.core import compose

__all__ = [
    "EXTENSIONS",
    "PAGE_WIDTH",
    "curves_file",
    "export_view",
    "figures_in",
    "png_bytes",
    "track_canvases",
    "view_picture",
]

PAGE_WIDTH = 1920  # a slide's width: rows of pictures wrap past it
EXTENSIONS = (".png", ".svg", ".pdf")
FIGURE_ZOOM = 1.6  # bqplot figures are drawn this much larger than on screen (legible ticks)
FONT_POINTS = 15.0  # matplotlib text at 100 dpi: ~21 px, legible on a slide
_GAP = 16
_SMALLEST = 9  # pictures this small or smaller are placeholders (blank_png(8)), not content


# ----- what the widget shows ------------------------------------------------------------------


def _hidden(widget: widgets.Widget) -> bool:
    layout = getattr(widget, "layout", None)
    if layout is None:
        return False
    return layout.display == "none" or layout.visibility == "hidden"


def _is_status(widget: widgets.Widget) -> bool:
    from zfwidgets.widgets.base import StatusLine

    return isinstance(widget, StatusLine)


def _is_export_control(widget: widgets.Widget) -> bool:
    return "zfw-export" in getattr(widget, "_dom_classes", ())


def _figure_class() -> type | None:
    try:
        from bqplot import Figure
    except ImportError:  # pragma: no cover - bqplot is a dependency
        return None
    return Figure


def _canvas_class() -> type | None:
    try:
        from ipycanvas import Canvas
    except ImportError:  # pragma: no cover - ipycanvas is a dependency
        return None
    return Canvas


def figures_in(widget: widgets.Widget) -> list[Any]:
    """The visible bqplot Figures inside ``widget``, in reading order."""
    figure = _figure_class()
    found: list[Any] = []

    def walk(w: widgets.Widget) -> None:
        if _hidden(w):
            return
        if figure is not None and isinstance(w, figure):
            found.append(w)
        elif isinstance(w, widgets.Box):
            for child in w.children:
                walk(child)

    walk(widget)
    return found


def _text_of(widget: widgets.Widget) -> str:
    """The words an HTML or Label widget shows (tags and style blocks removed)."""
    from zfwidgets.widgets.parts import Caption

    if isinstance(widget, Caption):
        return widget.text.strip()
    value = str(getattr(widget, "value", "") or "")
    if isinstance(widget, widgets.HTML | widgets.HTMLMath):
        value = re.sub(r"<style.*?</style>", " ", value, flags=re.S | re.I)
        value = re.sub(r"<br\s*/?>|</div>|</p>|</li>", "\n", value, flags=re.I)
        value = html.unescape(re.sub(r"<[^>]+>", "", value))
    lines = [" ".join(_legible(line).split()) for line in value.splitlines()]
    return "\n".join(line for line in lines if line)


def _is_control(widget: widgets.Widget) -> bool:
    return (
        not _hidden(widget)
        and isinstance(widget, widgets.ValueWidget | widgets.Button)
        and not isinstance(widget, widgets.HTML | widgets.HTMLMath | widgets.Label | widgets.Image)
    )


# Glyphs Pillow's bundled font lacks, as ones it has (the rest of such symbols are dropped).
_GLYPHS = {"×": "x", "━": "—", "●": "•", "┆": "|", "✓": "", "⚠": "!"}


def _legible(text: str) -> str:
    out = (_GLYPHS.get(c, c) for c in text)
    return "".join(c for c in out if ord(c) < 0x2000 or c in "–—‘’“”…•")


def _image_picture(image: widgets.Image) -> np.ndarray | None:
    if image.format.lower() not in ("png", "jpeg", "jpg") or not image.value:
        return None
    with Image.open(io.BytesIO(bytes(image.value))) as opened:
        picture = np.asarray(opened.convert("RGBA"))
    if max(picture.shape[:2]) <= _SMALLEST - 1:
        return None
    return compose.on_background(picture)


def _part(widget: widgets.Widget) -> tuple[str, Any] | None:
    """``("picture", array)``, ``("text", words)``, ``("row" | "column", parts)``, or None."""
    if _hidden(widget) or _is_status(widget) or _is_export_control(widget):
        return None
    figure, canvas = _figure_class(), _canvas_class()
    if isinstance(widget, widgets.Image):
        picture = _image_picture(widget)
        return None if picture is None else ("picture", picture)
    if figure is not None and isinstance(widget, figure):
        return "picture", _figure_picture(widget)
    if canvas is not None and isinstance(widget, canvas):
        picture = getattr(widget, "_zfw_picture", None)
        return None if picture is None else ("picture", compose.on_background(picture))
    if isinstance(widget, widgets.HTML | widgets.HTMLMath | widgets.Label):
        text = _text_of(widget)
        return ("text", text) if text else None
    if isinstance(widget, widgets.Box):
        parts = [p for p in (_part(child) for child in widget.children) if p is not None]
        if any(_is_control(child) for child in widget.children):  # a row of controls:
            parts = [p for p in parts if p[0] != "text"]  # their labels say nothing on a slide
        if not parts:
            return None
        across = isinstance(widget, widgets.HBox) or (
            type(widget) is widgets.Box and widget.layout.flex_flow in ("row", "row wrap")
        )
        return ("row" if across else "column"), parts
    return None  # a control: sliders, menus, buttons, progress bars


def _draw(part: tuple[str, Any], width: int) -> np.ndarray:
    kind, content = part
    if kind == "picture":
        return content
    if kind == "text":
        return compose.text_picture(content, width)
    pictures = [c for c in content if c[0] != "text"]
    drawn = {id(c): _draw(c, width) for c in pictures}
    # Text wraps to the width of the pictures beside it (or a readable line on its own).
    text_width = min(width, max([d.shape[1] for d in drawn.values()] + [720]))
    items = [drawn[id(c)] if id(c) in drawn else _draw(c, text_width) for c in content]
    if kind == "row":
        return compose.flow(items, width, _GAP)
    return compose.column(items, _GAP)


def view_picture(widget: widgets.Widget, width: int = PAGE_WIDTH) -> np.ndarray:
    """What ``widget`` shows, as one uint8 RGB picture on white (see the module's notes).

    Raises:
        ValueError: the widget shows no picture, curve or caption.
    """
    part = _part(widget)
    if part is None:
        raise ValueError(f"{type(widget).__name__} shows nothing to export yet")
    picture = _draw(part, width)
    margin = np.full((picture.shape[0] + 2 * _GAP, picture.shape[1] + 2 * _GAP, 3), 255, np.uint8)
    margin[_GAP:-_GAP, _GAP:-_GAP] = picture
    return margin


def png_bytes(widget: widgets.Widget) -> bytes:
    """:func:`view_picture` as PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(view_picture(widget)).save(buffer, format="PNG")
    return buffer.getvalue()


def export_view(widget: widgets.Widget, path: str | os.PathLike) -> Path:
    """Writes ``widget``'s view to ``path``: ``.png`` (the whole view) or ``.svg`` / ``.pdf``
    (its curves as vector graphics). Returns the path written.

    Raises:
        ValueError: an extension other than .png, .svg, .pdf; vector output of a widget
            without curves; a widget showing nothing.
        OSError: the file could not be written (the folder is missing or read-only).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in EXTENSIONS:
        raise ValueError(
            f"cannot export to {path.name!r}: the name must end in {', '.join(EXTENSIONS)}"
        )
    if suffix == ".png":
        content = png_bytes(widget)
    else:
        content = curves_file(widget, suffix[1:])
    path.write_bytes(content)
    return path


# ----- bqplot figures drawn with matplotlib ---------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _pixels(value: Any, default: int) -> int:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*px\s*", str(value or ""))
    return int(float(match.group(1))) if match else default


def _colour(value: Any, default: str = "#1f77b4") -> str:
    """A CSS colour as matplotlib takes it: ``var(--x, #abc)`` gives its fallback."""
    from matplotlib.colors import is_color_like

    text = str(value or "").strip()
    fallback = re.search(r"var\([^,]*,\s*([^)]+)\)", text)
    if fallback:
        text = fallback.group(1).strip()
    return text if text and is_color_like(text) else default


def _line_style(style: str) -> str:
    return {"dashed": "--", "dotted": ":", "dash_dotted": "-."}.get(style, "-")


def _rows(values: Any) -> list[np.ndarray]:
    """bqplot's x or y: one series (1-D) or several (2-D, or a list of arrays)."""
    if values is None:
        return []
    array = np.asarray(values, dtype=object if _ragged(values) else None)
    if array.dtype == object and array.ndim == 1 and len(array) and np.ndim(array[0]) > 0:
        return [np.asarray(v) for v in array]
    if array.ndim >= 2:
        return [np.asarray(v) for v in array]
    return [array]


def _ragged(values: Any) -> bool:
    return isinstance(values, list | tuple) and any(np.ndim(v) > 0 for v in values)


def _is_numeric(values: np.ndarray) -> bool:
    return np.asarray(values).dtype.kind in "biuf"


class _Axes:
    """One matplotlib Axes per bqplot y scale (a second one is a twin on the right)."""

    def __init__(self, ax: Any) -> None:
        self.first = ax
        self.by_scale: dict[int, Any] = {}
        self.categories: dict[int, list[str]] = {}

    def for_scale(self, scale: Any) -> Any:
        key = id(scale)
        if key not in self.by_scale:
            self.by_scale[key] = self.first if not self.by_scale else self.first.twinx()
        return self.by_scale[key]


def _draw_figure(figure: Any, ax: Any) -> None:
    """Redraws a bqplot ``figure``'s visible marks, scales and axes on matplotlib ``ax``."""
    import bqplot

    axes = _Axes(ax)
    x_scale = None
    for mark in figure.marks:
        if not mark.visible:
            continue
        scales = mark.scales
        x_scale = x_scale or scales.get("x") or scales.get("sample")
        target = axes.for_scale(scales.get("y") or scales.get("count") or object())
        if isinstance(mark, bqplot.Lines):
            _draw_lines(mark, target)
        elif isinstance(mark, bqplot.Scatter):
            _draw_scatter(mark, target)
        elif isinstance(mark, bqplot.Bars):
            _draw_bars(mark, target, axes)
        elif isinstance(mark, bqplot.Hist):
            sample = np.asarray(mark.sample, dtype=float)
            if sample.size:
                colours = list(mark.colors or [])
                target.hist(
                    sample, bins=int(mark.bins), color=_colour(colours[0] if colours else "")
                )
        if "y" in scales:
            _limits(scales["y"], target.set_ylim)
    if x_scale is not None:
        _limits(x_scale, ax.set_xlim)
    for axis in figure.axes:
        _draw_axis(axis, axes, ax)
    if figure.title:
        ax.set_title(figure.title)
    handles = [h for h in ax.get_legend_handles_labels()[1] if not h.startswith("_")]
    if handles and any(getattr(m, "display_legend", False) for m in figure.marks):
        ax.legend(fontsize=FONT_POINTS * 0.8, loc="best")


def _draw_lines(mark: Any, ax: Any) -> None:
    xs, ys = _rows(mark.x), _rows(mark.y)
    if not ys or not len(ys[0]):
        return
    colours = list(mark.colors or ["#1f77b4"])
    labels = list(mark.labels or [])
    for i, y in enumerate(ys):
        x = xs[i] if len(xs) > 1 else xs[0]
        if not _is_numeric(x):
            x = np.arange(len(y))
        n = min(len(x), len(y))
        ax.plot(
            np.asarray(x[:n], dtype=float),
            np.asarray(y[:n], dtype=float),
            color=_colour(colours[i % len(colours)]),
            linewidth=max(float(mark.stroke_width), 1.0) * 1.2,
            linestyle=_line_style(mark.line_style),
            marker="o" if mark.marker else None,
            label=labels[i] if i < len(labels) else f"_line{i}",
        )


def _draw_scatter(mark: Any, ax: Any) -> None:
    x, y = np.asarray(mark.x), np.asarray(mark.y)
    n = min(len(x), len(y))
    if n == 0:
        return
    colours = [_colour(c) for c in (mark.colors or ["#1f77b4"])]
    colour: Any = colours[0] if len(colours) == 1 or len(colours) < n else colours[:n]
    values = mark.color
    if values is not None and len(np.asarray(values)) == n and _is_numeric(np.asarray(values)):
        colour = np.asarray(values, dtype=float)
    sizes = mark.size
    size: Any = float(mark.default_size) * 0.6
    if sizes is not None and len(np.asarray(sizes)) == n:
        size = np.asarray(sizes, dtype=float) / max(float(np.max(sizes)), 1e-12) * size
    labels = list(mark.labels or [])
    ax.scatter(
        np.asarray(x[:n], dtype=float),
        np.asarray(y[:n], dtype=float),
        c=colour,
        s=size,
        edgecolors=_colour(mark.stroke, "none") if mark.stroke else "none",
        linewidths=float(mark.stroke_width or 0) if mark.stroke else 0,
        label=labels[0] if labels else "_scatter",
        zorder=3,
    )


def _draw_bars(mark: Any, ax: Any, axes: _Axes) -> None:
    x, y = np.asarray(mark.x), np.asarray(mark.y, dtype=float)
    if not y.size:
        return
    heights = y if y.ndim == 1 else y[0]
    positions = np.arange(len(heights)) if not _is_numeric(x) else np.asarray(x, dtype=float)
    colours = [_colour(c) for c in (mark.colors or ["#1f77b4"])]
    colour = colours if len(colours) >= len(heights) else colours[0]
    if mark.orientation == "horizontal":
        ax.barh(positions, heights, color=colour)
    else:
        ax.bar(positions, heights, color=colour)
    if not _is_numeric(x):
        axes.categories[id(mark.scales.get("x"))] = [str(v) for v in x]
        (ax.set_yticks if mark.orientation == "horizontal" else ax.set_xticks)(
            positions, [str(v) for v in x]
        )


def _limits(scale: Any, set_limits: Any) -> None:
    lo, hi = getattr(scale, "min", None), getattr(scale, "max", None)
    if lo is not None and hi is not None and float(hi) > float(lo):
        set_limits(float(lo), float(hi))


def _draw_axis(axis: Any, axes: _Axes, ax: Any) -> None:
    vertical = axis.orientation == "vertical" or axis.side in ("left", "right")
    target = axes.by_scale.get(id(axis.scale), ax) if vertical else ax
    if vertical and id(axis.scale) not in axes.by_scale:
        target = axes.for_scale(axis.scale)
        _limits(axis.scale, target.set_ylim)
    set_label = target.set_ylabel if vertical else target.set_xlabel
    if axis.label:
        set_label(axis.label)
    if id(axis.scale) in axes.categories:
        return
    ticks = axis.tick_values
    if axis.num_ticks == 0:
        (target.set_yticks if vertical else target.set_xticks)([])
    elif ticks is not None and len(np.asarray(ticks)) and _is_numeric(np.asarray(ticks)):
        (target.set_yticks if vertical else target.set_xticks)(np.asarray(ticks, dtype=float))
    if vertical and axis.side == "right" and target is not ax:
        target.yaxis.set_label_position("right")


def _matplotlib_figure(figures: list[Any], zoom: float = FIGURE_ZOOM) -> Any:
    """One matplotlib figure with a panel per bqplot Figure, stacked, white, slide-sized text."""
    plt = _pyplot()
    sizes = [
        (_pixels(f.layout.width, 480) * zoom / 100, _pixels(f.layout.height, 320) * zoom / 100)
        for f in figures
    ]
    width = max(w for w, _ in sizes)
    height = sum(h for _, h in sizes)
    with plt.rc_context({"font.size": FONT_POINTS, "svg.fonttype": "none"}):
        fig = plt.figure(figsize=(width, height), dpi=100, facecolor="white")
        grid = fig.add_gridspec(len(figures), 1, height_ratios=[h for _, h in sizes])
        for i, figure in enumerate(figures):
            ax = fig.add_subplot(grid[i])
            ax.set_facecolor("white")
            _draw_figure(figure, ax)
        fig.tight_layout()
    return fig


def _figure_picture(figure: Any) -> np.ndarray:
    plt = _pyplot()
    fig = _matplotlib_figure([figure])
    try:
        fig.canvas.draw()
        return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    finally:
        plt.close(fig)


def curves_file(widget: widgets.Widget, kind: str = "svg") -> bytes:
    """``widget``'s visible bqplot Figures as one ``kind`` file (``"svg"`` or ``"pdf"``):
    every curve, point and bar a vector path.

    Raises:
        ValueError: the widget shows no curves.
    """
    if kind not in ("svg", "pdf"):
        raise ValueError(f"vector export is svg or pdf; got {kind!r}")
    figures = figures_in(widget)
    if not figures:
        raise ValueError(
            f"{type(widget).__name__} shows no curves to export as .{kind}; export .png instead"
        )
    plt = _pyplot()
    fig = _matplotlib_figure(figures)
    try:
        buffer = io.BytesIO()
        with plt.rc_context({"svg.fonttype": "none"}):
            fig.savefig(buffer, format=kind, facecolor="white")
        return buffer.getvalue()
    finally:
        plt.close(fig)


# ----- canvases: remember what was put there --------------------------------------------------


def _canvases(widget: widgets.Widget) -> Iterator[Any]:
    canvas = _canvas_class()
    if canvas is not None and isinstance(widget, canvas):
        yield widget
    elif isinstance(widget, widgets.Box):
        for child in widget.children:
            yield from _canvases(child)


def track_canvases(widget: widgets.Widget) -> None:
    """Makes every ipycanvas Canvas inside ``widget`` remember the pictures put on it (a
    canvas keeps none in the kernel), so that an export can show it. Idempotent; only these
    canvases' own ``put_image_data`` is wrapped, never ipycanvas's class."""
    for canvas in _canvases(widget):
        if getattr(canvas, "_zfw_tracked", False):
            continue
        put = canvas.put_image_data

        def remember(image_data: Any, x: float = 0, y: float = 0, _c=canvas, _put=put) -> Any:
            result = _put(image_data, x, y)
            _paste(_c, np.asarray(image_data), int(x), int(y))
            return result

        canvas.put_image_data = remember
        canvas._zfw_tracked = True


def _paste(canvas: Any, picture: np.ndarray, x: int, y: int) -> None:
    if picture.dtype != np.uint8 or picture.ndim != 3:
        return
    rgba = (
        picture
        if picture.shape[2] == 4
        else np.concatenate(
            [picture[..., :3], np.full(picture.shape[:2] + (1,), 255, np.uint8)], axis=2
        )
    )
    height, width = int(canvas.height), int(canvas.width)
    held = getattr(canvas, "_zfw_picture", None)
    if x == 0 and y == 0 and rgba.shape[:2] == (height, width):
        canvas._zfw_picture = rgba.copy()
        return
    if held is None or held.shape[:2] != (height, width):
        held = np.zeros((height, width, 4), np.uint8)
    h = max(0, min(rgba.shape[0], height - y))
    w = max(0, min(rgba.shape[1], width - x))
    if h and w and x >= 0 and y >= 0:
        held[y : y + h, x : x + w] = rgba[:h, :w]
    canvas._zfw_picture = held
