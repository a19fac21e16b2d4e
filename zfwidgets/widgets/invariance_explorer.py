"""InvarianceExplorer: how features and the output move as the image moves (paper Fig. 5).

Pick a transformation (vertical translation, scale or rotation) and slide through its amounts:
the transformed image is shown beside three curves over the whole sweep, as in Fig. 5: the
Euclidean distance between the feature vectors of the original and the transformed image at
two layers (default the first conv layer and the penultimate fully connected one, the paper's
layers 1 and 7; on a graph such as ResNet its first block and the one before the class scores;
the two menus offer the model's blocks) and the probability of the true class. Every image's
curve is drawn faintly; the selected image's curve is bold and the current amount is marked on
it.

Example:
    >>> from zfwidgets import InvarianceExplorer, demo
    >>> d = demo.load()
    >>> images = [d.dataset[i][0] for i in range(5)]
    >>> labels = [d.dataset[i][1] for i in range(5)]
    >>> w = InvarianceExplorer(d.model, images, labels, mean=d.mean, classes=d.classes)
    >>> w.wait()                              # the curves of the first sweep are ready
    True
    >>> w.kind = "rotate"; w.wait()           # another transformation: computed in a thread
    True
    >>> w.step = 0                            # the first amount: -180 degrees
    >>> w.amount
    -180.0
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ipywidgets as widgets
import traitlets
from bqplot import Axis, Figure, LinearScale, Lines, Scatter
from torch import Tensor, nn

from zfwidgets.core import render
from zfwidgets.core.inspector import Inspector
from zfwidgets.core.invariance import (
    TRANSFORMS,
    UNITS,
    InvarianceCurves,
    amounts,
    default_amounts,
    default_layers,
    invariance_curves,
    transform,
)
from zfwidgets.core.preprocess import Preprocessing
from zfwidgets.widgets.base import WidgetBase, class_names, errors_to, inspector_for, refusing
from zfwidgets.widgets.menus import LayerMenu, display_name
from zfwidgets.widgets.parts import (
    COLOURS,
    FONT,
    PICTURE_SIDE,
    ImageSource,
    caption,
    full_width,
    mean_colour,
    nice_ticks,
    png_image,
    widget_preprocessing,
    zoom_for,
)

__all__ = ["InvarianceExplorer", "KINDS"]

KINDS = {
    "translate": ("vertical translation", "Move the image down (positive) or up, in pixels"),
    "scale": ("scale", "Enlarge (above 1) or shrink the image about its centre"),
    "rotate": ("rotation", "Rotate the image about its centre, in degrees (anticlockwise)"),
}
SLIDER_NAMES = {"translate": "shift", "scale": "scale", "rotate": "angle"}
CURRENT_COLOUR = "#1976d2"  # the selected image's curve: a blue that reads on both themes
OTHERS_COLOUR = "#9e9e9e"  # the other images' curves
MARK_COLOUR = "#ff9800"  # the current amount
PLOT_WIDTH = "290px"
PLOT_HEIGHT = "220px"


PROB_TICKS = [0.0, 0.25, 0.5, 0.75, 1.0]


def _x_ticks(kind: str, low: float, high: float) -> list[float]:
    """Round amounts for the x axis: whole pixels, tenths of a scale, multiples of 15°."""
    if kind == "rotate":
        step = next(s for s in (15, 30, 45, 90, 180) if (high - low) / s <= 6)
        return [float(a) for a in range(math.ceil(low / step) * step, int(high) + 1, step)]
    return nice_ticks(low, high, count=5, steps=(1, 2, 3, 5))


def _unit(kind: str, amount: float) -> str:
    """An amount as people read it: ``+3 px``, ``x1.2``, ``30°``."""
    if kind == "translate":
        return f"{amount:+g} px"
    if kind == "scale":
        return f"×{amount:.3g}"
    return f"{amount:g}°"


class InvarianceExplorer(WidgetBase):
    """The paper's Fig. 5 on your images, live: transform, slide, compare curves.

    Args:
        model_or_inspector: an ``nn.Module`` (wrapped in an :class:`~zfwidgets.Inspector`,
            never modified) or an ``Inspector``.
        images: the images to sweep: a tensor (N, C, H, W) or (C, H, W), a list of images of
            one shape, or a Dataset of images or ``(image, label)``.
        labels: each image's true class; default the dataset's labels when it has them, else
            the class predicted for the untouched image.
        classes: class names, indexed by label (for the probability curve's caption).
        mean: the older shorthand for ``preprocessing``: the mean image (or one number per
            channel) subtracted from the model's inputs, with std 1.
        layers: the two (or more; the first two are plotted) layers whose feature distances
            are plotted: blocks (``conv1``, ``layer3``) or step names; default
            :func:`~zfwidgets.core.invariance.default_layers` (the first conv and the
            penultimate linear layer on a chain).
        steps: how many amounts each sweep has (the identity is added when it falls between).
        ranges: ``{kind: (start, stop)}`` to replace the default ranges (translate: a quarter
            of the image up and down; scale 0.6..1.8; rotate -180..180 degrees).
        fill: the value of pixels a transformed image has no data for; default the
            preprocessing's fill (0: the mean).
        preprocessing: the model's preprocessing (a
            :class:`~zfwidgets.core.preprocess.Preprocessing`, or torchvision's
            ``weights.transforms()``): pictures are drawn in their true colours
            (``x * std + mean``). Without it (and without ``mean``) each picture is stretched
            min..max.
        **state: initial values of the traits below.

    Traits (set them from code; the controls follow):
        kind: ``"translate"``, ``"scale"`` or ``"rotate"``. step: index of the amount shown
        (``amount`` is its value). image_index: the image whose curve is bold. layers: the
        layers compared (assign a new list; the two menus set its first two). status
        (read-only): the status line's message. A value that cannot be used keeps the previous
        one and says why in ``status``. ``curves`` holds the finished :class:`InvarianceCurves`
        per kind.

    Raises:
        ValueError, TypeError: bad images, labels, layers or ranges (the core's messages).
    """

    css_class = "zfw-invariance-explorer"
    status_hint = "pick a transformation and move the amount slider"
    progress_width = "320px"
    name_in_refusals = True  # "step: step 99 is out of range: 0..8"

    kind = traitlets.Unicode("translate")
    step = traitlets.Int(0)
    image_index = traitlets.Int(0)
    layers = traitlets.List(traitlets.Unicode(), minlen=0)

    def __init__(
        self,
        model_or_inspector: nn.Module | Inspector,
        images: Any,
        labels: Sequence[int] | None = None,
        classes: Sequence[str] | None = None,
        mean: Tensor | None = None,
        layers: Sequence[str] | None = None,
        steps: int = 13,
        ranges: Mapping[str, tuple[float, float]] | None = None,
        fill: float | None = None,
        preprocessing: Any = None,
        **state: Any,
    ) -> None:
        super().__init__()
        self._check_state(state, ("kind", "step", "image_index"))
        self.inspector = inspector_for(model_or_inspector)
        self.preprocessing: Preprocessing | None = widget_preprocessing(
            "InvarianceExplorer", preprocessing, mean, self.inspector.in_channels
        )
        source = ImageSource(images)
        if len(source) == 0:
            raise ValueError("images is empty: give at least one image")
        self.images = [self.inspector.image(source[i][0]) for i in range(len(source))]
        shapes = {tuple(img.shape) for img in self.images}
        if len(shapes) > 1:
            raise ValueError(f"images must share one shape; got {sorted(shapes)}")
        self.labels = self._labels(labels, source)
        self.classes = class_names(classes, int(self.inspector.predict(self.images[0]).numel()))
        self.mean = mean
        if fill is None:
            fill = 0.0 if self.preprocessing is None else self.preprocessing.fill
        self.fill = fill
        # Raises now for an unknown layer (the core's message) or fewer than two.
        self.layers = list(layers) if layers is not None else default_layers(self.inspector)
        self.amounts = self._sweeps(steps, ranges)
        self.curves: dict[str, InvarianceCurves] = {}
        self._build()
        self._start(state)

    # ----- public --------------------------------------------------------------------------
    @property
    def amount(self) -> float:
        """The transformation amount shown now (pixels, factor or degrees)."""
        return self.amounts[self.kind][self.step]

    @property
    def transformed(self) -> Tensor:
        """The selected image transformed by the current amount, (1, C, H, W)."""
        return transform(self.images[self.image_index], self.kind, self.amount, self.fill)

    # ----- set-up --------------------------------------------------------------------------
    def _labels(self, labels: Sequence[int] | None, source: ImageSource) -> list[int]:
        if labels is None:
            given = [source[i][1] for i in range(len(source))]
            if all(label is not None for label in given):
                labels = given
        if labels is None:  # nobody said: the model's own answer for the untouched image
            return [int(self.inspector.predict(img).argmax()) for img in self.images]
        if len(labels) != len(self.images):
            raise ValueError(f"got {len(self.images)} images but {len(labels)} labels")
        count = int(self.inspector.predict(self.images[0]).numel())
        bad = [int(c) for c in labels if not 0 <= int(c) < count]
        if bad:
            raise ValueError(f"labels {bad} are out of range: the model has classes 0..{count - 1}")
        return [int(c) for c in labels]

    def _sweeps(self, steps: int, ranges: Mapping[str, tuple[float, float]] | None):
        ranges = dict(ranges or {})
        unknown = set(ranges) - set(TRANSFORMS)
        if unknown:
            raise ValueError(
                f"ranges has unknown transformations {sorted(unknown)}; "
                f"choose from {', '.join(TRANSFORMS)}"
            )
        side = int(self.images[0].shape[-2])
        sweeps = {}
        for kind in TRANSFORMS:
            if kind in ranges:
                start, stop = ranges[kind]
                sweeps[kind] = amounts(kind, start, stop, steps)
            else:
                sweeps[kind] = default_amounts(kind, side, steps)
        return sweeps

    def _build(self) -> None:
        self._kind_toggle = widgets.ToggleButtons(
            options=[(label, kind) for kind, (label, _) in KINDS.items()],
            tooltips=[tip for _, tip in KINDS.values()],
            style={"button_width": "150px"},
        )
        self._amount_slider = widgets.SelectionSlider(
            options=[("0", 0)],
            description="amount",
            tooltip="How far the image is transformed (←/→ when focused); the curves mark it",
            layout=widgets.Layout(width="320px"),
        )
        self._image_slider = widgets.IntSlider(
            description="image",
            min=0,
            max=len(self.images) - 1,
            tooltip="Which image's curve is bold and which image is shown (←/→ when focused)",
            layout=widgets.Layout(width="320px", display="" if len(self.images) > 1 else "none"),
        )
        zoom = zoom_for(max(self.images[0].shape[-2:]), PICTURE_SIDE)
        self._zoom = zoom
        side = int(max(self.images[0].shape[-2:])) * zoom
        self._picture = png_image(
            "the transformed image, as the model sees it",
            css_class="zfw-invariance-image",
            width=f"{side}px",
            height=f"{side}px",
        )
        self._picture_caption = caption(tooltip=self._picture.help_text)
        # Why a faint ghost appears where the digit moved away (issue 16): said on screen.
        self._fill_note = caption(self._fill_text())
        self._readout = widgets.HTML(layout=full_width(min_height="3em", margin="2px 0"))
        self._readout.add_class("zfw-invariance-readout")
        self._layer_menus = [
            LayerMenu(
                self.inspector,
                self.inspector.blocks,
                description=f"layer {name}",
                tooltip=f"Plot ({name}): the distance between the feature vectors at this layer",
                layout=widgets.Layout(width="320px"),
            )
            for name in ("a", "b")
        ]
        for i, menu in enumerate(self._layer_menus):
            menu.on_pick(self._layer_picked(i))
        names = [f"distance at {layer}" for layer in self._plotted()]
        self._plots = [self._plot(name) for name in names + ["p(true class)"]]
        for (figure, *_), name in zip(self._plots, ("a", "b", "prob"), strict=True):
            figure.add_class(f"zfw-invariance-plot-{name}")
        left = widgets.VBox(
            [
                self._picture_caption,
                self._picture,
                self._amount_slider,
                self._image_slider,
            ],
            layout=widgets.Layout(flex="0 0 auto", margin="0 24px 0 0"),
        )
        plots = widgets.HBox(
            [figure for figure, *_ in self._plots], layout=full_width(flex_flow="row wrap")
        )
        right = widgets.VBox(
            [self._readout, *self._layer_menus, self._fill_note],
            layout=widgets.Layout(flex="1 1 320px"),
        )
        self.children = [
            self._kind_toggle,
            widgets.HBox([left, right], layout=full_width(flex_flow="row wrap")),
            plots,
            widgets.HBox([self._progress], layout=full_width()),
            self.status_line,
        ]
        self._bind("kind", self._kind_toggle)
        self._bind("step", self._amount_slider)
        self._bind("image_index", self._image_slider)

    def _plot(self, label: str):
        """A bqplot figure with every image's curve, the selected one and the current point."""
        x_scale = LinearScale(min=-1.0, max=1.0)  # the domains are set with the data
        y_scale = LinearScale(min=0.0, max=1.0)
        scales = {"x": x_scale, "y": y_scale}
        others = Lines(x=[0.0], y=[0.0], scales=scales, colors=[OTHERS_COLOUR], opacities=[0.5])
        current = Lines(x=[0.0], y=[0.0], scales=scales, colors=[CURRENT_COLOUR], stroke_width=3)
        point = Scatter(
            x=[0.0], y=[0.0], scales=scales, colors=[MARK_COLOUR], default_size=90, stroke="black"
        )
        text = {"fill": COLOURS["body"], "font-family": FONT}
        # Round ticks set with the data (``_draw_curves_now``); the axis titles sit clear of
        # the tick labels.
        x_axis = Axis(
            scale=x_scale,
            label="",
            tick_style=text,
            label_color="#888",
            tick_values=[-1.0, 0.0, 1.0],
            label_offset="32px",
        )
        y_axis = Axis(
            scale=y_scale,
            side="left",
            label=label,
            tick_style=text,
            label_color="#888",
            tick_values=PROB_TICKS,
            tick_format=".2~f",
            label_offset="48px",
        )
        figure = Figure(
            marks=[others, current, point],
            axes=[x_axis, y_axis],
            fig_margin={"top": 12, "bottom": 44, "left": 60, "right": 14},
            background_style={"fill": "transparent"},
            layout=widgets.Layout(width=PLOT_WIDTH, height=PLOT_HEIGHT),
        )
        return figure, others, current, point, x_axis

    def _tick_figures(self) -> list[Figure]:
        return [figure for figure, *_ in getattr(self, "_plots", [])]

    def _start(self, state: dict[str, Any]) -> None:
        self.kind = state.get("kind", "translate")
        self._set_amount_options()
        self.step = state.get("step", self._identity_step())
        self.image_index = state.get("image_index", 0)
        self._finish_building()
        self._show_layers()
        self._show()
        self._compute()

    # ----- validation (WidgetBase's rule: raise while building, then keep and say why) ------
    @refusing("kind")
    def _check_kind(self, kind: str) -> str:
        if kind not in TRANSFORMS:
            raise ValueError(
                f"unknown transformation {kind!r}; choose one of {', '.join(TRANSFORMS)}"
            )
        return kind

    @refusing("step")
    def _check_step(self, step: int) -> int:
        count = len(self.amounts[self.kind])
        if not 0 <= step < count:
            raise ValueError(f"step {step} is out of range: 0..{count - 1}")
        return step

    @refusing("layers")
    def _check_layers(self, layers: list[str]) -> list[str]:
        for layer in layers:
            self.inspector.layer_index(layer)  # unknown layer: the core's message
        if len(layers) < 2:
            raise ValueError(f"give two layers to compare; got {list(layers)}")
        return list(layers)

    @refusing("image_index")
    def _check_image(self, index: int) -> int:
        if not 0 <= index < len(self.images):
            raise ValueError(f"image {index} is out of range: 0..{len(self.images) - 1}")
        return index

    # ----- reacting ------------------------------------------------------------------------
    @traitlets.observe("kind")
    def _kind_changed(self, change: dict) -> None:
        if not self._live:
            return
        with self._quietly():
            self._set_amount_options()
            self.step = self._identity_step()
        self._show()
        self._compute()

    def _layer_picked(self, which: int) -> Callable[[str], None]:
        def pick(layer: str) -> None:
            layers = list(self.layers)
            layers[which] = layer
            self.layers = layers

        return pick

    @traitlets.observe("layers")
    def _layers_changed(self, change: dict) -> None:
        if not self._live:
            return
        with self._lock:
            self.curves.clear()  # every kind's curves were for the old layers
        self._show_layers()
        self._show()
        self._compute()

    def _plotted(self) -> list[str]:
        """The two layers whose distances are plotted."""
        return list(self.layers[:2])

    def _show_layers(self) -> None:
        """The menus and the distance plots' axis labels follow ``layers``."""
        for menu, (figure, *_), layer in zip(
            self._layer_menus, self._plots, self._plotted(), strict=False
        ):
            menu.show(layer)
            figure.axes[1].label = f"distance at {display_name(self.inspector, layer)}"

    @traitlets.observe("step", "image_index")
    def _position_changed(self, change: dict) -> None:
        if self._live:
            self._show()

    def _set_amount_options(self) -> None:
        options = [(_unit(self.kind, a), i) for i, a in enumerate(self.amounts[self.kind])]
        with self._amount_slider.hold_sync():
            self._amount_slider.options = options
        self._amount_slider.description = SLIDER_NAMES[self.kind]

    def _identity_step(self) -> int:
        values = self.amounts[self.kind]
        identity = 1.0 if self.kind == "scale" else 0.0
        return min(range(len(values)), key=lambda i: abs(values[i] - identity))

    # ----- drawing -------------------------------------------------------------------------
    def _fill_text(self) -> str:
        """What fills the pixels a transformation uncovers, in words (empty when unknown)."""
        prep = self.preprocessing
        if prep is None or float(self.fill) != prep.fill:
            return ""
        if prep.mean_image:
            return (
                "Where the image moved away it is filled with the model's input 0, which is the "
                "data set's mean: the faint ghost there is that mean, what the model reads as "
                "'nothing'."
            )
        return (
            "Where the image moved away it is filled with the model's input 0, the mean colour "
            f"{mean_colour(prep)}: what the model reads as 'nothing'."
        )

    def _show(self) -> None:
        with self._lock, errors_to(self.status_line, "picture"):
            picture = render.input_image(self.transformed[0], preprocessing=self.preprocessing)
            self._picture.value = render.to_png(render.upscale(picture, self._zoom))
            self._picture_caption.say(
                f"image {self.image_index}, {KINDS[self.kind][0]} {_unit(self.kind, self.amount)}"
            )
            self._draw_curves()

    def _draw_curves(self) -> None:
        with self._lock:
            self._draw_curves_now()

    def _draw_curves_now(self) -> None:
        curves = self.curves.get(self.kind)
        i, j = self.image_index, self.step
        label = self.classes[self.labels[i]]
        if curves is None:
            self._readout.value = self._html(
                [f"computing the {KINDS[self.kind][0]} sweep...", "&nbsp;"]
            )
            return
        series = [curves.distances[layer] for layer in self._plotted()] + [curves.true_prob]
        x = list(curves.amounts)
        for (figure, others, current, point, x_axis), values in zip(
            self._plots, series, strict=True
        ):
            data = render.as_numpy(values)
            # Explicit domains: bqplot's automatic domain of a figure whose data change after it
            # is displayed stayed at the placeholder's [0, 0] in JupyterLab 4 (all x on one spot).
            x_scale, y_scale = others.scales["x"], others.scales["y"]
            # The probability axis is [0, 1] exactly; a distance axis starts at 0 and ends just
            # above the largest distance. The amounts get a little room at both ends, so that
            # the first x label clears the y axis's 0.
            prob = values is curves.true_prob
            top = 1.0 if prob else max(float(data.max()) * 1.05, 1e-6)
            low, high = min(x), (max(x) if max(x) > min(x) else min(x) + 1)
            room = 0.05 * (high - low)
            with x_scale.hold_sync():
                x_scale.min, x_scale.max = low - room, high + room
            with y_scale.hold_sync():
                y_scale.min, y_scale.max = 0.0, top
            y_axis = figure.axes[1]
            x_axis.tick_values = _x_ticks(self.kind, low, high)
            x_axis.tick_format = ".2~f" if self.kind == "scale" else "d"
            y_axis.tick_values = PROB_TICKS if prob else nice_ticks(0.0, top, count=4)
            y_axis.tick_format = ".2~f" if prob else ".3~g"
            with figure.hold_sync():
                with others.hold_sync():
                    others.x, others.y = x, data
                with current.hold_sync():
                    current.x, current.y = x, data[i]
                with point.hold_sync():
                    point.x, point.y = [x[j]], [float(data[i, j])]
                x_axis.label = UNITS[self.kind]
        a, b = (display_name(self.inspector, layer) for layer in self._plotted())
        self._readout.value = self._html(
            [
                f"{KINDS[self.kind][0]} {_unit(self.kind, self.amount)} of image {i}:",
                f"distance at {html.escape(a)} = <b>{float(series[0][i, j]):.4g}</b>, "
                f"at {html.escape(b)} = <b>{float(series[1][i, j]):.4g}</b>, "
                f"p(<b>{html.escape(label)}</b>) = <b>{float(series[2][i, j]):.3f}</b>",
            ]
        )

    @staticmethod
    def _html(lines: list[str]) -> str:
        style = f"color: {COLOURS['body']}; font-family: {FONT}; line-height: 1.5"
        return f'<div style="{style}">' + "<br>".join(lines) + "</div>"

    # ----- the sweep -----------------------------------------------------------------------
    def _compute(self) -> None:
        kind, layers = self.kind, list(self.layers)
        if kind in self.curves:
            return
        values = self.amounts[kind]

        def work(should_stop, report) -> InvarianceCurves:
            return invariance_curves(
                self.inspector,
                self.images,
                self.labels,
                kind,
                values,
                layers,
                self.fill,
                callback=report,
                should_stop=should_stop,
            )

        key = f"{kind}:{','.join(layers)}"
        self._in_background(key, work, self._sweep_done, label=f"{kind} sweep")

    def _sweep_done(self, curves: InvarianceCurves) -> None:
        with errors_to(self.status_line, "curves"):
            if list(curves.distances) != list(dict.fromkeys(self.layers)):
                return  # the layers changed meanwhile; the newer sweep will draw
            self.curves[curves.kind] = curves
            if curves.kind == self.kind:
                self._draw_curves()
            self.status_line.info(
                f"{KINDS[curves.kind][0]}: {len(curves.amounts)} amounts x "
                f"{len(self.images)} images"
            )
            if self.kind not in self.curves:  # the user moved on while this one ran
                self._compute()
