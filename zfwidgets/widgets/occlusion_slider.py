"""Occlusion sensitivity (paper Fig. 7) as a live widget: drag a grey square over an image.

The square's position drives live readouts (probability of the target class, the top 5
classes, the total activity of the watched feature map); the full maps of a sweep over every
position, (b) activity, (d) target probability and (e) most probable class, plus (c) the
projection of the watched map, are computed in a background thread and drawn beside the image.

Example:
    >>> from zfwidgets import demo
    >>> from zfwidgets.widgets.occlusion_slider import OcclusionSlider
    >>> d = demo.load()
    >>> image, label = d.dataset[0]
    >>> w = OcclusionSlider(d.model, image, classes=d.classes, mean=d.mean)
    >>> w.x, w.y = 10, 4        # move the square: readouts follow at once
    >>> w.wait()                # the maps of the full sweep are ready
    True
    >>> w.maps is not None and w.status.startswith("maps ready")
    True
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import ipywidgets as widgets
import numpy as np
import traitlets
from bqplot import Axis, Bars, Figure, LinearScale, OrdinalScale
from ipycanvas import Canvas
from torch import Tensor, nn

from zfwidgets.core import render
from zfwidgets.core.inspector import Inspector
from zfwidgets.core.methods import REGISTRY
from zfwidgets.core.occlusion import (
    OcclusionMaps,
    OcclusionReading,
    occlude,
    occlusion_at,
    occlusion_sweep,
)
from zfwidgets.core.preprocess import Preprocessing
from zfwidgets.widgets.base import (
    StatusLine,
    WidgetBase,
    class_names,
    errors_to,
    inspector_for,
    refusing,
)
from zfwidgets.widgets.canvas_views import redraw_for_new_views
from zfwidgets.widgets.menus import LayerMenu, display_name
from zfwidgets.widgets.parts import (
    COLOURS,
    FONT,
    bar_font_size,
    caption,
    class_options,
    full_width,
    mean_colour,
    png_image,
    rgba,
    text_html,
    widget_preprocessing,
    zoom_for,
)
from zfwidgets.widgets.top_nine import switch_note, unit_view

__all__ = ["OcclusionSlider", "bar_labels"]

CANVAS_SIDE = 224  # about how big the draggable image is on screen, in pixels
MAP_SIDE = 168  # about how big the projection (c) is on screen
POSITION_SIDE = 200  # about how big each map over occluder positions, (b) (d) (e), is on screen
SHORT_LABEL = 4  # class names up to this long stand upright under the top-5 bars
SQUARE_EDGE = (255, 196, 0)  # the occluder's outline: amber reads on black digits and on grey
MARK_EDGE = (255, 255, 255)  # the current position on the maps
MARK_SHADOW = (0, 0, 0)
BAR_COLOUR = "#1976d2"  # SVG fill: a fixed blue that reads on both themes


def _outline(picture: np.ndarray, box: tuple[int, int, int, int], colour, width: int = 2):
    """Draws the border of ``box`` (top, left, height, width) on an RGB picture, in place."""
    top, left, h, w = box
    bottom, right = top + h, left + w
    rows, cols = picture.shape[:2]
    top, left = max(top, 0), max(left, 0)
    bottom, right = min(bottom, rows), min(right, cols)
    picture[top : top + width, left:right] = colour
    picture[max(bottom - width, top) : bottom, left:right] = colour
    picture[top:bottom, left : left + width] = colour
    picture[top:bottom, max(right - width, left) : right] = colour
    return picture


def bar_labels(classes: Sequence[str], longest: int = 12) -> list[str]:
    """One distinct label per class, short enough for the top-5 bars: ``"Greater Swi…"``.

    A label that two classes would share (ImageNet has two "crane"s) gets the class number.
    """
    short = [c if len(c) <= longest else c[: longest - 1] + "…" for c in classes]
    counts: dict[str, int] = {}
    for label in short:
        counts[label] = counts.get(label, 0) + 1
    return [f"{label} ({i})" if counts[label] > 1 else label for i, label in enumerate(short)]


def _rgb(picture: np.ndarray) -> np.ndarray:
    return render.to_rgb(picture).copy()


def _nearest(positions: Sequence[int], value: int) -> int:
    """Index of the sweep position closest to ``value`` (ties go to the earlier one)."""
    return min(range(len(positions)), key=lambda i: abs(positions[i] - value))


class OcclusionSlider(WidgetBase):
    """Zeiler & Fergus's occlusion experiment (Fig. 7) on one image, live.

    Args:
        model_or_inspector: a convnet (wrapped in an :class:`Inspector`, never modified) or an
            Inspector.
        image: one model input (C, H, W) or (1, C, H, W), as the model takes it.
        target: the class whose probability is watched; default the predicted class.
        classes: class names (index = class); default the class numbers.
        mean: the older shorthand for ``preprocessing``: the mean image (or one number per
            channel) that was subtracted from ``image``, with std 1.
        layer: the layer whose strongest map (on the unoccluded image) is watched: a block
            (``conv5``, ``layer3``) or any step name; default ``Inspector.default_layer``
            (the last block with maps larger than 1x1). The menu lists the model's blocks.
        size, stride: the occluder's side and the sweep's step in pixels; default a quarter of
            the image and a third of that.
        fill: the occluder's value in model-input units; default the preprocessing's fill
            (0, the mean: the mean colour, or the data set's mean image).
        preprocessing: the model's preprocessing (a
            :class:`~zfwidgets.core.preprocess.Preprocessing`, or torchvision's
            ``weights.transforms()``): the image and the occluder are drawn in their true
            colours (``x * std + mean``). Without it (and without ``mean``) the picture is
            stretched min..max.

    Traits ``x``, ``y`` (top-left corner of the square), ``size``, ``stride``, ``target`` and
    ``layer`` drive everything; a bad value shows in ``status`` (and the status line) and the
    trait keeps its previous value. Map (c) is the deconvnet projection where the model allows
    one, else saliency (its caption says which, and why). ``reading`` is the current
    :class:`~zfwidgets.core.occlusion.OcclusionReading`, ``maps`` the last finished
    :class:`~zfwidgets.core.occlusion.OcclusionMaps` (None while the first sweep runs).

    Raises:
        ValueError, TypeError: the image is not one the model takes (the core's message); an
            existing widget shows the same errors from :meth:`set_image` in its status line.
    """

    css_class = "zfw-occlusion-slider"
    status_hint = "drag the square on the image, or use the x / y sliders"
    progress_width = "320px"
    name_in_refusals = True  # "size: occluder size 40 is larger than the image (28x28)"

    x = traitlets.Int(0)
    y = traitlets.Int(0)
    size = traitlets.Int(1)
    stride = traitlets.Int(1)
    target = traitlets.Int(0)
    layer = traitlets.Unicode("")

    def __init__(
        self,
        model_or_inspector: nn.Module | Inspector,
        image: Any,
        target: int | None = None,
        classes: Sequence[str] | None = None,
        mean: Any = None,
        layer: str | None = None,
        size: int | None = None,
        stride: int | None = None,
        fill: float | Tensor | None = None,
        preprocessing: Any = None,
    ) -> None:
        super().__init__()
        self.inspector = inspector_for(model_or_inspector)
        self.preprocessing: Preprocessing | None = widget_preprocessing(
            "OcclusionSlider", preprocessing, mean, self.inspector.in_channels
        )
        self._image = self.inspector.image(image)  # raises the core's message for a bad image
        if fill is None:
            fill = 0.0 if self.preprocessing is None else self.preprocessing.fill
        self._fill = fill
        self._dragging = False
        self.reading: OcclusionReading | None = None
        self.maps: OcclusionMaps | None = None
        self._map_pictures: dict[str, np.ndarray] = {}
        self._classes = class_names(classes, int(self.inspector.predict(self._image).numel()))
        self._bar_labels = bar_labels(self._classes)
        self._build()
        self._set_defaults(target, layer, size, stride)
        self._finish_building()
        self._show_position()
        self._start_sweep()

    # ----- public -------------------------------------------------------------------------
    @property
    def image(self) -> Tensor:
        """The image under the occluder, (1, C, H, W) on the inspector's device."""
        return self._image

    def set_image(self, image: Any, target: int | None = None) -> None:
        """Shows a new image (target: the given class, else its predicted class).

        A bad image shows in the status line and the widget keeps the previous one.
        """
        with errors_to(self.status_line, "image"):
            img = self.inspector.image(image)
            if tuple(img.shape[-2:]) != tuple(self._image.shape[-2:]):
                raise ValueError(
                    f"the new image is {tuple(img.shape[-2:])}; this widget shows "
                    f"{tuple(self._image.shape[-2:])} images"
                )
            new_target = self._predicted(img) if target is None else target
            occlusion_at(self.inspector, img, 0, 0, self.size, self._fill, new_target, self.layer)
            with self._quietly():
                self._image = img
                self.target = new_target
            self._base_picture = self._picture(img[0])
            self.status_line.clear()
            self._show_position()
            self._start_sweep(force=True)

    # Old names, still read by tests/reliability: the status line, and the Inspector that the
    # sweep used to have to itself (it now shares ``inspector``, which is thread-safe).
    @property
    def _status(self) -> StatusLine:
        return self.status_line

    @property
    def _sweep_insp(self) -> Inspector:
        return self.inspector

    # ----- building -----------------------------------------------------------------------
    def _build(self) -> None:
        height, width = self._image.shape[-2:]
        self._zoom = zoom_for(max(height, width), CANVAS_SIDE)
        self._base_picture = self._picture(self._image[0])
        self._canvas = Canvas(
            width=width * self._zoom,
            height=height * self._zoom,
            layout=widgets.Layout(
                width=f"{width * self._zoom}px", height=f"{height * self._zoom}px"
            ),
        )
        self._canvas.add_class("zfw-occlusion-canvas")
        self._canvas.on_mouse_down(self._mouse_down)
        self._canvas.on_mouse_move(self._mouse_move)
        self._canvas.on_mouse_up(self._mouse_up)
        self._canvas.on_mouse_out(self._mouse_up)
        # A canvas keeps no drawing for views opened later (Voila renders after the kernel has
        # drawn): redraw whenever a new front end is ready, addressed to it (canvas_views).
        redraw_for_new_views(self._canvas, self._draw_canvas)
        self._build_controls()
        self._build_readouts()
        self._build_maps()
        left = widgets.VBox(
            [
                caption(
                    self._square_caption(),
                    margin="0 0 2px 0",
                    width=f"{max(width * self._zoom, 220)}px",
                ),
                self._canvas,
                self._x_slider,
                self._y_slider,
            ],
            layout=widgets.Layout(flex="0 0 auto", margin="0 24px 0 0"),
        )
        right = widgets.VBox(
            [self._readout, self._bars_figure, self._size_slider, self._stride_slider]
            + [self._target_menu, self._layer_menu],
            layout=widgets.Layout(flex="1 1 320px", min_width="300px"),
        )
        self.children = [
            widgets.HBox([left, right], layout=full_width(flex_flow="row wrap")),
            self._maps_box,
            widgets.HBox([self._progress], layout=full_width()),
            self.status_line,
        ]

    def _build_controls(self) -> None:
        height, width = (int(s) for s in self._image.shape[-2:])
        side = min(height, width)
        specs = {  # name: lowest, highest, help
            "x": (0, width - 1, "left edge of the occluder, in image pixels (arrow keys move it)"),
            "y": (0, height - 1, "top edge of the occluder, in image pixels (arrow keys move it)"),
            "size": (1, side, "side of the grey occluder square, in image pixels"),
            "stride": (1, side, "step between occluder positions in the maps"),
        }
        canvas_width = max(width * self._zoom, 220)
        sliders = [_slider(name, *spec, canvas_width) for name, spec in specs.items()]
        self._x_slider, self._y_slider, self._size_slider, self._stride_slider = sliders
        self._target_menu = widgets.Dropdown(
            description="target",
            options=class_options(self._classes),
            tooltip="the class whose probability is watched in (d) and the readout",
            layout=widgets.Layout(width="320px"),
        )
        self._layer_menu = LayerMenu(
            self.inspector,
            self.inspector.blocks[:-1] or self.inspector.blocks,  # not the class scores
            description="layer",
            tooltip="the layer whose strongest feature map (on the unoccluded image) is watched",
            layout=widgets.Layout(width="320px"),
        )
        for name, slider in zip(specs, sliders, strict=True):
            self._bind(name, slider)
        self._bind("target", self._target_menu)
        self._layer_menu.on_pick(self._layer_picked)

    def _layer_picked(self, layer: str) -> None:
        self.layer = layer
        if self.layer != layer:  # refused: the menu goes back too
            self._layer_menu.show(self.layer)

    def _build_readouts(self) -> None:
        self._readout = widgets.HTML(layout=full_width(min_height="3.2em", margin="2px 0"))
        self._readout.add_class("zfw-occlusion-readout")
        x_scale, y_scale = OrdinalScale(), LinearScale(min=0.0, max=1.0)
        self._bars = Bars(
            x=[],
            y=[],
            scales={"x": x_scale, "y": y_scale},
            colors=[BAR_COLOUR],
            padding=0.25,
            tooltip=None,
        )
        text = {"fill": COLOURS["body"], "font-family": FONT}
        slanted = max(len(label) for label in self._bar_labels) > SHORT_LABEL
        axes = [
            Axis(
                scale=x_scale,
                side="bottom",
                label="top 5 classes",
                tick_style={**text, "text-anchor": "end"} if slanted else text,
                label_color="#888",
                # Long names (ImageNet's) are slanted so that five fit side by side.
                tick_rotate=-30 if slanted else 0,
                label_offset="62px" if slanted else None,
            ),
            Axis(
                scale=y_scale,
                side="left",
                tick_format=".1f",
                num_ticks=3,
                tick_style=text,
            ),
        ]
        self._bars_figure = Figure(
            marks=[self._bars],
            axes=axes,
            fig_margin={"top": 10, "bottom": 72 if slanted else 40, "left": 45, "right": 10},
            background_style={"fill": "transparent"},
            layout=widgets.Layout(width="320px", height="212px" if slanted else "180px"),
        )

    def _build_maps(self) -> None:
        self._map_images = {
            "activity": png_image("(b) total activity of the watched map, per occluder position"),
            "projection": png_image("(c) the watched map projected to pixels, no occluder"),
            "target_prob": png_image("(d) probability of the target class, per occluder position"),
            "top_class": png_image("(e) most probable class, per occluder position"),
        }
        self._map_captions = {}
        for name, image in self._map_images.items():
            # ipywidgets 8.1's ImageView fails to render with a tooltip (it reads the missing
            # description's length), so the caption above the picture carries it instead.
            self._map_captions[name] = caption("")
            self._map_captions[name].tooltip, image.tooltip = image.tooltip, None
        panel = f"{POSITION_SIDE + 12}px"
        self._legend = widgets.HTML(layout=widgets.Layout(width=panel))
        self._map_bars = {
            name: png_image(
                f"colour scale of {name}", f"zfw-occlusion-{name}-bar", align_self="flex-start"
            )
            for name in ("activity", "projection", "target_prob")
        }
        boxes = []
        for name, image in self._map_images.items():
            image.add_class(f"zfw-occlusion-{name.replace('_', '-')}")
            self._map_captions[name].layout = widgets.Layout(width=panel, min_height="3.2em")
            # Every panel the same size, whatever the occluder's size and stride: the picture
            # sits in a fixed square slot, its scale (or the legend) under it.
            slot = widgets.Box(
                [image],
                layout=widgets.Layout(width=panel, height=panel, align_items="flex-start"),
            )
            below = self._legend if name == "top_class" else self._map_bars[name]
            boxes.append(
                widgets.VBox(
                    [self._map_captions[name], slot, below],
                    layout=widgets.Layout(margin="0 8px 8px 0", width=panel),
                )
            )
        self._maps_box = widgets.HBox(boxes, layout=full_width(flex_flow="row wrap"))

    def _set_defaults(self, target, layer, size, stride) -> None:
        height, width = (int(s) for s in self._image.shape[-2:])
        side = min(height, width)
        size = max(1, round(side / 4)) if size is None else size
        stride = max(1, size // 3) if stride is None else stride
        layer = layer or self.inspector.default_layer(tuple(self._image.shape[-3:]))
        target = self._predicted(self._image) if target is None else target
        # The validators check each one; not built yet, so a bad argument raises here.
        self.layer, self.target, self.size, self.stride = layer, target, size, stride
        self.x, self.y = (width - size) // 2, (height - size) // 2
        self._layer_menu.show(self.layer)
        self._x_slider.max, self._y_slider.max = width - size, height - size

    # ----- validation (WidgetBase's rule: raise while building, then keep and say why) -----
    def _occlusion_at(
        self, size: int = 1, target: int | None = None, layer: str | None = None
    ) -> OcclusionReading:
        """Checks a setting with the core's own checks (a readout at the corner)."""
        target = self.target if target is None else target
        layer = self.layer if layer is None else layer
        return occlusion_at(self.inspector, self._image, 0, 0, size, self._fill, target, layer)

    @refusing("size")
    def _check_size(self, size: int) -> int:
        self._occlusion_at(size=size)
        return size

    @refusing("stride")
    def _check_stride(self, stride: int) -> int:
        # The core checks stride only in a sweep; the widget refuses it before starting one.
        if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
            raise ValueError(f"occluder stride must be a positive int; got {stride!r}")
        return stride

    @refusing("target")
    def _check_target(self, target: int) -> int:
        self._occlusion_at(target=target)
        return target

    @refusing("layer")
    def _check_layer(self, layer: str) -> str:
        self._occlusion_at(layer=layer)
        return layer

    @traitlets.validate("x", "y")
    def _clamp_position(self, proposal: dict) -> int:
        # Positions clamp (a drag past the edge keeps the square at the edge) rather than fail.
        axis = -1 if proposal["trait"].name == "x" else -2
        limit = int(self._image.shape[axis]) - self.size
        return min(max(int(proposal["value"]), 0), max(limit, 0))

    # ----- reacting -----------------------------------------------------------------------
    @traitlets.observe("x", "y")
    def _position_changed(self, change: dict) -> None:
        if self._live:
            self._show_position()

    @traitlets.observe("size")
    def _size_changed(self, change: dict) -> None:
        if not self._live:
            return
        height, width = (int(s) for s in self._image.shape[-2:])
        self._x_slider.max, self._y_slider.max = width - self.size, height - self.size
        with self.hold_trait_notifications():
            self.x, self.y = self.x, self.y  # re-clamped by the validator
        self._show_position()
        self._start_sweep()

    @traitlets.observe("stride", "target", "layer")
    def _sweep_setting_changed(self, change: dict) -> None:
        if change["name"] == "layer":
            self._layer_menu.show(self.layer)
        if self._live:
            if change["name"] != "stride":
                self._show_position()
            self._start_sweep()

    # ----- the canvas: drag the square ----------------------------------------------------
    def _mouse_down(self, px: float, py: float) -> None:
        self._dragging = True
        self._move_to(px, py)

    def _mouse_move(self, px: float, py: float) -> None:
        if self._dragging:
            self._move_to(px, py)

    def _mouse_up(self, px: float, py: float) -> None:
        if self._dragging:
            self._move_to(px, py)
        self._dragging = False

    def _move_to(self, px: float, py: float) -> None:
        """Centres the square on canvas pixel (px, py); the validators clamp to the image."""
        column, row = int(px // self._zoom), int(py // self._zoom)
        with self.hold_trait_notifications():
            self.x, self.y = column - self.size // 2, row - self.size // 2

    # ----- drawing ------------------------------------------------------------------------
    def _picture(self, x: Tensor) -> np.ndarray:
        """A model input as a picture: true colours when the preprocessing is known."""
        return render.input_image(x, preprocessing=self.preprocessing)

    def _square_caption(self) -> str:
        """What the occluder holds, in words, for the caption over the image."""
        prep = self.preprocessing
        if prep is None or isinstance(self._fill, Tensor) or float(self._fill) != prep.fill:
            return "(a) the image; drag the square"
        if prep.mean_image:
            return (
                "(a) drag the square: it holds the data set's mean (input 0, the "
                "model's 'nothing'), a faint blur rather than flat grey"
            )
        return (
            f"(a) drag the square: it holds the mean colour, {mean_colour(prep)} (input 0, "
            "the model's 'nothing')"
        )

    def _show_position(self) -> None:
        with self._lock, errors_to(self.status_line, "readout"):
            self.reading = occlusion_at(
                self.inspector,
                self._image,
                self.y,
                self.x,
                self.size,
                self._fill,
                self.target,
                self.layer,
            )
            self._draw_canvas()
            self._draw_readout()
            self._draw_maps()

    def _draw_canvas(self) -> None:
        occluded = occlude(self._image, self.y, self.x, self.size, self._fill)[0]
        picture = _rgb(render.upscale(self._picture(occluded), self._zoom))
        z = self._zoom
        _outline(picture, (self.y * z, self.x * z, self.size * z, self.size * z), SQUARE_EDGE)
        self._canvas.put_image_data(rgba(picture), 0, 0)

    def _draw_readout(self) -> None:
        reading = self.reading
        if reading is None:
            return
        name = self._classes[self.target]
        lines = [
            f"p(<b>{html.escape(name)}</b>) = <b>{reading.target_prob:.3f}</b>"
            + (f" (unoccluded {self.maps.base_prob:.3f})" if self._maps_current() else ""),
            f"activity of {html.escape(self.layer)} map = <b>{reading.activity:.4g}</b>"
            + (f" (unoccluded {self.maps.base_activity:.4g})" if self._maps_current() else ""),
            f"square at x={self.x}, y={self.y}, size {self.size}",
        ]
        style = f"color: {COLOURS['body']}; font-family: {FONT}; line-height: 1.5"
        self._readout.value = f'<div style="{style}">' + "<br>".join(lines) + "</div>"
        with self._bars.hold_sync():
            self._bars.x = [self._bar_labels[c] for c in reading.top_classes]
            self._bars.y = list(reading.top_probs)

    def _maps_current(self) -> bool:
        maps = self.maps
        return (
            maps is not None
            and maps.size == self.size
            and maps.stride == self.stride
            and maps.target == self.target
            and maps.layer == self.inspector.layer_name(self.layer)
        )

    def _draw_maps(self) -> None:
        """Marks the current position on the pictures of the last sweep."""
        if not self._map_pictures:
            return
        maps = self.maps
        row, column = _nearest(maps.ys, self.y), _nearest(maps.xs, self.x)
        for name, picture in self._map_pictures.items():
            picture = picture.copy()
            if name != "projection":
                zoom = picture.shape[0] // len(maps.ys)
                box = (row * zoom, column * zoom, zoom, zoom)
                _outline(picture, (box[0] - 1, box[1] - 1, box[2] + 2, box[3] + 2), MARK_SHADOW, 1)
                # thicker on big cells, so the position reads from the back of the room
                _outline(picture, box, MARK_EDGE, 1 if zoom < 6 else 2 if zoom < 16 else 3)
            self._map_images[name].value = render.to_png(picture)

    # ----- the sweep ----------------------------------------------------------------------
    def _start_sweep(self, force: bool = False) -> None:
        size, stride, target, layer = self.size, self.stride, self.target, self.layer
        key = f"{id(self._image)}:{size}:{stride}:{target}:{layer}"
        if force:
            self._tasks.cancel()

        def work(should_stop, report) -> OcclusionMaps:
            return occlusion_sweep(
                self.inspector,
                self._image,
                size,
                stride,
                self._fill,
                target,
                layer,
                callback=report,
                should_stop=should_stop,
            )

        self._in_background(key, work, self._sweep_done, label="occlusion sweep")

    def _sweep_done(self, maps: OcclusionMaps) -> None:
        with errors_to(self.status_line, "maps"):
            self.maps = maps
            if not self._maps_current():
                return  # settings moved on meanwhile; the newer sweep will draw
            self._map_pictures = self._render_maps(maps)
            self._label_maps(maps)
            self._draw_maps()
            self._draw_readout()
            self.status_line.info(
                f"maps ready: {len(maps.ys)}x{len(maps.xs)} positions, "
                f"{self.layer} map {maps.channel}"
            )

    def _render_maps(self, maps: OcclusionMaps) -> dict[str, np.ndarray]:
        zoom = zoom_for(max(len(maps.ys), len(maps.xs)), POSITION_SIDE)
        colours = render.class_colours(len(self._classes))
        projection = self._projection_view(maps).picture
        return {
            "activity": render.upscale(render.heatmap(maps.activity), zoom),
            "projection": _rgb(render.upscale(projection, zoom_for(projection.shape[0], MAP_SIDE))),
            "target_prob": render.upscale(render.heatmap(maps.target_prob, 0.0, 1.0), zoom),
            "top_class": render.upscale(colours[render.as_numpy(maps.top_class).astype(int)], zoom),
        }

    def _redraw_for_projector(self) -> None:
        self._relabel_maps()

    def _relabel_maps(self) -> None:
        """The captions and colour bars of the maps shown, again (the maps are not swept)."""
        if self._maps_current():
            self._label_maps(self.maps)

    def _label_maps(self, maps: OcclusionMaps) -> None:
        activity = render.as_numpy(maps.activity)
        target = self._classes[maps.target]
        layer = display_name(self.inspector, self.layer)
        method = REGISTRY[self.inspector.projection_method].label
        texts = {
            "activity": f"(b) {layer} map {maps.channel}'s total activity, own scale",
            "projection": f"(c) {method} projection of {layer} map {maps.channel}"
            + "".join(f" · {note}" for note in self._projection_notes(maps)),
            "target_prob": f"(d) p({target}), on a fixed 0..1 scale",
            "top_class": "(e) most probable class",
        }
        for name, text in texts.items():
            self._map_captions[name].value = text_html(text, "muted", self._map_help(name))
        self._legend.value = self._legend_html(maps)
        # a stretched (faint) projection's bar ends at the values drawn at full contrast
        top = float(np.abs(render.as_numpy(maps.projection)).max())
        top = top / self._projection_view(maps).gain or 1.0
        saliency = self.inspector.projection_method == "saliency"
        font = bar_font_size()  # larger numbers in projector mode
        bars = {
            "activity": render.colour_bar(
                float(activity.min()), float(activity.max()), POSITION_SIDE, font_size=font
            ),
            "projection": render.colour_bar(0.0, top, MAP_SIDE, kind="grey", font_size=font)
            if saliency
            else render.colour_bar(-top, top, MAP_SIDE, kind="signed", font_size=font),
            "target_prob": render.colour_bar(
                0.0, 1.0, POSITION_SIDE, ticks=[0.0, 0.5, 1.0], font_size=font
            ),
        }
        for name, bar in bars.items():
            self._map_bars[name].value = render.to_png(bar)

    def _projection_view(self, maps: OcclusionMaps) -> render.Shown:
        return unit_view(
            maps.projection, self.inspector.projection_method, "this map did not fire here"
        )

    def _projection_notes(self, maps: OcclusionMaps) -> list[str]:
        """What (c)'s caption adds: all zero, stretched, or a deconvnet without switches."""
        method = self.inspector.projection_method
        notes = (self._projection_view(maps).note, switch_note(self.inspector, self.layer, method))
        return [n for n in notes if n]

    def _map_help(self, name: str) -> str:
        """A map's hover help; (c)'s also says why it is saliency when there is no deconvnet."""
        help_text = self._map_images[name].help_text
        reason = self.inspector.no_rule_reason()
        if name == "projection" and reason:
            help_text += f" (saliency: no deconvnet for this model; {reason})"
        return help_text

    def _legend_html(self, maps: OcclusionMaps) -> str:
        colours = render.class_colours(len(self._classes))
        present = sorted({int(c) for c in render.as_numpy(maps.top_class).ravel()})
        items = [
            f'<span style="white-space:nowrap">'
            f'<span style="display:inline-block;width:0.9em;height:0.9em;'
            f"background:rgb{tuple(int(v) for v in colours[c])};vertical-align:middle;"
            f'margin-right:3px"></span>{html.escape(self._classes[c])}</span>'
            for c in present
        ]
        # A grid, so that a short last line is designed (two rows of five digits), not one
        # class left alone; long class names get one per line.
        short = all(len(self._classes[c]) <= SHORT_LABEL for c in present)
        rows = -(-len(present) // 5)  # as few rows as five columns need, filled evenly
        columns = f"repeat({-(-len(present) // rows)}, 1fr)" if short else "1fr"
        style = (
            f"color: {COLOURS['body']}; font-family: {FONT}; font-size: 12px; display: grid; "
            f"grid-template-columns: {columns}; gap: 2px 4px"
        )
        return f'<div style="{style}">' + "".join(items) + "</div>"

    def _predicted(self, img: Tensor) -> int:
        return int(self.inspector.predict(img).argmax())


def _slider(name: str, low: int, high: int, tooltip: str, canvas_width: int) -> widgets.IntSlider:
    """The slider of setting ``name``: x and y live under the canvas, as wide as it; size and
    stride start a sweep, so they change only once the slider is let go."""
    if name in ("x", "y"):
        return widgets.IntSlider(
            description=name,
            min=low,
            max=high,
            tooltip=tooltip,
            style={"description_width": "24px"},
            layout=widgets.Layout(width=f"{canvas_width}px"),
        )
    return widgets.IntSlider(
        description=name,
        min=low,
        max=high,
        continuous_update=False,
        tooltip=f"{tooltip} (recomputes the maps)",
        layout=widgets.Layout(width="320px"),
    )
