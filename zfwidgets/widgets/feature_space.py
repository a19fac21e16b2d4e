"""FeatureSpace: a data set's feature vectors as a 2-D scatter, and an image's neighbours.

Every image of the data set is one point of a PCA or t-SNE embedding of its features at one
layer (default the one feeding the last linear layer, the lecture's FC7), coloured by class.
Click a point (or type its number) to see the image, its k nearest neighbours in feature space
and its k nearest neighbours in pixel space, side by side: the lecture's two figures.

Example:
    >>> from torch.utils.data import Subset
    >>> from zfwidgets import demo
    >>> from zfwidgets.widgets.feature_space import FeatureSpace
    >>> d = demo.load()
    >>> some = Subset(d.dataset, range(125))   # every class: the digits are interleaved
    >>> w = FeatureSpace(d.model, some, classes=d.classes, mean=d.mean)
    >>> w.wait()                              # features and the PCA embedding are ready
    True
    >>> w.selected = 7                        # image 7, its neighbours in both spaces
    >>> len(w.feature_neighbours), len(w.pixel_neighbours)
    (5, 5)
    >>> w.close()
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import ipywidgets as widgets
import numpy as np
import traitlets
from bqplot import Axis, Figure, LinearScale, Scatter
from torch import Tensor, nn

from zfwidgets.core import render
from zfwidgets.core.data_labels import data_labels
from zfwidgets.core.feature_space import (
    EMBEDDINGS,
    FeatureSpaceCancelled,
    default_feature_layer,
    embed,
    features,
    label_share,
    nearest,
    pixel_values,
)
from zfwidgets.core.inspector import Inspector
from zfwidgets.core.preprocess import Preprocessing
from zfwidgets.widgets.base import WidgetBase, class_names, errors_to, inspector_for, refusing
from zfwidgets.widgets.menus import LayerMenu
from zfwidgets.widgets.parts import (
    COLOURS,
    FONT,
    PROJECTOR_FONT_PX,
    ImageSource,
    blank_png,
    caption,
    full_width,
    png_image,
    projector_mode,
    widget_preprocessing,
)
from zfwidgets.widgets.top_nine import tile_pixels

__all__ = ["FeatureSpace", "METHODS"]

METHODS = {
    "pca": ("PCA", "Principal components: a linear view, distances along the axes are real"),
    "tsne": ("t-SNE", "t-SNE (seeded): keeps neighbourhoods, not distances; computed once"),
}
MAX_K = 12
SELECTED_COLOUR = "#ffeb3b"  # the selected point's ring: reads on both themes


class FeatureSpace(WidgetBase):
    """A data set in feature space: embedding scatter, and the nearest neighbours of an image.

    Args:
        model_or_inspector: an ``nn.Module`` (never modified) or an ``Inspector``.
        dataset: the images: a tensor (N, C, H, W) or a Dataset of ``(image, label)``; labels
            colour the points (a tensor has none: every point is one colour).
        classes: class names, indexed by label (legend and captions).
        mean: the older shorthand for ``preprocessing``: the mean image (or one number per
            channel) subtracted from the inputs, with std 1.
        layer: the feature layer; default
            :func:`~zfwidgets.core.feature_space.default_feature_layer`.
        seed: the t-SNE seed (the same seed gives the same picture).
        batch_size: images per forward pass of the feature pass.
        preprocessing: the model's preprocessing (a
            :class:`~zfwidgets.core.preprocess.Preprocessing`, or torchvision's
            ``weights.transforms()``): images are drawn in their true colours
            (``x * std + mean``). Without it (and without ``mean``) each picture is stretched
            min..max.
        **state: initial values of the traits below.

    Traits: layer (the feature layer; the menu lists the model's blocks), method (``"pca"``
    or ``"tsne"``), selected (the image shown, -1 none), k (neighbours shown, 1..12), status
    (read-only). A value that cannot be used keeps the previous one and says why in
    ``status``. ``close()`` waits at most ``close_wait_seconds`` (1 s) for the background
    work: a t-SNE already running cannot be interrupted, so it finishes in its own thread and
    its result is dropped. ``feature_neighbours`` and ``pixel_neighbours`` are the selected image's
    neighbour indices, ``points`` the current embedding (N, 2).
    """

    css_class = "zfw-feature-space"
    # A t-SNE cannot be interrupted (scikit-learn has no hook): close() waits this long, then
    # returns and the worker ends by itself, its result dropped.
    close_wait_seconds = 1.0
    status_hint = "click a point (or type an image number) to see its nearest neighbours"
    progress_width = "320px"
    name_in_refusals = True

    layer = traitlets.Unicode("")
    method = traitlets.Unicode("pca")
    selected = traitlets.Int(-1)
    k = traitlets.Int(5)

    def __init__(
        self,
        model_or_inspector: nn.Module | Inspector,
        dataset: Any,
        classes: Sequence[str] | None = None,
        mean: Tensor | None = None,
        layer: str | None = None,
        seed: int = 0,
        batch_size: int = 64,
        preprocessing: Any = None,
        **state: Any,
    ) -> None:
        super().__init__()
        self._check_state(state, ("method", "selected", "k"))
        self.inspector = inspector_for(model_or_inspector)
        self.preprocessing: Preprocessing | None = widget_preprocessing(
            "FeatureSpace", preprocessing, mean, self.inspector.in_channels
        )
        self.dataset = dataset
        self._source = ImageSource(dataset)
        if len(self._source) < 3:
            raise ValueError(f"dataset has {len(self._source)} images; give at least 3")
        self.image_shape = self._source.shape
        self.mean, self.seed, self.batch_size = mean, seed, batch_size
        # Without names given, the data set's own: .classes for int labels, the labels
        # themselves for string labels ("cat", "dog"), so the scatter's legend reads them.
        self.classes = class_names(classes, None) or data_labels(dataset)[1]
        self._embeddings: dict[tuple[str, str], np.ndarray] = {}
        self._features = None
        self._pixels = None
        self.points: np.ndarray | None = None
        self.feature_neighbours: list[int] = []
        self.pixel_neighbours: list[int] = []
        self._build()
        self.layer = layer if layer is not None else self._default_layer()
        self.method = state.get("method", "pca")
        self.k = state.get("k", 5)
        self.selected = state.get("selected", -1)
        self._finish_building()
        self._layer_menu.show(self.layer)
        self._show_selection()
        self._compute()

    # ----- set-up --------------------------------------------------------------------------
    def _default_layer(self) -> str:
        return default_feature_layer(self.inspector, self.image_shape)

    def _build(self) -> None:
        self._method_toggle = widgets.ToggleButtons(
            options=[(label, name) for name, (label, _) in METHODS.items()],
            tooltips=[tip for _, tip in METHODS.values()],
            style={"button_width": "90px"},
        )
        self._layer_menu = LayerMenu(
            self.inspector,
            self.inspector.blocks,
            description="layer",
            tooltip="The layer whose feature vectors are embedded and compared",
            layout=widgets.Layout(width="300px"),
        )
        self._layer_menu.on_pick(lambda layer: setattr(self, "layer", layer))
        self._k_slider = widgets.IntSlider(
            min=1,
            max=MAX_K,
            description="k",
            tooltip="How many nearest neighbours to show in each space (←/→ when focused)",
            layout=widgets.Layout(width="260px"),
        )
        self._image_box = widgets.BoundedIntText(
            min=-1,
            max=len(self._source) - 1,
            description="image",
            tooltip="The image whose neighbours are shown (-1: none); or click a point",
            layout=widgets.Layout(width="180px"),
        )
        self._x, self._y = LinearScale(), LinearScale()
        self._marks: list[Scatter] = []
        self._ring = Scatter(
            x=[],
            y=[],
            scales={"x": self._x, "y": self._y},
            colors=[SELECTED_COLOUR],
            stroke="black",
            stroke_width=2.5,
            default_size=220,
        )
        text = {"fill": COLOURS["body"], "font-family": FONT}
        self._figure = Figure(
            marks=[self._ring],
            axes=[
                Axis(scale=self._x, label="", tick_style=text, num_ticks=0),
                Axis(scale=self._y, side="left", tick_style=text, num_ticks=0),
            ],
            fig_margin={"top": 16, "bottom": 16, "left": 16, "right": 16},
            background_style={"fill": "transparent"},
            layout=widgets.Layout(width="460px", height="420px"),
        )
        self._figure.add_class("zfw-feature-plot")
        # The class legend is HTML under the plot: drawn inside it, bqplot's toolbar covered it
        # and it covered points.
        self._legend = widgets.HTML(layout=widgets.Layout(width="460px"))
        self._legend.add_class("zfw-feature-legend")
        self._query = png_image("the selected image", css_class="zfw-feature-query")
        self._query_caption = caption(tooltip=self._query.help_text)
        self._feature_grid = png_image(
            "nearest in feature space", css_class="zfw-feature-neighbours"
        )
        self._pixel_grid = png_image("nearest in pixel space", css_class="zfw-pixel-neighbours")
        self._feature_caption = caption(tooltip="its k nearest images in the layer's features")
        self._pixel_caption = caption(tooltip="its k nearest images pixel by pixel (Euclidean)")
        self._readout = widgets.HTML(layout=full_width(min_height="2.8em"))
        self._readout.add_class("zfw-feature-readout")
        pictures = widgets.VBox(
            [
                self._query_caption,
                self._query,
                self._feature_caption,
                self._feature_grid,
                self._pixel_caption,
                self._pixel_grid,
            ],
            layout=widgets.Layout(flex="1 1 320px", margin="0 0 0 12px"),
        )
        controls = widgets.HBox(
            [self._method_toggle, self._layer_menu, self._k_slider, self._image_box],
            layout=full_width(flex_flow="row wrap"),
        )
        self.children = [
            controls,
            widgets.HBox(
                [widgets.VBox([self._figure, self._legend]), pictures],
                layout=full_width(flex_flow="row wrap"),
            ),
            self._readout,
            widgets.HBox([self._progress], layout=full_width()),
            self.status_line,
        ]
        self._bind("method", self._method_toggle)
        self._bind("k", self._k_slider)
        self._bind("selected", self._image_box)

    # ----- validation ------------------------------------------------------------------------
    @refusing("layer")
    def _check_layer(self, layer: str) -> str:
        self.inspector.layer_index(layer)  # unknown layer: the inspector's message
        return layer

    @refusing("method")
    def _check_method(self, method: str) -> str:
        if method not in EMBEDDINGS:
            raise ValueError(f"unknown method {method!r}; choose one of {', '.join(EMBEDDINGS)}")
        return method

    @refusing("selected")
    def _check_selected(self, index: int) -> int:
        if not -1 <= index < len(self._source):
            raise ValueError(f"image {index} is out of range: -1..{len(self._source) - 1}")
        return index

    @refusing("k")
    def _check_k(self, k: int) -> int:
        if not 1 <= k <= min(MAX_K, len(self._source) - 1):
            raise ValueError(f"k {k} is out of range: 1..{min(MAX_K, len(self._source) - 1)}")
        return k

    # ----- reacting --------------------------------------------------------------------------
    @traitlets.observe("layer", "method")
    def _space_changed(self, change: dict) -> None:
        if not self._live:
            return
        if change["name"] == "layer":
            self._layer_menu.show(self.layer)
        self._compute()

    @traitlets.observe("selected", "k")
    def _selection_changed(self, change: dict) -> None:
        if self._live:
            self._show_selection()

    # ----- background work ---------------------------------------------------------------------
    def _compute(self) -> None:
        layer, method = self.layer, self.method
        if (layer, method) in self._embeddings:
            # newer work wins: an older job must not report over (or clear) what this draws
            self._tasks.cancel()
            self._space_done((layer, method, None, None, self._embeddings[(layer, method)]))
            return

        name = METHODS[method][0]

        total = len(self._source)

        def work(should_stop, report):
            # Each phase says itself: the features are counted in images, the pixel vectors
            # and the embedding are not (a t-SNE of 206 photos took 6 s under "206 of 206").
            # Said at once: the first batch of photos takes seconds, under the last status.
            report(0, total, f"features of the {total:,} images…")
            feats = features(
                self.inspector,
                self.dataset,
                layer,
                self.batch_size,
                progress=False,
                callback=lambda i, n: report(i, n, f"features of image {i:,} of {n:,}"),
                should_stop=should_stop,
            )
            count = len(feats.values)
            report(count, count, f"pixel vectors of the {count:,} images…")
            pixels = pixel_values(self.dataset, should_stop=should_stop)
            if should_stop():  # a t-SNE cannot be interrupted: do not start one for nothing
                raise FeatureSpaceCancelled(f"{method} of {layer} not started: moved on")
            dims = feats.values.shape[1]
            report(count, count, f"{name} of {count:,} feature vectors ({dims:,} numbers each)…")
            return layer, method, feats, pixels, embed(feats.values, method, self.seed)

        label = f"{name} of {layer}"
        self._in_background(f"{layer}:{method}", work, self._space_done, label=label)

    def _space_done(self, result) -> None:
        layer, method, feats, pixels, points = result
        with errors_to(self.status_line, "scatter"):
            self._embeddings[(layer, method)] = points
            if (layer, method) != (self.layer, self.method):
                return  # moved on meanwhile; the newer work draws
            if feats is None:  # from the widget's own embeddings: the features are cached
                feats = features(self.inspector, self.dataset, layer, progress=False)
                pixels = pixel_values(self.dataset)
            self._features, self._pixels, self.points = feats, pixels, points
            self._draw_scatter()
            self._show_selection()
            self.status_line.info(
                f"{METHODS[method][0]} of {feats.values.shape[1]:,}-dimensional features at "
                f"{layer}, {len(points):,} images"
            )

    # ----- drawing ---------------------------------------------------------------------------
    def _class_name(self, label: int) -> str:
        return (
            self.classes[label] if self.classes and 0 <= label < len(self.classes) else str(label)
        )

    def _draw_scatter(self) -> None:
        points, labels = self.points, self._features.labels
        groups = [None] if labels is None else sorted(set(labels.tolist()))
        colours = render.class_colours(max(len(groups), 1))
        marks = []
        self._members = []
        for group, colour in zip(groups, colours, strict=True):
            members = (
                np.arange(len(points)) if group is None else np.flatnonzero(labels.numpy() == group)
            )
            mark = Scatter(
                x=points[members, 0],
                y=points[members, 1],
                scales={"x": self._x, "y": self._y},
                colors=["#{:02x}{:02x}{:02x}".format(*colour)],
                default_size=28,
                labels=[self._class_name(group) if group is not None else "images"],
                display_legend=False,
                interactions={"click": "select"},
            )
            mark.on_element_click(self._clicked(members))
            marks.append(mark)
            self._members.append(members)
        pad = 0.05 * (points.max(0) - points.min(0) + 1e-9)
        with self._figure.hold_sync():
            with self._x.hold_sync():
                self._x.min, self._x.max = (
                    float(points[:, 0].min() - pad[0]),
                    float(points[:, 0].max() + pad[0]),
                )
            with self._y.hold_sync():
                self._y.min, self._y.max = (
                    float(points[:, 1].min() - pad[1]),
                    float(points[:, 1].max() + pad[1]),
                )
            self._figure.marks = [*marks, self._ring]
        self._marks = marks
        self._legend.value = self._legend_html(groups, colours)

    def _legend_html(self, groups: list[int | None], colours: np.ndarray) -> str:
        """One swatch and name per class, wrapping under the plot."""
        if groups == [None]:
            return ""
        items = "".join(
            f'<span style="white-space: nowrap; margin-right: 0.9em">'
            f'<span style="display: inline-block; width: 0.8em; height: 0.8em; '
            f"background: rgb{tuple(int(v) for v in colour)}; vertical-align: middle; "
            f'margin-right: 0.3em"></span>{html.escape(self._class_name(group))}</span> '
            for group, colour in zip(groups, colours, strict=True)
        )
        style = f"color: {COLOURS['body']}; font-family: {FONT}; line-height: 1.6"
        return f'<div style="{style}">{items}</div>'

    def _clicked(self, members: np.ndarray):
        def click(mark: Scatter, event: dict) -> None:
            self.selected = int(members[int(event["data"]["index"])])

        return click

    def _show_selection(self) -> None:
        with self._lock, errors_to(self.status_line, "neighbours"):
            i = self.selected
            if i < 0 or self._features is None:
                self._show_nothing(i)
                return
            with self._ring.hold_sync():
                self._ring.x, self._ring.y = [self.points[i, 0]], [self.points[i, 1]]
            feats, _ = nearest(self._features.values, self._features.values[i], self.k, exclude=i)
            near, _ = nearest(self._pixels.values, self._pixels.values[i], self.k, exclude=i)
            self.feature_neighbours, self.pixel_neighbours = feats.tolist(), near.tolist()
            self._draw_grids()
            self._query_caption.say(f"image {i}: {self._label_text(i)}", "body")
            self._feature_caption.say(f"{self.k} nearest in feature space ({self.layer})", "body")
            self._pixel_caption.say(f"{self.k} nearest in pixel space", "body")
            self._readout.value = self._agreement(i)

    def _redraw_for_projector(self) -> None:
        self._draw_grids()

    def _draw_grids(self) -> None:
        """The selected image and its neighbours again (their labels at the mode's size); the
        neighbours are not searched again."""
        if self.selected >= 0 and self._features is not None:
            self._draw_grid(self._query, [self.selected])
            self._draw_grid(self._feature_grid, self.feature_neighbours)
            self._draw_grid(self._pixel_grid, self.pixel_neighbours)

    def _show_nothing(self, i: int) -> None:
        self.feature_neighbours, self.pixel_neighbours = [], []
        self._ring.x, self._ring.y = [], []
        for picture in (self._query, self._feature_grid, self._pixel_grid):
            picture.value = blank_png(8)
        self._query_caption.say("no image selected" if i < 0 else "computing the features...")
        self._feature_caption.say("")
        self._pixel_caption.say("")
        self._readout.value = ""

    def _label_text(self, i: int) -> str:
        labels = self._features.labels
        return "no label" if labels is None else self._class_name(int(labels[i]))

    def _draw_grid(self, picture: widgets.Image, indices: list[int]) -> None:
        """The images at ``indices`` in one row, each labelled with its number and class, shown
        at their own size (an Image without a width stretches to its box)."""
        side = tile_pixels(tuple(self.image_shape[-2:]))
        prep = self.preprocessing
        tiles = [
            render.resize(render.input_image(self._source[i][0], preprocessing=prep), side)
            for i in indices
        ]
        names = [f"#{i} · {self._label_text(i)}" for i in indices]  # as the top 9 write it
        # projector mode: the labels at its size where they fit (redrawn when it switches)
        size = PROJECTOR_FONT_PX if projector_mode() else None
        grid = render.grid(tiles, cols=len(tiles), pad=3, labels=names, label_px=size)
        with picture.hold_sync():
            picture.value = render.to_png(grid)
            picture.layout.width, picture.layout.height = (f"{n}px" for n in grid.shape[1::-1])

    def _agreement(self, i: int) -> str:
        labels = self._features.labels
        if labels is None:
            return ""
        shares = [
            label_share(labels, i, near)
            for near in (self.feature_neighbours, self.pixel_neighbours)
        ]
        style = f"color: {COLOURS['body']}; font-family: {FONT}; line-height: 1.5"
        return (
            f'<div style="{style}">share of the {self.k} neighbours with the label '
            f"<b>{html.escape(self._label_text(i))}</b>: feature space <b>{shares[0]:.0%}</b>, "
            f"pixel space <b>{shares[1]:.0%}</b></div>"
        )
