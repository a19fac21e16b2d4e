"""Can a class trust the picture? Sanity checks and faithfulness of every method, live.

The image and every method's class map side by side; a "randomised down to" slider that shows
the maps of the model re-initialised from the top down to a block (Adebayo et al., 2018); the
similarity of each map to the trained one per stage (one line per method); the deletion and
insertion curves per method with their AUC (Petsiuk et al., 2018). All numbers come from
:mod:`zfwidgets.core.trust` (which caches the maps per model, image, method and stage); the
widget lays them out and runs the long work in the background.

Example:
    >>> from zfwidgets import demo
    >>> from zfwidgets.widgets.trust_explorer import TrustExplorer
    >>> d = demo.load()
    >>> w = TrustExplorer(d.model, d.dataset, classes=d.classes, mean=d.mean,
    ...                   methods=["guided", "saliency"], steps=4)
    >>> w.wait()
    True
    >>> w.stages
    ['none', 'fc5', 'fc4', 'conv3', 'conv2', 'conv1']
    >>> w.stage = "fc5"               # the maps of the model with a random classifier
    >>> sorted(w.shown_maps)
    ['guided', 'saliency']
    >>> w.close()
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

import ipywidgets as widgets
import numpy as np
import traitlets
from bqplot import Axis, Figure, LinearScale, Lines, OrdinalScale
from torch import Tensor, nn

from zfwidgets.core import render
from zfwidgets.core.cache import module_tree, parameter_version
from zfwidgets.core.checks import check_fill
from zfwidgets.core.inspector import Inspector
from zfwidgets.core.methods import REGISTRY
from zfwidgets.core.preprocess import Preprocessing
from zfwidgets.core.trust import (
    METRICS,
    Curves,
    Randomisation,
    block_modules,
    cascade,
    deletion_insertion,
    trust_methods,
)
from zfwidgets.core.trust.faithfulness import check_steps, is_road
from zfwidgets.core.trust.maps import OCCLUSION, check_trust_method, heat_map
from zfwidgets.widgets.base import WidgetBase, class_names, inspector_for, refusing
from zfwidgets.widgets.parts import (
    COLOURS,
    FONT,
    ImageSource,
    caption,
    class_options,
    full_width,
    png_image,
    widget_preprocessing,
    zoom_for,
)

__all__ = ["METRIC_LABELS", "TrustExplorer", "method_label"]

FIGURE_WIDTH = 310  # three figures side by side in a notebook's width
MAP_SIDE = 112  # about how big each method's map is on screen, in pixels
IMAGE_SIDE = 168
NONE = "none"
STATE = ("stage", "metric", "image_index")
# The metric buttons: label -> the core's metric name.
METRIC_LABELS = {
    "spearman_abs": "Spearman |map|",
    "spearman": "Spearman signed",
    "ssim": "SSIM",
    "hog": "HOG",
}
# One colour per method (SVG colours that read on both themes).
LINE_COLOURS = ["#1976d2", "#e65100", "#2e7d32", "#8e24aa", "#c62828", "#00838f", "#6d4c41"]


def method_label(method: str) -> str:
    """The short label of a method for captions and legends.

    Example:
        >>> method_label("guided"), method_label("occlusion")
        ('guided', 'occlusion')
    """
    return "occlusion" if method == OCCLUSION else REGISTRY[method].label


def map_picture(saliency: Tensor, method: str) -> np.ndarray:
    """A class map as a picture: heat maps (Grad-CAM, CAM, occlusion) by value, dark = low;
    picture signals by magnitude, black = nothing.

    Example:
        >>> import torch
        >>> map_picture(torch.tensor([[0.0, -2.0], [1.0, 0.0]]), "saliency").tolist()
        [[0, 255], [128, 0]]
    """
    if heat_map(method):
        return render.heatmap(saliency)
    return render.saliency_image(saliency)


class TrustExplorer(WidgetBase):
    """Sanity checks (cascading randomisation) and faithfulness (deletion / insertion) of
    every method's class map for one image, live.

    Args:
        model_or_inspector: a classifier (wrapped in an :class:`Inspector`, never modified:
            the randomisation happens on copies) or an Inspector.
        images: a tensor (N, C, H, W), one image, a list of images or a Dataset of
            ``(image, label)``; ``image_index`` picks one.
        classes: class names (index = class); default the class numbers.
        preprocessing: the model's preprocessing (true colours for the image); ``mean`` is the
            older shorthand (the mean subtracted, std 1).
        target: the class explained; default each image's predicted class.
        methods: the methods compared; default every one the model supports and occlusion
            (:func:`~zfwidgets.core.trust.trust_methods`).
        blocks: the stages of the cascade, top first; default every block with weights.
        steps: the deletion / insertion steps (equal shares of the pixels).
        fill: what deleted pixels become (model-input units); default the preprocessing's fill
            (0: the mean); ``"road"`` imputes them from their neighbours (ROAD, seeded by
            ``seed``; see :func:`~zfwidgets.core.trust.deletion_insertion`).
        seed: the seed of the re-initialisation.
        **state: initial ``stage``, ``metric``, ``image_index``.

    Traits ``image_index``, ``target``, ``methods``, ``blocks``, ``steps``, ``fill`` start new
    work in the background (cached by the core); ``stage`` and ``metric`` only redraw. A bad
    value (an unknown block, a method the model lacks, steps <= 0, a NaN fill) is refused: the
    trait keeps its value and the status line says why. ``result`` is the last
    :class:`~zfwidgets.core.trust.Randomisation`, ``curves`` the :class:`Curves` per method,
    ``shown_maps`` the maps (H, W) drawn now, per method.

    Raises:
        ValueError, TypeError: a bad argument while building (the core's message).
    """

    css_class = "zfw-trust-explorer"
    status_hint = "move 'randomised down to': do the maps change when the model's weights do?"
    progress_width = "320px"
    name_in_refusals = True

    image_index = traitlets.Int(0)
    target = traitlets.Int(0)
    methods = traitlets.List(traitlets.Unicode())
    blocks = traitlets.List(traitlets.Unicode())
    stage = traitlets.Unicode(NONE)
    metric = traitlets.Unicode("spearman_abs")
    steps = traitlets.Int(20)
    fill = traitlets.Any(0.0)
    seed = traitlets.Int(0)

    def __init__(
        self,
        model_or_inspector: nn.Module | Inspector,
        images: Any,
        classes: Sequence[str] | None = None,
        preprocessing: Any = None,
        mean: Any = None,
        target: int | None = None,
        methods: Sequence[str] | None = None,
        blocks: Sequence[str] | None = None,
        steps: int = 20,
        fill: float | Tensor | None = None,
        seed: int = 0,
        **state: Any,
    ) -> None:
        super().__init__()
        self._check_state(state, STATE)
        self.inspector = inspector_for(model_or_inspector)
        self.preprocessing: Preprocessing | None = widget_preprocessing(
            "TrustExplorer", preprocessing, mean, self.inspector.in_channels
        )
        self._source = ImageSource(images)
        if len(self._source) == 0:
            raise ValueError("TrustExplorer needs at least one image")
        first = self.inspector.image(self._source[0][0])  # the core's message for a bad image
        self._classes = class_names(classes, int(self.inspector.predict(first).numel()))
        self._follow_prediction = target is None
        self.result: Randomisation | None = None
        self.curves: dict[str, Curves] = {}
        self.shown_maps: dict[str, Tensor] = {}
        self._curve_cache: dict[tuple, Curves] = {}  # of the weights of _curve_version
        self._curve_version: tuple | None = None
        self._build()
        self.image_index = state.get("image_index", 0)
        self.target = self._predicted() if target is None else target
        self.methods = list(trust_methods(self.inspector) if methods is None else methods)
        default_blocks = [
            b for b in reversed(self.inspector.blocks) if block_modules(self.inspector, b)
        ]
        self.blocks = list(default_blocks if blocks is None else blocks)
        self.steps = steps
        if fill is None:
            fill = 0.0 if self.preprocessing is None else self.preprocessing.fill
        self.fill = fill
        self.seed = seed
        self.metric = state.get("metric", "spearman_abs")
        self._stage_slider.options = self.stages
        self.stage = state.get("stage", NONE)
        self._finish_building()
        self._build_map_tiles()
        self._draw_image()
        self._start()

    # ----- public -------------------------------------------------------------------------
    @property
    def stages(self) -> list[str]:
        """``"none"`` (the trained model), then each block down to which the model is random."""
        return [NONE, *self.blocks]

    @property
    def image(self) -> Tensor:
        """The image shown, (1, C, H, W) on the inspector's device."""
        return self.inspector.image(self._source[self.image_index][0])

    # ----- building -----------------------------------------------------------------------
    def _build(self) -> None:
        self._image_view = png_image("The image explained", "zfw-trust-image")
        self._image_caption = caption(width=f"{IMAGE_SIDE + 40}px")
        self._image_slider = widgets.IntSlider(
            description="image",
            min=0,
            max=len(self._source) - 1,
            continuous_update=False,
            tooltip="which image (recomputes the maps and curves)",
            layout=widgets.Layout(width="320px"),
        )
        self._image_slider.disabled = len(self._source) < 2
        self._target_menu = widgets.Dropdown(
            description="target",
            options=class_options(self._classes),
            tooltip="the class whose maps and probability are explained",
            layout=widgets.Layout(width="320px"),
        )
        self._stage_slider = widgets.SelectionSlider(
            description="randomised down to",
            options=[NONE],
            style={"description_width": "150px"},
            tooltip="the blocks from the top down to this one are re-initialised (random); "
            "'none' is the trained model",
            layout=widgets.Layout(width="480px"),
        )
        self._metric_buttons = widgets.ToggleButtons(
            options=[(label, key) for key, label in METRIC_LABELS.items()],
            tooltips=[
                "Spearman rank correlation of |map| with the trained map",
                "Spearman rank correlation of the signed maps",
                "structural similarity (SSIM) of the maps",
                "similarity of the maps' histograms of oriented gradients",
            ],
            style={"button_width": "auto"},
        )
        self._bind("image_index", self._image_slider)
        self._bind("target", self._target_menu)
        self._bind("stage", self._stage_slider)
        self._bind("metric", self._metric_buttons)
        self._maps_box = widgets.HBox(layout=full_width(flex_flow="row wrap"))
        self._map_views: dict[str, widgets.Image] = {}
        self._map_captions: dict[str, widgets.HTML] = {}
        self._build_figures()
        controls = widgets.VBox(
            [self._image_slider, self._target_menu, self._stage_slider, self._metric_buttons],
            layout=widgets.Layout(flex="1 1 480px"),
        )
        left = widgets.VBox(
            [self._image_caption, self._image_view],
            layout=widgets.Layout(flex="0 0 auto", margin="0 24px 0 0"),
        )
        self.children = [
            widgets.HBox([left, controls], layout=full_width(flex_flow="row wrap")),
            self._stage_caption,
            self._maps_box,
            widgets.HBox(
                [
                    widgets.VBox([self._similarity_figure, self._legends["similarity"]]),
                    widgets.VBox([self._deletion_figure, self._legends["deletion"]]),
                    widgets.VBox([self._insertion_figure, self._legends["insertion"]]),
                ],
                layout=full_width(flex_flow="row wrap"),
            ),
            widgets.HBox([self._progress], layout=full_width()),
            self.status_line,
        ]

    def _tick_figures(self) -> list[Figure]:
        names = ("_similarity_figure", "_deletion_figure", "_insertion_figure")
        return [getattr(self, n) for n in names if hasattr(self, n)]

    def _build_figures(self) -> None:
        text = {"fill": COLOURS["body"], "font-family": FONT}
        self._stage_caption = caption(role="body")

        def figure(x_scale, y_scale, x_label: str, y_label: str, title: str, css: str):
            lines = Lines(
                x=[NONE] if isinstance(x_scale, OrdinalScale) else [0.0],
                y=[0.0],
                scales={"x": x_scale, "y": y_scale},
                display_legend=False,  # the legend is text under the plot (covers nothing)
                stroke_width=2,
            )
            axes = [
                Axis(scale=x_scale, label=x_label, tick_style=text, label_color="#888"),
                Axis(
                    scale=y_scale,
                    side="left",
                    label=y_label,
                    tick_style=text,
                    label_color="#888",
                ),
            ]
            fig = Figure(
                marks=[lines],
                axes=axes,
                title=title,
                title_style={"fill": COLOURS["body"], "font-size": "13px"},
                fig_margin={"top": 30, "bottom": 45, "left": 50, "right": 10},
                background_style={"fill": "transparent"},
                layout=widgets.Layout(width=f"{FIGURE_WIDTH}px", height="280px"),
            )
            fig.add_class(css)
            return fig, lines

        self._legends = {
            name: widgets.HTML(layout=widgets.Layout(width=f"{FIGURE_WIDTH}px"))
            for name in ("similarity", "deletion", "insertion")
        }
        for name, legend in self._legends.items():
            legend.add_class(f"zfw-trust-{name}-legend")
        sim_x = OrdinalScale()
        sim_y = LinearScale(min=-1.0, max=1.0)
        self._similarity_figure, self._similarity_lines = figure(
            sim_x, sim_y, "randomised down to", "similarity", "similarity to the trained map",
            "zfw-trust-similarity",
        )  # fmt: skip
        self._stage_marker = Lines(
            x=[NONE, NONE],
            y=[-1.0, 1.0],
            scales={"x": sim_x, "y": sim_y},
            colors=["#d32f2f"],
            line_style="dashed",
        )
        self._similarity_figure.marks = [self._similarity_lines, self._stage_marker]
        unit = dict(min=0.0, max=1.0)
        self._deletion_figure, self._deletion_lines = figure(
            LinearScale(**unit), LinearScale(**unit), "share of pixels deleted", "p(target)",
            "deletion (lower AUC: faithful)", "zfw-trust-deletion",
        )  # fmt: skip
        self._insertion_figure, self._insertion_lines = figure(
            LinearScale(**unit), LinearScale(**unit), "share of pixels inserted", "p(target)",
            "insertion (higher AUC: faithful)", "zfw-trust-insertion",
        )  # fmt: skip

    def _build_map_tiles(self) -> None:
        """One small picture per method, with its label."""
        h, w = (int(s) for s in self.image.shape[-2:])
        self._map_zoom = zoom_for(max(h, w), MAP_SIDE)
        self._map_views, self._map_captions = {}, {}
        tiles = []
        for method in self.methods:
            view = png_image(f"{method_label(method)}'s class map", "zfw-trust-map")
            label = caption(method_label(method), "body", self._map_help(method))
            self._map_views[method], self._map_captions[method] = view, label
            tiles.append(widgets.VBox([label, view], layout=widgets.Layout(margin="0 10px 8px 0")))
        self._maps_box.children = tiles

    def _map_help(self, method: str) -> str:
        if heat_map(method):
            return "a heat map: bright = pushes the class up (ranked by value)"
        return "a picture signal shown as |map|: bright = large magnitude"

    # ----- validation (raise while building, then keep and say why) -----------------------
    @refusing("image_index")
    def _check_image_index(self, index: int) -> int:
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(f"image_index must be an int; got {index!r}")
        if not 0 <= index < len(self._source):
            raise ValueError(f"image_index {index} is out of range 0..{len(self._source) - 1}")
        self.inspector.image(self._source[index][0])
        return index

    @refusing("target")
    def _check_target(self, target: int) -> int:
        return self.inspector.target_class(self.image, target)

    @refusing("methods")
    def _check_methods(self, methods: list) -> list:
        if not methods:
            raise ValueError(
                f"give at least one method; allowed: {', '.join(trust_methods(self.inspector))}"
            )
        return [check_trust_method(self.inspector, m) for m in methods]

    @refusing("blocks")
    def _check_blocks(self, blocks: list) -> list:
        for b in blocks:
            block_modules(self.inspector, b)
        return list(blocks)

    @refusing("stage")
    def _check_stage(self, stage: str) -> str:
        if stage not in self.stages:
            raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(self.stages)}")
        return stage

    @refusing("metric")
    def _check_metric(self, metric: str) -> str:
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
        return metric

    @refusing("steps")
    def _check_steps(self, steps: int) -> int:
        return check_steps(steps, self.image.shape[-2] * self.image.shape[-1])

    @refusing("fill")
    def _check_fill(self, fill: Any) -> Any:
        return fill if is_road(fill) else check_fill(fill, self.image)

    # ----- reacting -----------------------------------------------------------------------
    @traitlets.observe("image_index")
    def _image_changed(self, change: dict) -> None:
        if not self._live:
            return
        if self._follow_prediction:
            with self._quietly():
                self.target = self._predicted()
        self._draw_image()
        self._start()

    @traitlets.observe("target")
    def _target_changed(self, change: dict) -> None:
        if self._live:
            self._follow_prediction = False
            self._draw_image()
            self._start()

    @traitlets.observe("methods")
    def _methods_changed(self, change: dict) -> None:
        if self._live:
            self._build_map_tiles()
            self._start()

    @traitlets.observe("blocks")
    def _blocks_changed(self, change: dict) -> None:
        if not self._live:
            return
        with self._quietly():
            self._stage_slider.options = self.stages
            if self.stage not in self.stages:
                self.stage = NONE
            self._stage_slider.value = self.stage
        self._start()

    @traitlets.observe("steps", "fill", "seed")
    def _setting_changed(self, change: dict) -> None:
        if self._live:
            self._start()

    @traitlets.observe("stage")
    def _stage_changed(self, change: dict) -> None:
        if self._live:
            with self._lock:
                self._draw_maps()
                self._draw_marker()

    @traitlets.observe("metric")
    def _metric_changed(self, change: dict) -> None:
        if self._live:
            with self._lock:
                self._draw_similarity()

    # ----- the work -----------------------------------------------------------------------
    def _start(self) -> None:
        """The cascade (all stages) and the curves of every method, in the background."""
        img, target, methods = self.image, self.target, list(self.methods)
        blocks, steps, fill, seed = list(self.blocks), self.steps, self.fill, self.seed
        index = self.image_index
        key = f"{index}:{target}:{methods}:{blocks}:{steps}:{fill!r}:{seed}"
        total = len(blocks) + 1 + len(methods)

        def work(should_stop, report):
            def progress(done: int, _total: int) -> None:
                if should_stop():
                    raise RuntimeError("cancelled")
                report(done, total)
                # in words: BackgroundTask counts "images"; here the units are stages and methods
                stages = len(blocks) + 1
                self.status_line.busy(
                    f"randomised {min(done, stages)} of {stages} stages"
                    if done <= stages
                    else f"deletion / insertion: {done - stages} of {len(methods)} methods"
                )

            result = cascade(
                self.inspector, img, methods, target, blocks, seed=seed, callback=progress
            )
            curves = {}
            # the weights' version (as the inspector and the cascade's cache read it): a model
            # changed in place since a curve was cached gets a new curve, never the old one
            version = (module_tree(self.inspector.model), parameter_version(self.inspector.model))
            if version != self._curve_version:
                self._curve_cache.clear()  # curves of old weights are never asked for again
                self._curve_version = version
            for i, m in enumerate(methods):
                ckey = (index, target, m, steps, repr(fill), seed)
                if ckey not in self._curve_cache:
                    self._curve_cache[ckey] = deletion_insertion(
                        self.inspector, img, m, target, steps=steps, fill=fill, seed=seed
                    )
                curves[m] = self._curve_cache[ckey]
                progress(len(blocks) + 2 + i, total)
            return result, curves

        self.status_line.busy(
            f"randomising {len(blocks)} blocks and measuring {len(methods)} methods"
        )
        self._in_background(key, work, self._done, label="cascade and curves")

    def _done(self, outcome: tuple[Randomisation, dict[str, Curves]]) -> None:
        self.result, self.curves = outcome
        with self.hold_sync():
            self._draw_maps()
            self._draw_similarity()
            self._draw_curves()
        best = min(self.curves, key=lambda m: self.curves[m].deletion_auc)
        self.status_line.info(
            f"ready: {len(self.result.stages)} stages, {len(self.result.methods)} methods; "
            f"lowest deletion AUC: {method_label(best)} ({self.curves[best].deletion_auc:.3f})"
        )

    # ----- drawing ------------------------------------------------------------------------
    def _predicted(self) -> int:
        return int(self.inspector.predict(self.image).argmax())

    def _draw_image(self) -> None:
        img = self.image
        picture = render.input_image(img[0], preprocessing=self.preprocessing)
        zoom = zoom_for(max(img.shape[-2:]), IMAGE_SIDE)
        self._image_view.value = render.to_png(render.upscale(picture, zoom))
        prob = float(self.inspector.predict(img)[self.target])
        self._image_caption.text = (
            f"image {self.image_index}: p({self._classes[self.target]}) = {prob:.3f}"
        )

    def _draw_maps(self) -> None:
        """Every method's map at the current stage, from the last finished cascade."""
        result = self.result
        if result is None or self.stage not in result.stages:
            return
        where = "the trained model" if self.stage == NONE else f"randomised down to {self.stage}"
        self._stage_caption.text = f"class maps of {self._classes[result.target]}, {where}"
        self.shown_maps = {}
        for method in result.methods:
            if method not in self._map_views:
                continue
            saliency = result.maps[method][self.stage]
            self.shown_maps[method] = saliency
            picture = render.upscale(map_picture(saliency, method), self._map_zoom)
            self._map_views[method].value = render.to_png(picture)
            score = result.scores[method][self.stage][self.metric]
            shown = "constant map" if math.isnan(score) else f"{score:.2f}"
            self._map_captions[
                method
            ].text = f"{method_label(method)}: {METRIC_LABELS[self.metric]} {shown}"

    def _draw_similarity(self) -> None:
        result = self.result
        if result is None:
            return
        self._draw_maps()
        ys = [
            [_finite(result.scores[m][s][self.metric]) for s in result.stages]
            for m in result.methods
        ]
        with self._similarity_lines.hold_sync():
            self._similarity_lines.x = list(result.stages)
            self._similarity_lines.y = ys
            self._similarity_lines.colors = _colours(len(result.methods))
            self._similarity_lines.labels = [method_label(m) for m in result.methods]
        self._legends["similarity"].value = _legend_html(
            self._similarity_lines.labels, self._similarity_lines.colors
        )
        self._draw_marker()

    def _draw_marker(self) -> None:
        self._stage_marker.x = [self.stage, self.stage]

    def _draw_curves(self) -> None:
        methods = [m for m in self.methods if m in self.curves]
        if not methods:
            return
        fractions = self.curves[methods[0]].fractions.tolist()
        for lines, kind in (
            (self._deletion_lines, "deletion"),
            (self._insertion_lines, "insertion"),
        ):
            with lines.hold_sync():
                lines.x = fractions
                lines.y = [getattr(self.curves[m], kind).tolist() for m in methods]
                lines.colors = _colours(len(methods))
                lines.labels = [
                    f"{method_label(m)} AUC {getattr(self.curves[m], kind + '_auc'):.3f}"
                    for m in methods
                ]
            self._legends[kind].value = _legend_html(lines.labels, lines.colors)

    def similarity_lines(self) -> dict[str, list[float]]:
        """The similarity curve drawn per method (NaN drawn as 0), stage order."""
        return {
            label: list(y)
            for label, y in zip(
                self._similarity_lines.labels, self._similarity_lines.y, strict=True
            )
        }


def _legend_html(labels: Sequence[str], colours: Sequence[str]) -> str:
    """A legend as a line of text: a colour swatch and the label of each line."""
    items = "".join(
        f'<span style="white-space: nowrap; margin-right: 12px">'
        f'<span style="color: {c}; font-weight: bold">━━</span> {html.escape(label)}</span> '
        for label, c in zip(labels, colours, strict=True)
    )
    style = f"color: {COLOURS['body']}; font-family: {FONT}; font-size: 12px; line-height: 1.5"
    return f'<div style="{style}">{items}</div>'


def _finite(value: float) -> float:
    return 0.0 if math.isnan(value) else float(value)


def _colours(n: int) -> list[str]:
    return [LINE_COLOURS[i % len(LINE_COLOURS)] for i in range(n)]
