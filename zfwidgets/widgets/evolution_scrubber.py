"""EvolutionScrubber: how a convnet's features form during training (the paper's Fig. 4).

For every snapshot of a training run and every feature map of a layer, the grid shows the
projection of the map's strongest activation over the probe set (default: the run's training
set), in that snapshot's own weights. An orange frame marks a map whose strongest image changed
since the previous snapshot: the jumps the paper points out. Drag the epoch slider or press
Play; pick a layer; click a map to see its top 9 at that epoch beside their image patches.
The training curves mark the epoch on screen.

Each epoch is mined once (cached on disk by :class:`~zfwidgets.train.Evolution`) and drawn
once per layer in the background; scrubbing over epochs already drawn only swaps pictures.
With ``follow=True`` the widget watches a run that is still training and adds each new
snapshot as it is written.

Example:
    >>> from zfwidgets import EvolutionScrubber, demo
    >>> scrubber = EvolutionScrubber(demo.snapshots())    # the bundled demo run
    >>> scrubber.wait()                                   # every epoch drawn
    True
    >>> scrubber.epoch, scrubber.layer = 5, "conv2"       # what the controls do
    >>> scrubber.selected = 7                             # map 7's top 9 at epoch 5
    >>> scrubber                                          # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import ipywidgets as widgets
import numpy as np
import torch
import traitlets
from bqplot import Axis, Figure, LinearScale, Lines, Scatter
from ipycanvas import Canvas, hold_canvas

from zfwidgets.core import render
from zfwidgets.core.preprocess import Preprocessing
from zfwidgets.train.evolution import Evolution
from zfwidgets.train.snapshots import Run, SnapshotError, load_run
from zfwidgets.widgets.base import WidgetBase, errors_to, refusing
from zfwidgets.widgets.canvas_views import redraw_for_new_views
from zfwidgets.widgets.parts import (
    COLOURS,
    FONT,
    PICTURE_SIDE,
    GridGeometry,
    blank_png,
    caption,
    full_width,
    place_patch,
    png_image,
    rgba,
    size_canvas,
    widget_preprocessing,
)
from zfwidgets.widgets.top_nine import (
    TOP_K,
    patch_side,
    tile_pixels,
    top_nine_pictures,
    unit_picture,
)

__all__ = ["EvolutionScrubber", "Frame"]

CHANGED_RGB = (255, 167, 38)  # orange frame: the map's strongest image changed
SELECTED_RGB = (41, 182, 246)  # cyan frame: the map whose top 9 is shown
CURVE_COLOURS = {"loss": "#ef6c00", "train_acc": "#66bb6a", "val_acc": "#1e88e5"}
# About how much room the grid of maps takes, in pixels: tall and narrow, so that the grid, the
# curves and the top 9 stand side by side in a 850 px output (JupyterLab at 1280x720 with its
# file browser open) and fit one screen height (issue 32, item 3).
GRID_WIDTH, GRID_HEIGHT = 240, 480
CURVES_WIDTH, CURVES_HEIGHT = 440, 210  # the narrowest the curves get, and their height
# Room around the plot for the tick numbers and axis labels (parts.fit_ticks: 1.4x in
# projector mode).
CURVE_MARGINS = {"top": 10, "bottom": 40, "left": 55, "right": 55}
TOPS_KEPT = 64  # top-9 pictures kept (most recent first): a long session stays bounded


@dataclass(frozen=True)
class Frame:
    """One layer at one epoch, drawn: what the grid shows.

    Attributes:
        epoch, layer: which snapshot and layer.
        maps: the feature maps shown, in grid order.
        changed: per shown map, whether its strongest image differs from the previous
            snapshot's (all False at the first snapshot).
        sources: per shown map, the probe image index of its strongest activation.
        values: per shown map, that activation.
        geometry: where each map's tile lies.
        picture: the grid as RGBA (changed maps framed in orange).
    """

    epoch: int
    layer: str
    maps: tuple[int, ...]
    changed: tuple[bool, ...]
    sources: tuple[int, ...]
    values: tuple[float, ...]
    geometry: GridGeometry
    picture: np.ndarray


def _number(value) -> float:
    """A history value as a float; a run trained without validation data records None."""
    return np.nan if value is None else float(value)


def round_ticks(top: float, count: int = 5) -> list[float]:
    """Tick values 0, step, 2 step, ... up to ``top``, with a round step (1, 2, 2.5 or 5 x 10^n)
    giving at most about ``count`` intervals. (bqplot's ``num_ticks`` spaces ticks evenly
    between the padded ends of the scale, which gives labels such as -0.078 and 0.78.)"""
    if not top > 0:
        return [0.0]
    power = 10.0 ** math.floor(math.log10(top / count))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= top / count)
    return [round(i * step, 10) for i in range(int(top / step + 1e-9) + 1)]


def epoch_ticks(epochs, spacing: float = 1 / 12) -> list[float]:
    """The snapshot epochs as x ticks, leaving out those closer than ``spacing`` of the run to
    the previous tick (1 and 2 of a 30-epoch run would overlap); the last epoch always stays.

    Example:
        >>> epoch_ticks([1, 2, 5, 10, 20, 30])
        [1.0, 5.0, 10.0, 20.0, 30.0]
    """
    epochs = sorted(float(e) for e in epochs)
    if len(epochs) < 2:
        return epochs
    gap = (epochs[-1] - epochs[0]) * spacing
    kept = [epochs[0]]
    for e in epochs[1:]:
        if e - kept[-1] >= gap:
            kept.append(e)
    if kept[-1] != epochs[-1]:
        kept[-1] = epochs[-1]
    return kept


def frame_ring(picture: np.ndarray, geometry: GridGeometry, index: int, colour) -> None:
    """Paints the gap around tile ``index`` in ``colour`` (in place; the tile is untouched)."""
    x, y = geometry.origin(index)
    h, w = geometry.tile
    p = geometry.pad
    top, left = max(y - p, 0), max(x - p, 0)
    bottom, right = min(y + h + p, picture.shape[0]), min(x + w + p, picture.shape[1])
    colour = np.asarray([*colour, 255][: picture.shape[2]], np.uint8)
    picture[top:y, left:right] = colour
    picture[y + h : bottom, left:right] = colour
    picture[top:bottom, left:x] = colour
    picture[top:bottom, x + w : right] = colour


class EvolutionScrubber(WidgetBase):
    """Scrub through a training run's snapshots and watch the features form (Fig. 4).

    Args:
        snapshots_or_run_dir: a run directory written by
            :class:`~zfwidgets.train.SnapshotRecorder`, a :class:`~zfwidgets.train.Run` (for
            the bundled demo, ``zfwidgets.demo.snapshots()``) or an
            :class:`~zfwidgets.train.Evolution` (shares its cache).
        probe: the images searched for each map's strongest activation, as the model sees
            them; default the training set the run's manifest names.
        layers: layers followed (aliases such as ``"conv2"``); default every conv layer.
        maps: the feature maps shown: ``None`` for all, a list of indices for every layer, or a
            dict from layer to list.
        mean: the older shorthand for ``preprocessing``: the mean image added back to show
            the probe images; default the run's training mean.
        device: where the snapshots run (``"auto"``, ``"cpu"``, ``"cuda"``).
        follow: watch the run directory for new snapshots (a run still training).
        poll_seconds: how often ``follow`` looks.
        preprocessing: the model's preprocessing (a
            :class:`~zfwidgets.core.preprocess.Preprocessing`, or torchvision's
            ``weights.transforms()``): the top-9 patches are drawn in their true colours.
        **state: initial values of ``epoch``, ``layer`` and ``selected``.

    Traits (set them from code; the controls follow):
        epoch: a snapshot epoch. layer: a followed layer. selected: the map whose top 9 is
        shown, or -1 for none. follow: watch for new snapshots. status (read-only): the
        status line's message. A value that cannot be used leaves the trait as it was and says
        why.
    """

    css_class = "zfw-evolution-scrubber"
    status_hint = "Drag the epoch slider or press Play; click a map for its top 9 at this epoch."

    epoch = traitlets.Int(0)
    layer = traitlets.Unicode("")
    selected = traitlets.Int(-1)
    follow = traitlets.Bool(False)

    def __init__(
        self,
        snapshots_or_run_dir: Run | Evolution | str | os.PathLike,
        probe: Any = None,
        layers: Sequence[str] | None = None,
        maps: Sequence[int] | dict[str, Sequence[int]] | None = None,
        mean: torch.Tensor | None = None,
        device: str | torch.device = "auto",
        follow: bool = False,
        poll_seconds: float = 2.0,
        preprocessing: Any = None,
        **state: Any,
    ) -> None:
        super().__init__()
        self._check_state(state, ("epoch", "layer", "selected"))
        self.evolution = self._evolution(snapshots_or_run_dir, probe, layers, device)
        self.run = self.evolution.run
        if preprocessing is None and mean is None:
            mean = self.run.mean
        self.preprocessing: Preprocessing | None = widget_preprocessing(
            "EvolutionScrubber", preprocessing, mean
        )
        self.mean = mean
        self.poll_seconds = float(poll_seconds)
        self._maps = {layer: self._check_maps(layer, maps) for layer in self.evolution.layers}
        self._frames: dict[tuple[str, int], Frame] = {}
        self._failed: dict[tuple[str, int], str] = {}  # epochs whose snapshot cannot be read
        self._tops: OrderedDict[tuple[str, int, int], Any] = OrderedDict()
        self._shown: Frame | None = None
        self._watcher: threading.Thread | None = None  # polls the run while ``follow`` is on
        self._build()
        self._start(state, follow)

    @staticmethod
    def _evolution(source, probe, layers, device) -> Evolution:
        if isinstance(source, Evolution):
            if probe is not None or layers is not None:
                raise ValueError("pass probe= and layers= to the Evolution, not to the widget")
            return source
        if not isinstance(source, Run | str | os.PathLike):
            raise TypeError(
                "EvolutionScrubber takes a run directory, a Run or an Evolution; "
                f"got {type(source).__name__}"
            )
        run = source if isinstance(source, Run) else load_run(source)
        return Evolution(run, probe=probe, layers=layers, k=TOP_K, device=device)

    def _check_maps(self, layer: str, maps) -> tuple[int, ...]:
        count = self._map_count(layer)
        chosen = maps.get(layer) if isinstance(maps, dict) else maps
        if chosen is None:
            return tuple(range(count))
        chosen = tuple(int(c) for c in chosen)
        bad = [c for c in chosen if not 0 <= c < count]
        if bad or not chosen:
            raise ValueError(
                f"maps {list(chosen)} for {layer}: each must be in 0..{count - 1} "
                "(and at least one)"
            )
        return chosen

    def _map_count(self, layer: str) -> int:
        insp = self.evolution.inspector(self.run.epochs[0])
        shape = tuple(self.evolution.image(0).shape)
        return int(insp.shapes(shape)[insp.layer_index(layer)][1])

    # ----- public --------------------------------------------------------------------------
    @property
    def epochs(self) -> list[int]:
        """The snapshot epochs on the slider (grows while ``follow`` sees new snapshots).

        A new epoch appears here once its drawing has been started, so ``wait()`` after
        seeing it returns with the epoch drawn.
        """
        return list(self._epochs)

    @property
    def frame(self) -> Frame | None:
        """What the grid shows now, or None while the epoch is being computed."""
        return self._shown

    def frame_for(self, epoch: int, layer: str) -> Frame | None:
        """The drawn frame of ``layer`` at ``epoch`` if it is ready, else None."""
        return self._frames.get((layer, int(epoch)))

    @property
    def ready_epochs(self) -> list[int]:
        """Epochs of the current layer that are drawn (scrubbing over them is instant)."""
        return [e for e in self.run.epochs if (self.layer, e) in self._frames]

    def check_for_snapshots(self) -> bool:
        """Re-reads the run's manifest; True (and the new epochs appear) when it grew."""
        with self._lock:
            if not self.run.refresh():
                return False
            self._epochs_changed()
            return True

    # ----- building ------------------------------------------------------------------------
    def _build(self) -> None:
        epochs = self.run.epochs
        self._epochs = list(epochs)
        self._layer_menu = widgets.Dropdown(
            options=list(self.evolution.layers),
            description="layer",
            tooltip="Layer whose feature maps are shown",
            layout=widgets.Layout(width="220px"),
        )
        self._epoch_slider = widgets.SelectionSlider(
            options=[(str(e), e) for e in epochs],
            description="epoch",
            tooltip="Training epoch of the snapshot shown (←/→ when focused)",
            layout=widgets.Layout(width="420px", min_width="260px", flex="1 1 auto"),
        )
        self._play = widgets.Play(
            min=0,
            max=len(epochs) - 1,
            interval=800,
            repeat=False,
            tooltip="Play through the snapshots",
            layout=widgets.Layout(width="auto"),
        )
        widgets.jslink((self._play, "value"), (self._epoch_slider, "index"))
        self._follow_toggle = widgets.ToggleButton(
            description="follow run",
            icon="refresh",
            tooltip="Watch the run directory and add snapshots as training writes them",
        )
        self._canvas = Canvas(width=PICTURE_SIDE, height=PICTURE_SIDE)
        self._canvas.add_class("zfw-evolution-grid")
        self._canvas.on_mouse_down(self._on_canvas_click)
        redraw_for_new_views(self._canvas, self._redraw_canvas)
        self._grid_caption = caption(
            tooltip="Each tile: one map's strongest activation projected to pixels; orange "
            "frame: its strongest image changed since the previous snapshot",
            width=f"{GRID_WIDTH}px",
        )
        self._top_projections = png_image("Top-9 projections", "zfw-evolution-top-projections")
        self._top_patches = png_image("Top-9 image patches", "zfw-evolution-top-patches")
        self._top_patches.layout.margin = "0 0 0 12px"
        self._top_caption = caption(width="440px")
        self._build_curves()

    def _build_curves(self) -> None:
        x = LinearScale(min=0.0, max=1.0)
        loss_scale = LinearScale(min=0.0, max=1.0)
        acc_scale = LinearScale(min=0.0, max=1.0)
        text = {"fill": COLOURS["body"], "font-family": FONT}

        def line(key: str, scale, label: str) -> Lines:
            return Lines(
                x=[0.0],
                y=[0.0],
                scales={"x": x, "y": scale},
                colors=[CURVE_COLOURS[key]],
                labels=[label],
                display_legend=False,  # the legend is a line of text under the plot
            )

        self._curves = {
            "loss": line("loss", loss_scale, "train loss"),
            "train_acc": line("train_acc", acc_scale, "train acc"),
            "val_acc": line("val_acc", acc_scale, "val acc"),
        }
        self._snapshot_dots = Scatter(
            x=[0.0], y=[0.0], scales={"x": x, "y": acc_scale}, colors=["#888"], default_size=30
        )
        self._marker = Lines(
            x=[0.0, 0.0],
            y=[0.0, 1.0],
            scales={"x": x, "y": acc_scale},
            colors=[COLOURS["error"]],
            stroke_width=2,
            line_style="dashed",
        )
        # Explicit tick values (set again in _draw_curves): the snapshot epochs, round losses.
        axes = [
            Axis(scale=x, label="epoch", tick_style=text, label_color="#888",
                 tick_values=epoch_ticks(self.run.epochs), tick_format="d"),
            Axis(scale=loss_scale, side="left", label="loss",
                 tick_style=text, label_color="#888", tick_values=round_ticks(1.0)),
            Axis(scale=acc_scale, side="right", label="accuracy", label_offset="40px",
                 tick_style=text, label_color="#888", tick_values=[0.0, 0.25, 0.5, 0.75, 1.0]),
        ]  # fmt: skip
        self._scales = {"x": x, "loss": loss_scale}
        self._axes = {"x": axes[0], "loss": axes[1], "acc": axes[2]}
        self._figure = Figure(
            marks=[*self._curves.values(), self._snapshot_dots, self._marker],
            axes=axes,
            fig_margin=CURVE_MARGINS,
            background_style={"fill": "transparent"},
            layout=widgets.Layout(width=f"{CURVES_WIDTH}px", height=f"{CURVES_HEIGHT}px"),
        )
        self._figure.add_class("zfw-evolution-curves")
        # The legend under the plot, where it covers neither the curves nor the epoch marker.
        swatch = (
            '<span style="color: {colour}; font-weight: bold">━━</span> {label}'
            '<span style="margin-right: 14px"></span>'
        )
        entries = [("loss", "train loss (left axis)"), ("train_acc", "train accuracy"),
                   ("val_acc", "held-out accuracy (right axis)")]  # fmt: skip
        legend = "".join(swatch.format(colour=CURVE_COLOURS[k], label=t) for k, t in entries)
        legend += (
            '<span style="color: #888">● snapshot</span><span style="margin-right: 14px">'
            f'</span><span style="color: {COLOURS["error"]}">┆ epoch shown</span>'
        )
        self._legend = widgets.HTML(
            f'<div style="color: {COLOURS["body"]}; font-family: {FONT}; '
            f'font-size: var(--jp-ui-font-size1, 13px); line-height: 1.5">{legend}</div>',
            layout=widgets.Layout(width=f"{CURVES_WIDTH - 8}px", margin="0 0 0 8px"),
        )
        self._legend.add_class("zfw-evolution-legend")

    def _arrange(self) -> None:
        wrap = {"flex_flow": "row wrap", "align_items": "center"}
        controls = widgets.HBox(
            [self._layer_menu, self._play, self._epoch_slider, self._follow_toggle],
            layout=full_width(**wrap),
        )
        # Reserved room (issue 32, item 9): the right column is as wide as the widest top-9
        # pair of any layer and the pair's box as tall as the tallest, before any map is
        # clicked, so showing a top 9 never widens the column nor wraps it under the grid.
        width, height = self._top_pair_room()
        column = max(width, CURVES_WIDTH)
        self._top_pair = widgets.HBox(
            [self._top_projections, self._top_patches],
            layout=widgets.Layout(min_height=f"{height}px", visibility="hidden"),
        )
        top = widgets.VBox(
            [self._top_caption, self._top_pair], layout=widgets.Layout(margin="6px 0 0 0")
        )
        self._top_caption.layout.width = f"{column}px"
        self._top_panel = top
        left = widgets.VBox(
            [self._grid_caption, self._canvas],
            layout=widgets.Layout(margin="0 12px 8px 0", flex="0 0 auto"),
        )
        # The curves with the top 9 under them, as one column: on a wide notebook it stands
        # beside the grid, on a narrower one it moves under the grid as one block (designed
        # wrapping), at every layer alike and whether or not a map is selected.
        self._figure.layout.width = f"{column}px"
        self._legend.layout.width = f"{column - 8}px"
        right = widgets.VBox(
            [self._figure, self._legend, top],
            layout=widgets.Layout(flex="0 0 auto", width=f"{column}px"),
        )
        main = widgets.HBox(
            [left, right],
            layout=full_width(flex_flow="row wrap", align_items="flex-start"),
        )
        self.children = [controls, main, widgets.HBox([self._progress]), self.status_line]

    def _top_pair_room(self) -> tuple[int, int]:
        """Screen pixels (width, height) the top-9 pair needs at its widest and tallest layer:
        two 3x3 grids of tiles (render.grid's 2 px pad) and the 12 px between them."""
        inspector = self.evolution.inspector(self.run.epochs[0])
        shape = tuple(self.evolution.image(0).shape)
        width = height = 0
        for layer in self.evolution.layers:
            tile_h, tile_w = tile_pixels(patch_side(inspector, layer, shape))
            width = max(width, 2 * (3 * tile_w + 4 * 2) + 12)
            height = max(height, 3 * tile_h + 4 * 2)
        return width, height

    def _tick_figures(self) -> list[Figure]:
        figure = getattr(self, "_figure", None)
        return [] if figure is None else [figure]

    def _start(self, state: dict[str, Any], follow: bool) -> None:
        self._arrange()
        with self._quietly():
            self.layer = state.get("layer", self.evolution.layers[0])
            self.epoch = state.get("epoch", self.run.epochs[0])
            self.selected = state.get("selected", -1)
        self._finish_building()
        for trait, control in (
            ("layer", self._layer_menu),
            ("epoch", self._epoch_slider),
            ("follow", self._follow_toggle),
        ):
            self._bind(trait, control)
        self._draw_curves()
        self._show()
        self._prepare()
        self.follow = bool(follow)

    # ----- validation (WidgetBase's rule: raise while building, then keep and say why) ------
    @refusing("epoch")
    def _check_epoch(self, epoch: int) -> int:
        if epoch not in self.run.epochs:
            raise ValueError(f"epoch {epoch!r} has no snapshot; epochs: {self.run.epochs}")
        return epoch

    @refusing("layer")
    def _check_layer(self, layer: str) -> str:
        if layer not in self.evolution.layers:
            followed = ", ".join(self.evolution.layers)
            raise ValueError(f"layer {layer!r} is not followed; layers: {followed}")
        return layer

    @refusing("selected")
    def _check_selected(self, selected: int) -> int:
        count = self._map_count(self.layer)
        if selected != -1 and not 0 <= selected < count:
            raise ValueError(
                f"map {selected} is out of range for {self.layer}: 0..{count - 1} (or -1 for none)"
            )
        return selected

    # ----- reacting to changes -------------------------------------------------------------

    @traitlets.observe("epoch")
    def _epoch_changed(self, change: dict) -> None:
        if not self._live:
            return
        self._marker.x = [self.epoch, self.epoch]
        self._show()

    @traitlets.observe("layer")
    def _layer_changed(self, change: dict) -> None:
        if not self._live:
            return
        with self._quietly():
            if self.selected >= self._map_count(self.layer):
                self.selected = -1
        self._show()
        self._prepare()

    @traitlets.observe("selected")
    def _selected_changed(self, change: dict) -> None:
        if not self._live:
            return
        self._show()

    @traitlets.observe("follow")
    def _follow_changed(self, change: dict) -> None:
        if change["new"] and (self._watcher is None or not self._watcher.is_alive()):
            self._watcher = threading.Thread(target=self._watch, daemon=True)
            self._watcher.start()

    def _on_canvas_click(self, x: float, y: float) -> None:
        frame = self._shown
        index = None if frame is None else frame.geometry.cell_at(x, y)
        if index is not None:
            self.selected = frame.maps[index]

    def _watch(self) -> None:
        """Polls the run while ``follow`` is on (a daemon thread; stops with the widget)."""
        while self.follow and not self._closed.wait(self.poll_seconds):
            if not self.follow:
                break
            with errors_to(self.status_line, "following the run"):
                self.check_for_snapshots()

    def _epochs_changed(self) -> None:
        """New snapshots: the slider, Play and curves grow; the new epochs get drawn."""
        epochs, current = self.run.epochs, self.epoch
        with self._quietly(), self._epoch_slider.hold_sync(), self._play.hold_sync():
            # New options move the slider to the first epoch (and the link, the trait): back.
            self._epoch_slider.options = [(str(e), e) for e in epochs]
            self._epoch_slider.value = current
            self._play.max = len(epochs) - 1
        self._draw_curves()
        self.status_line.info(f"new snapshot: epochs {epochs}")
        self._prepare()
        self._epochs = list(epochs)

    # ----- drawing -------------------------------------------------------------------------
    def _show(self) -> None:
        """Puts the current epoch's frame (or a placeholder) and the top 9 on screen."""
        with self._lock:
            frame = self._frames.get((self.layer, self.epoch))
            self._shown = frame
            failure = self._failed.get((self.layer, self.epoch))
            if failure is not None:
                self.status_line.error(f"epoch {self.epoch} cannot be shown: {failure}")
            elif self.status_line.level == "error":
                self.status_line.clear()  # a good value after a refused one: the news is old
            with errors_to(self.status_line, "drawing the grid"):
                self._draw_grid(frame)
            with errors_to(self.status_line, "top 9"):
                self._draw_top(frame)

    def _draw_grid(self, frame: Frame | None) -> None:
        if frame is None:
            self._grid_rgba = rgba(
                np.full((PICTURE_SIDE, PICTURE_SIDE), render.BACKGROUND, np.uint8)
            )
            if (self.layer, self.epoch) in self._failed:
                self._grid_caption.say(f"{self.layer} at epoch {self.epoch}: unreadable", "error")
            else:
                self._grid_caption.say(
                    f"{self.layer} at epoch {self.epoch}: being computed…", "busy"
                )
        else:
            picture = frame.picture
            if self.selected in frame.maps:
                picture = picture.copy()
                frame_ring(picture, frame.geometry, frame.maps.index(self.selected), SELECTED_RGB)
            self._grid_rgba = picture
            jumps = sum(frame.changed)
            first = self.epoch == self.run.epochs[0]
            news = "first snapshot" if first else f"{jumps} of {len(frame.maps)} maps changed image"
            self._grid_caption.say(
                f"{self.layer} at epoch {self.epoch}: each map's strongest activation over "
                f"{len(self.evolution.probe):,} probe images, projected ({news}, framed orange).",
                "body",
            )
        self._redraw_canvas()

    def _redraw_canvas(self, *_: Any) -> None:
        picture = getattr(self, "_grid_rgba", None)
        if picture is None:
            return
        height, width = picture.shape[:2]
        with hold_canvas():
            size_canvas(self._canvas, height, width)
            self._canvas.put_image_data(picture, 0, 0)

    def _draw_top(self, frame: Frame | None) -> None:
        # Hidden, not removed: its room stays reserved (the layout never moves on a click).
        self._top_pair.layout.visibility = "hidden" if self.selected < 0 else "visible"
        if self.selected < 0:
            self._top_caption.help = ""
            self._top_caption.say(f"Click a map in the grid to see its top {TOP_K} here.", "muted")
            return
        if frame is None:
            self._top_projections.value = self._top_patches.value = blank_png(84)
            self._top_caption.say(f"map {self.selected}: waiting for epoch {self.epoch}…", "busy")
            return
        key = (self.layer, self.epoch, self.selected)
        pictures = self._tops.get(key)
        if pictures is None:
            entries = self.evolution.entries(self.epoch, self.layer, self.selected)
            image_shape = tuple(entries[0].image.shape)
            side = patch_side(self.evolution.inspector(self.epoch), self.layer, image_shape)
            method = self.evolution.inspector(self.epoch).projection_method
            pictures = top_nine_pictures(entries, method, self.preprocessing, side)
            self._tops[key] = pictures
            while len(self._tops) > TOPS_KEPT:
                self._tops.popitem(last=False)
        self._tops.move_to_end(key)
        self._top_projections.value = pictures.projections
        self._top_patches.value = pictures.patches
        self._top_caption.help = (
            f"Probe image index (activation), strongest first: {pictures.listing}"
        )
        self._top_caption.say(
            f"Map {self.selected} of {self.layer} at epoch {self.epoch}: its {TOP_K} strongest "
            "probe images, deconvnet projections (left) beside their patches (right)."
            + (f" ({pictures.note}.)" if pictures.note else ""),
            "muted",
        )

    def _draw_curves(self) -> None:
        rows = self.run.history
        if not rows:
            return
        epochs = [float(r["epoch"]) for r in rows]
        with self._figure.hold_sync():
            top = max(float(r.get("loss", 0.0)) for r in rows) or 1.0
            self._scales["loss"].min, self._scales["loss"].max = 0.0, top * 1.05
            self._axes["loss"].tick_values = round_ticks(top * 1.05)
            self._axes["x"].tick_values = epoch_ticks(self.run.epochs)
            self._scales["x"].min = min(epochs) - 0.5
            self._scales["x"].max = max(epochs) + 0.5
            for key, mark in self._curves.items():
                ys = [_number(r.get(key)) for r in rows]
                mark.x, mark.y = epochs, ys
            by_epoch = {r["epoch"]: r for r in rows}
            snaps = [e for e in self.run.epochs if e in by_epoch]
            self._snapshot_dots.x = [float(e) for e in snaps]
            self._snapshot_dots.y = [_number(by_epoch[e].get("val_acc")) for e in snaps]
            self._marker.x = [float(self.epoch)] * 2

    # ----- background preparation ---------------------------------------------------------
    def _prepare(self) -> None:
        """Mines and draws every epoch of the current layer not drawn yet, oldest first."""
        layer = self.layer
        todo = [
            e
            for e in self.run.epochs
            if (layer, e) not in self._frames and (layer, e) not in self._failed
        ]
        if not todo:
            self._tasks.cancel()
            self._say_ready(layer)
            return
        probe_size = len(self.evolution.probe)

        def work(should_stop, report) -> int:
            for i, epoch in enumerate(todo):
                if should_stop():
                    return i

                def mined(done: int, total: int, i: int = i) -> None:
                    report(i * total + done, len(todo) * total)

                try:
                    self.evolution.mine(epoch, callback=mined, should_stop=should_stop)
                    frame = self._render(layer, epoch)
                except SnapshotError as err:  # one unreadable snapshot: the others still play
                    frame, failure = None, str(err)
                with self._lock:
                    if frame is None:
                        self._failed[(layer, epoch)] = failure
                    else:
                        self._frames[(layer, epoch)] = frame
                    if (self.layer, self.epoch) == (layer, epoch):
                        self._show()
                report((i + 1) * probe_size, len(todo) * probe_size)
            return len(todo)

        def done(count: int) -> None:
            self._say_ready(layer)

        key = f"{layer}@{','.join(map(str, todo))}"
        self._in_background(key, work, done, label=f"preparing {layer}")

    def _say_ready(self, layer: str) -> None:
        ready = [e for e in self.run.epochs if (layer, e) in self._frames]
        failed = [e for e in self.run.epochs if (layer, e) in self._failed]
        if failed and self.epoch in failed:
            return  # the status line says why this epoch cannot be shown; keep it
        if failed:
            self.status_line.info(f"{layer}: {len(ready)} epochs ready; {failed} cannot be read")
        else:
            self.status_line.info(f"{layer}: {len(ready)} epochs ready; scrub or press Play")

    def _render(self, layer: str, epoch: int) -> Frame:
        """Draws ``layer`` at ``epoch``: one tile per shown map, changed maps framed."""
        evo = self.evolution
        maps = self._maps[layer]
        top = evo.top(epoch, layer)
        changed = evo.changed(epoch, layer)
        image_shape = tuple(evo.image(0).shape)
        side = patch_side(evo.inspector(epoch), layer, image_shape)
        geometry, zoom = GridGeometry.for_tiles(
            len(maps), side, width=GRID_WIDTH, height=GRID_HEIGHT, biggest=72
        )
        tiles = []
        for c in maps:
            picture = unit_picture(
                evo.projection(epoch, layer, c), evo.inspector(epoch).projection_method
            )
            tile = place_patch(picture, evo.box(epoch, layer, c), side)
            tiles.append(render.upscale(tile[: side[0], : side[1]], zoom))
        picture = rgba(
            render.grid(tiles, cols=geometry.cols, pad=geometry.pad, background=render.BACKGROUND)
        )
        flags = tuple(bool(changed[c]) for c in maps)
        for index, flag in enumerate(flags):
            if flag:
                frame_ring(picture, geometry, index, CHANGED_RGB)
        return Frame(
            epoch=epoch,
            layer=layer,
            maps=maps,
            changed=flags,
            sources=tuple(int(top.images[c, 0]) for c in maps),
            values=tuple(float(top.values[c, 0]) for c in maps),
            geometry=geometry,
            picture=picture,
        )
