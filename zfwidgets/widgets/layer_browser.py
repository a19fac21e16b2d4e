"""LayerBrowser: one image's feature maps, one map's projection, and its top 9 in a data set.

The paper's Figs. 1-2 as a live widget. Pick a layer (the model's blocks: ``conv1``.. on a
chain, ``layer1``.. ``layer4`` and their blocks on a ResNet) and a feature map (click the grid or
use the slider); see the input, the map's activations, and the map projected to pixels with the
deconvnet, guided backprop or saliency (or the predicted class's Grad-CAM or guided Grad-CAM
map); with a data set, see the 9 images that excite the map most, projected beside their
patches (Fig. 2). Methods the model cannot have (the deconvnet on a model with SiLU) are not
offered, and the toggle says why.

Example:
    >>> from zfwidgets import LayerBrowser, demo
    >>> d = demo.load()
    >>> browser = LayerBrowser(d.model, dataset=d.dataset, mean=d.mean, classes=d.classes)
    >>> browser.layer, browser.channel = "conv2", 5     # what the controls do
    >>> browser.show_top = True                          # mines conv2's top 9 in a thread
    >>> browser.wait()                                   # blocks until it is on screen
    True
    >>> browser                                          # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets
import numpy as np
import traitlets
from ipycanvas import Canvas, hold_canvas
from torch import Tensor, nn
from torch.utils.data import DataLoader

from zfwidgets.core import Inspector, render
from zfwidgets.core.cache import parameter_version
from zfwidgets.core.data_labels import data_class_names, data_label
from zfwidgets.core.images import (
    background_level,
    input_pixels,
    inverted_input,
    opposite_background,
)
from zfwidgets.core.memory import release_unused_memory
from zfwidgets.core.methods import REGISTRY
from zfwidgets.core.mining import LayerTopK, TopK, data_fingerprint, mine, model_fingerprint
from zfwidgets.core.mining_estimate import MiningEstimate, estimate_mining_seconds
from zfwidgets.core.preprocess import Preprocessing
from zfwidgets.core.top_views import TopEntry, top_projections
from zfwidgets.widgets.base import WidgetBase, class_names, errors_to, inspector_for, refusing
from zfwidgets.widgets.canvas_views import redraw_for_new_views
from zfwidgets.widgets.menus import LayerMenu, display_name, method_choices
from zfwidgets.widgets.parts import (
    PICTURE_SIDE,
    GridGeometry,
    ImageSource,
    bar_font_size,
    blank_png,
    caption,
    full_width,
    image_from_bytes,
    picture_scale,
    png_image,
    rgba,
    show_at,
    size_canvas,
    uploaded_files,
    widget_preprocessing,
)
from zfwidgets.widgets.top_nine import (
    MAX_TILE,
    TOP_K,
    TOP_TILE,
    patch_side,
    switch_note,
    tile_labels_html,
    tile_pixels,
    top_nine_pictures,
    unit_picture,
    unit_view,
)

if TYPE_CHECKING:  # the synthesis package is imported when feature visualisation is drawn
    from zfwidgets.core import synthesis as synth

__all__ = ["LayerBrowser", "METHODS", "POSITIONS", "unit_picture"]

# name -> (label, help) of every method, for code that lists them; a browser offers only the
# ones its model supports (see ``LayerBrowser.methods``).
METHODS = {name: (m.label, m.help) for name, m in REGISTRY.items()}
POSITIONS = {
    "max": ("strongest", "Project only the map's strongest activation"),
    "map": ("whole map", "Project the whole feature map (every activation of the channel)"),
}
STATE = (
    "layer",
    "channel",
    "method",
    "position",
    "image_index",
    "show_top",
    "feature_vis",
    "synthesis_steps",
)  # **state
SYNTHESIS_STEPS = 128  # the map's feature visualisation: Fourier + robust, this many steps
MAX_SYNTHESIS_STEPS = 10_000
HIGHLIGHT = "#29b6f6"  # selection frame on the feature-map grid: a cyan absent from the heat map
HIGHLIGHT_RGB = (41, 182, 246)
# Tiles this small (ResNet's 256 maps of 16 px) get an enlarged inset of the selected map and
# its neighbours under the grid (issue 32, item 4): INSET_REACH tiles each way, magnified by a
# whole number to about the grid's width.
INSET_BELOW = 20
INSET_REACH = 1
# The feature-map grid's room: tall and narrow, so that the grid, the three pictures and the
# top 9 stand side by side in a 850 px output (JupyterLab at 1280x720 with its file browser
# open) and fit one screen height (issue 32, item 3).
GRID_WIDTH, GRID_HEIGHT = 240, 480
# The notebook output width the browser arranges itself for unless told (``fit_width=``):
# JupyterLab at 1280x720 with its file browser open gives about 848 px; a few spare. Beside the
# grid's 252 px this leaves each of the three pictures 178 px (28 px digits at 6x: 168 fit; a
# 224 px photo is shown at 1/2) and each top-9 tile 92 px (issue 32, item 3).
FIT_WIDTH = 840
FIT_WIDTHS = (480, 8000)  # what fit_width may be, in CSS px
PICTURE_COLUMN_EXTRA = 12 + 6  # a picture's column: caption padding and margin beside it
TOP_PAIR_EXTRA = 4 * 2 * 2 + 12 + 8  # two 3x3 grids: render.grid's 2 px pads, gap, margin
# Height of a colour bar with its values (render.colour_bar: 12 + 2 + font + 6), and margins.
BAR_SLOT_EXTRA = 22
GAP_COLOUR = f"rgb({render.BACKGROUND}, {render.BACKGROUND}, {render.BACKGROUND})"


class LayerBrowser(WidgetBase):
    """Browse a convnet's feature maps and what drives them, for one image at a time.

    Args:
        model_or_inspector: an ``nn.Module`` (wrapped in an :class:`~zfwidgets.Inspector`) or
            an ``Inspector`` (its cache is shared).
        images: what the image picker shows: a tensor (N, C, H, W) or (C, H, W), a list of
            images, or a Dataset of images or ``(image, label)``. Defaults to ``dataset``.
        dataset: the data set mined for each map's top 9 (tensor, Dataset or DataLoader).
        mean: the older shorthand for ``preprocessing``: the mean image (or one number per
            channel) subtracted from the model's inputs, with std 1.
        classes: the model's class names, indexed by its outputs.
        preprocessing: the model's preprocessing (a
            :class:`~zfwidgets.core.preprocess.Preprocessing`, or torchvision's
            ``weights.transforms()``): uploads are prepared with it exactly as the model was
            trained, inputs and top-9 patches are drawn in their true colours. Without it (and
            without ``mean``) pictures are stretched min..max.
        top: top-9 results already mined on ``dataset`` (a teacher's file): a
            :class:`~zfwidgets.core.mining.TopK` or the path of a file written by
            :meth:`TopK.save <zfwidgets.core.mining.TopK.save>`, checked against the model and
            the data set. Its layers are shown at once and never re-mined; the layer menu marks
            the others "not mined", and the top-9 area offers a button (with an estimate of
            the time) to mine one. Without ``top``, a layer is mined when its top 9 are first
            shown.
        dataset_classes: the data set's class names, indexed by its labels (default its
            ``.classes``, e.g. an ``ImageFolder``'s folders); shown with its label beside each
            top-9 tile, apart from the model's ``classes``.
        fit_width: the notebook output width (CSS px) the browser arranges itself for
            (default ``FIT_WIDTH``, 840: JupyterLab at 1280x720 with the file browser open):
            pictures too wide for a third of the room beside the grid are shown at a
            whole-number reduction (block means, "shown at 1/2" in the caption) and top-9
            tiles shrink to fit, so the grid, the clicked map's pictures and its top 9 stand
            side by side. Pass e.g. ``fit_width=1200`` on a wide screen to see 224 px photos
            at full size. Digits (28 px, shown at 6x) look the same at any width from 840.

    Traits (set them from code; the controls follow):
        layer: a block or alias (``"conv2"``, ``"layer3"``) or any step name; default the
        first block with feature maps. channel: the feature map (or unit).
        method: a name of ``zfwidgets.core.methods.REGISTRY`` the model supports
        (``methods``): ``"deconvnet"``, ``"guided"``, ``"saliency"``, ``"gradcam"``,
        ``"guided_gradcam"``; default ``inspector.projection_method``.
        position: ``"max"`` (the strongest unit) or ``"map"`` (the whole map).
        image_index: the picked image. show_upload: show the uploaded file instead.
        show_top: show the top 9 (mined in the background on first use per layer, or with
        ``top=``, from the file, and mined only when asked).
        feature_vis: beside the top 9, the map's synthetic picture (Distill's and OpenAI
        Microscope's layout): :func:`~zfwidgets.core.synthesis.visualise` of
        ``channel(layer, map)`` on a Fourier image with the standard transforms, at the
        model's input size, made in the background while the top 9 are shown (off by default:
        it costs a few seconds of CPU per map). Cached per weight version, layer, map and
        settings in ``visualisations``: revisiting a map is instant.
        synthesis_steps: the steps of that picture (default 128).
        status (read-only): the status line's message. A value that cannot be used leaves the
        trait as it was and says why in ``status``.

    Example:
        >>> from zfwidgets import demo
        >>> d = demo.load()
        >>> browser = LayerBrowser(d.model, images=d.dataset, mean=d.mean)
        >>> browser.method = "guided"
        >>> browser.channel = 99                  # refused: the map stays, the status says why
        >>> browser.channel, browser.status
        (0, 'map 99 is out of range for conv1: 0..31')
        >>> b = LayerBrowser(d.model, images=d.dataset, preprocessing=d.preprocessing)
        >>> b.preprocessing.describe()            # uploads are prepared with it
        'grey 28x28, (x - the mean image) / 1'
        >>> import torch
        >>> some = torch.stack([d.dataset[i][0] for i in range(20)])
        >>> v = LayerBrowser(d.model, dataset=some, mean=d.mean, layer="conv2", show_top=True,
        ...                  feature_vis=True, synthesis_steps=8)  # its picture beside the top 9
        >>> v.wait(), [key[1:3] for key in v.visualisations]
        (True, [('features.5', 0)])
        >>> v.close()
    """

    css_class = "zfw-layer-browser"
    status_hint = "Click a feature map or use the map slider (←/→); hover over a control for help."

    layer = traitlets.Unicode("")
    channel = traitlets.Int(0)
    method = traitlets.Unicode("deconvnet")
    position = traitlets.Unicode("max")
    image_index = traitlets.Int(0)
    show_upload = traitlets.Bool(False)
    show_top = traitlets.Bool(False)
    feature_vis = traitlets.Bool(False)
    synthesis_steps = traitlets.Int(SYNTHESIS_STEPS)

    def __init__(
        self,
        model_or_inspector: nn.Module | Inspector,
        images: Any = None,
        dataset: Any = None,
        mean: Tensor | None = None,
        classes: Any = None,
        top: TopK | str | os.PathLike | None = None,
        dataset_classes: Sequence[str] | None = None,
        preprocessing: Any = None,
        fit_width: int = FIT_WIDTH,
        **state: Any,
    ) -> None:
        super().__init__()
        self._check_state(state, STATE)
        self.fit_width = _check_fit_width(fit_width)
        self._bars: dict[widgets.Image, tuple[float, float, int, dict]] = {}
        self.inspector = inspector_for(model_or_inspector)
        self.preprocessing: Preprocessing | None = widget_preprocessing(
            "LayerBrowser", preprocessing, mean, self.inspector.in_channels
        )
        if images is None:  # pick from the data set (a DataLoader's, when given one)
            images = dataset.dataset if isinstance(dataset, DataLoader) else dataset
        self.source = ImageSource(images)
        self.dataset = dataset
        self.mean = mean
        self.mining_seconds: dict[str, float] = {}
        self._upload: tuple[str, Tensor] | None = None
        self._upload_note = ""  # what was done to the upload to match the data set, if anything
        self.classes = class_names(classes, self._class_count())
        self._mined: dict[str, TopK] = {}  # what each layer's top 9 are drawn from
        self._top: TopK | None = None  # every layer on hand (the file's and those mined here)
        self._ask_before_mining = top is not None  # a file given: mine only on a click
        self._seconds_per_image: float | None = None  # the rate of the last pass, for estimates
        self._estimates: dict[str, MiningEstimate] = {}
        if top is not None:
            self._use_top(top)
        self.dataset_classes = (
            [str(c) for c in dataset_classes]
            if dataset_classes is not None
            else (None if dataset is None else data_class_names(dataset))
        )
        self._top_entries: list[TopEntry] | None = None
        self.visualisations: dict[tuple, synth.Visualisation] = {}  # see feature_vis
        self._grid: GridGeometry | None = None
        self._grid_rgba: np.ndarray | None = None
        self._framed: int | None = None
        self._build_controls()
        self._build_pictures()
        self.children = self._arrange()
        self._start(state)

    # ----- public --------------------------------------------------------------------------
    @property
    def methods(self) -> list[str]:
        """The methods the toggle offers: those of the registry this model supports."""
        return [name for _, name in self._methods.options]

    @property
    def absent_methods(self) -> dict[str, str]:
        """Methods of the registry this model cannot have, with the reason."""
        return dict(self._methods.absent)

    @property
    def image(self) -> Tensor | None:
        """The image shown now (the uploaded one or ``images[image_index]``), or None."""
        if self.show_upload and self._upload is not None:
            return self._upload[1]
        if len(self.source) == 0:
            return None
        return self.source[self.image_index][0]

    @property
    def top_entries(self) -> list[TopEntry] | None:
        """The top-9 entries on screen (strongest first), or None when not shown yet."""
        return self._top_entries

    @property
    def grid(self) -> GridGeometry | None:
        """Where each feature map lies on the canvas (to click one from code or a test)."""
        return self._grid

    def upload(self, data: bytes, name: str = "upload") -> None:
        """Shows an image file's bytes (what the upload button does); bad files go to status."""
        with errors_to(self.status_line, "upload"):
            x = self._prepare_upload(data, name)
            self.inspector.image(x)  # the core says clearly when it does not fit the model
            x, self._upload_note = self._match_background(x)
            self._upload = (name, x)
            self._upload_toggle.disabled = False
            if self.show_upload:
                self._show_upload_changed({"new": True})
            else:
                self.show_upload = True
            if self._upload_note:
                self.status_line.info(f"{name!r}: {self._upload_note}")

    def _match_background(self, x: Tensor) -> tuple[Tensor, str]:
        """A grey upload whose background is the opposite of the data set's (black ink on
        white paper for white-on-black digits) is inverted, and the note says so."""
        count = min(len(self.source), 32)
        if x.shape[0] != 1 or count == 0:
            return x, ""
        prep = self.preprocessing
        examples = [input_pixels(self.source[i][0], prep) for i in range(count)]
        if not opposite_background(input_pixels(x, prep), examples):
            return x, ""
        data_light = background_level(input_pixels(x, prep)) < 0.5  # the upload's is dark
        return inverted_input(x, prep), (
            "inverted to match the data set: its background is "
            f"{'dark' if data_light else 'light'}, the model's images are "
            f"{'dark on light' if data_light else 'light on dark'}"
        )

    @property
    def top(self) -> TopK | None:
        """The top-k results on hand: the ``top=`` file's layers and those mined here, or None.

        ``browser.top.save(path)`` writes them for others to open with ``top=path``.

        Example:
            >>> import torch
            >>> from zfwidgets import demo
            >>> from zfwidgets.core.mining import mine
            >>> d = demo.load()
            >>> some = torch.utils.data.Subset(d.dataset, range(100))
            >>> mined = mine(Inspector(d.model), some, layers=["conv1"], progress=False)
            >>> lab = LayerBrowser(d.model, dataset=some, mean=d.mean, top=mined, show_top=True)
            >>> len(lab.top_entries), lab.mining_seconds    # shown from the results, not mined
            (9, {})
            >>> list(lab.top.layers)
            ['features.1']
        """
        return self._top

    def load_top(self, top: TopK | str | os.PathLike) -> bool:
        """Shows the results of ``top`` (a TopK or a ``TopK.save`` file) from now on, as
        ``top=`` does; a file that does not fit the model or data set is refused in the status
        line (False), and what was on hand stays."""
        with errors_to(self.status_line, "top 9 file"):
            with self._lock:
                self._use_top(top)
            self._ask_before_mining = True
            self._mark_menu()
            self._refresh({"top"})
            shown = ", ".join(self._display_name(name) for name in self._mined)
            self.status_line.info(f"opened {self._top_source}: {shown} mined")
            return True
        return False

    def refresh(self, forget_top: bool = False) -> None:
        """Redraws everything (after changing the model's weights, pass ``forget_top=True``)."""
        if forget_top:
            self._tasks.cancel()
            self._mined.clear()
            self._top = None
            self._mark_menu()
        self._refresh({"grid", "input", "heat", "projection", "top"})

    # ----- building ------------------------------------------------------------------------
    def _build_controls(self) -> None:
        self._layer_menu = LayerMenu(
            self.inspector,
            description="layer",
            tooltip="Layer whose feature maps are shown (the model's blocks, input to output)",
            layout=widgets.Layout(width="300px"),
        )
        self._channel_slider = widgets.IntSlider(
            description="map",
            tooltip="Feature map (channel) to inspect; focus and use ←/→, or click the grid",
            layout=widgets.Layout(width="420px", min_width="260px", flex="1 1 auto"),
        )
        self._methods = method_choices(self.inspector)
        self._method_toggle = widgets.ToggleButtons(
            options=self._methods.options,
            tooltips=self._methods.tooltips,
            tooltip=self._methods.note or "How the selected map is projected to pixels",
            style={"button_width": "auto"},
        )
        # Shown only when the model lacks one of the paper's unit projections (deconvnet,
        # guided): which methods, and why (hover: the reason). A missing class map alone (CAM
        # on a net without a global-average-pooling head: every digit browser) is said once,
        # in the method help, not on every browser.
        self._method_note = caption(
            "not offered: " + ", ".join(REGISTRY[m].label for m in self._methods.absent)
            if self._shows_absent()
            else "",
            tooltip=self._methods.note,
        )
        self._method_note.add_class("zfw-method-note")
        self._position_toggle = widgets.ToggleButtons(
            options=[(label, key) for key, (label, _) in POSITIONS.items()],
            tooltips=[tip for _, tip in POSITIONS.values()],
            style={"button_width": "auto"},
        )
        count = len(self.source)
        self._index_slider = widgets.IntSlider(
            description="image",
            max=max(count - 1, 0),
            disabled=count == 0,
            continuous_update=False,
            readout=False,  # the number box beside it shows and takes the index
            tooltip="Which image of the set to show (←/→ when focused)",
            layout=widgets.Layout(width="420px", min_width="260px"),
        )
        self._index_box = widgets.BoundedIntText(
            max=max(count - 1, 0),
            disabled=count == 0,
            tooltip="Type an image index and press Enter",
            layout=widgets.Layout(width="90px"),
        )
        self._upload_button = widgets.FileUpload(
            accept="image/*",
            multiple=False,
            description="Upload image",
            tooltip="Show your own picture (PNG, JPEG...): converted to the model's input",
        )
        self._upload_toggle = widgets.ToggleButton(
            description="show upload",
            disabled=True,
            icon="image",
            tooltip="Show the uploaded picture instead of the data set's",
        )
        self._top_toggle = widgets.ToggleButton(
            description=f"Top {TOP_K} in data set",
            layout=widgets.Layout(width="auto"),  # its label in full, also when selected (bold)
            disabled=self.dataset is None,
            icon="th",
            tooltip=(
                "Mine the data set for the images that excite this map most (Fig. 2)"
                if self.dataset is not None
                else "Pass dataset= to LayerBrowser to find each map's top images"
            ),
        )
        self._fviz_toggle = widgets.Checkbox(
            description="feature visualisation",
            indent=False,
            layout=widgets.Layout(width="auto", margin="0 0 0 8px"),
            tooltip="Beside the top 9: an image made to excite this map (Fourier + robust "
            "optimisation, in the background; a few seconds per map on a CPU)",
        )
        self._progress.tooltip = "Mining progress"
        # Why the top-9 button is disabled, on screen (a disabled button shows no tooltip).
        self._top_note = caption(
            "" if self.dataset is not None else "needs a data set: pass dataset= to LayerBrowser",
            margin="0 0 0 8px",
        )

    def _build_pictures(self) -> None:
        self._canvas = Canvas(width=PICTURE_SIDE, height=PICTURE_SIDE)
        self._canvas.add_class("zfw-feature-maps")
        self._canvas.on_mouse_down(self._on_canvas_click)
        redraw_for_new_views(self._canvas, self._redraw_canvas)
        self._canvas_caption = caption(
            tooltip="Each tile is one feature map of this image; click one to select it",
            width=f"{GRID_WIDTH}px",
        )
        self._input_image = png_image("The input image, as the model sees it", "zfw-input")
        self._heat_image = png_image(
            "The selected map's activations for this image (dark = low)", "zfw-heat"
        )
        self._projection_image = png_image(
            "The selected map projected down to pixels (grey = 0)", "zfw-projection"
        )
        side = f"{PICTURE_SIDE + 12}px"
        # Room for three lines, so a longer caption never moves what is below; a long one (a
        # method's note) grows to four and scrolls beyond, so that the top 9 under the pictures
        # stay on a 600 px screen (issue 32, item 3).
        lines = {"min_height": "4.2em", "max_height": "5.6em", "overflow": "hidden auto"}
        self._input_caption = caption(tooltip=self._input_image.help_text, width=side, **lines)
        self._heat_caption = caption(tooltip=self._heat_image.help_text, width=side, **lines)
        self._projection_caption = caption(
            tooltip=self._projection_image.help_text, width=side, **lines
        )
        # Colour bars: which values the colours stand for, and on which scale; under the
        # input picture an empty slot as tall, so the three captions line up.
        self._bar_slot = widgets.Box(
            layout=widgets.Layout(height=f"{bar_font_size() + BAR_SLOT_EXTRA}px")
        )
        self._grid_bar = png_image("The colour scale of the whole grid", "zfw-grid-bar")
        self._heat_bar = png_image("The selected map's colour scale", "zfw-heat-bar")
        self._projection_bar = png_image("The projection's grey scale", "zfw-projection-bar")
        self._top_projections = png_image("Top-9 projections", "zfw-top-projections")
        self._top_patches = png_image("Top-9 image patches", "zfw-top-patches")
        self._top_caption = caption(width="560px")
        self._fviz_image = png_image(
            "An image optimised to excite this map (Fourier + robust)", "zfw-feature-vis"
        )
        self._fviz_caption = caption(tooltip=self._fviz_image.help_text, width=f"{TOP_TILE}px")
        # Each tile's image: index, the data set's label, activation (under the patches).
        self._top_labels = widgets.HTML()
        self._top_labels.add_class("zfw-top-labels")
        # Shown instead of the top 9 of a layer the top= file lacks: mining waits for a click.
        self._mine_button = widgets.Button(
            icon="play",
            layout=widgets.Layout(width="auto", display="none"),
            tooltip="Mine this layer over the data set (in the background; hide the top 9 "
            "or pick another layer to cancel)",
        )
        self._mine_button.add_class("zfw-mine-layer")
        self._mine_button.on_click(lambda _: self._mine_clicked())
        self._inset = png_image(
            "The selected map and its neighbours in the grid, enlarged", "zfw-grid-inset"
        )
        self._inset_caption = caption(tooltip=self._inset.help_text, width=f"{GRID_WIDTH}px")
        self._inset_box = widgets.VBox(
            [self._inset_caption, self._inset],
            layout=widgets.Layout(display="none", margin="6px 0 0 0"),  # small tiles only
        )

    def _arrange(self) -> list[widgets.Widget]:
        wrap = {"flex_flow": "row wrap", "align_items": "center"}
        controls = widgets.HBox([self._layer_menu, self._channel_slider], layout=full_width(**wrap))
        toggles = widgets.HBox(
            [
                caption("method", "body", self._method_help()),
                self._method_toggle,
                caption("unit", "body", "Which activations of the map are projected"),
                self._position_toggle,
            ]
            + ([self._method_note] if self._shows_absent() else []),
            layout=full_width(**wrap),
        )
        for label in toggles.children[::2]:
            label.layout.margin = "0 6px 0 8px"
        pictures = widgets.HBox(
            [
                widgets.VBox([picture, bar, text], layout=widgets.Layout(margin="0 6px 0 0"))
                for picture, bar, text in [
                    (self._input_image, self._bar_slot, self._input_caption),
                    (self._heat_image, self._heat_bar, self._heat_caption),
                    (self._projection_image, self._projection_bar, self._projection_caption),
                ]  # fmt: skip
            ],
            layout=widgets.Layout(flex_flow="row nowrap"),
        )
        self._top_patches.layout.margin = "0 0 0 12px"
        self._fviz_box = widgets.VBox(
            [self._fviz_image, self._fviz_caption],
            layout=widgets.Layout(display="none", margin="0 12px 0 0"),  # until asked for
        )
        self._top_panel = widgets.VBox(
            [
                self._mine_button,
                widgets.HBox(
                    [
                        self._fviz_box,
                        self._top_projections,
                        widgets.VBox([self._top_patches, self._top_labels]),
                    ],
                    layout=widgets.Layout(flex_flow="row wrap"),
                ),
                self._top_caption,
            ],
            layout=widgets.Layout(display="none"),  # until the top 9 are asked for
        )
        top_header = widgets.HBox(
            [self._top_toggle, self._fviz_toggle, self._top_note, self._progress],
            layout=full_width(**wrap),
        )
        # Designed wrapping: the right column is as wide as its widest content at any layer of
        # this model (the three pictures, or conv3's top 9 pair), never narrower, so it moves
        # under the map grid as one block at one notebook width, whatever the layer shown.
        self._right_base = self._right_column_width()  # kept: asking again reads the image
        right_width = f"{self._right_base}px"
        right = widgets.VBox(
            [pictures, top_header, self._top_panel],
            layout=widgets.Layout(min_width=right_width, width=right_width, flex="0 0 auto"),
        )
        # The bottom margin is the gap once the right column wraps under the grid (a Layout
        # has no row_gap trait: ipywidgets warns that it will raise in a future traitlets).
        left = widgets.VBox(
            [self._canvas_caption, self._canvas, self._grid_bar, self._inset_box],
            layout=widgets.Layout(margin="0 12px 8px 0", flex="0 0 auto"),
        )
        main = widgets.HBox(
            [left, right], layout=full_width(flex_flow="row wrap", align_items="flex-start")
        )
        self._upload_button.layout.width = "auto"
        picker = widgets.HBox(
            [self._index_slider, self._index_box, self._upload_button, self._upload_toggle],
            layout=full_width(**wrap),
        )
        self._right_column = right  # widened while a feature visualisation is shown beside
        return [controls, toggles, main, picker, self.status_line]

    def _right_column_width(self) -> int:
        """Pixels the right column needs at every layer: the three pictures side by side, or
        the widest top-9 pair of any layer with feature maps."""
        shape = self._input_shape()
        if shape is None:
            return 3 * (PICTURE_SIDE + PICTURE_COLUMN_EXTRA)
        side = max(shape[-2:])
        zoom, shrink = picture_scale(side, self._picture_room())
        picture = side * zoom if shrink == 1 else -(-side // shrink)  # as drawn
        pictures = 3 * (max(picture, PICTURE_SIDE) + PICTURE_COLUMN_EXTRA)
        widest = 0
        for layer in self.inspector.map_layers(shape):
            tile = tile_pixels(patch_side(self.inspector, layer, shape), largest=self._tile_room())
            widest = max(widest, 3 * tile[1] + 4 * 2)  # render.grid's 2 px pad
        return max(pictures, 2 * widest + 12 + 8)

    def _shows_absent(self) -> bool:
        """Whether the "not offered" note is on screen: only when a unit projection is missing."""
        return any(REGISTRY[m].kind == "unit" for m in self._methods.absent)

    def _picture_room(self) -> int:
        """Screen pixels each of the three main pictures may take beside the grid."""
        return (self.fit_width - GRID_WIDTH - 12) // 3 - PICTURE_COLUMN_EXTRA

    def _tile_room(self) -> int:
        """The most screen pixels a top-9 tile may take: two 3x3 grids fit beside the grid."""
        return max(1, min(MAX_TILE, (self.fit_width - GRID_WIDTH - 12 - TOP_PAIR_EXTRA) // 6))

    def _shown(self, picture: np.ndarray) -> tuple[np.ndarray, str]:
        """``picture`` at a whole-number scale that fits its room, and the caption's note when
        it is reduced (a 224 px photo in 840 px: " · shown at 1/2")."""
        zoom, shrink = picture_scale(max(picture.shape[:2]), self._picture_room())
        note = f" · shown at 1/{shrink}" if shrink > 1 else ""
        return show_at(picture, zoom, shrink), note

    def _draw_bar(self, image: widgets.Image, lo: float, hi: float, width: int, **kw) -> None:
        """A colour bar with its values at the projector mode's size; kept, to redraw when the
        mode switches."""
        self._bars[image] = (lo, hi, width, kw)
        bar = render.colour_bar(lo, hi, width, font_size=bar_font_size(), **kw)
        image.value = render.to_png(bar)

    def _redraw_bars(self) -> None:
        """The colour bars drawn so far, again, their numbers at the mode's size."""
        for image, (lo, hi, width, kw) in list(self._bars.items()):
            self._draw_bar(image, lo, hi, width, **kw)
        self._bar_slot.layout.height = f"{bar_font_size() + BAR_SLOT_EXTRA}px"

    def _redraw_for_projector(self) -> None:
        self._redraw_bars()

    def _method_help(self) -> str:
        text = "How the selected map is projected to pixels"
        return f"{text}. {self._methods.note}" if self._methods.note else text

    def _start(self, state: dict[str, Any]) -> None:
        """Applies the initial state, links the controls to the traits, draws once."""
        with self._quietly():
            self.layer = state.get("layer", self._default_layer())
            self._sync_channel_range()
            self.method = self.inspector.projection_method
            for name in ("image_index", "channel", "method", "position", "feature_vis",
                         "synthesis_steps"):  # fmt: skip
                if name in state:
                    setattr(self, name, state[name])
        self._finish_building()
        self._layer_menu.show(self.layer)
        self._mark_menu()
        self._layer_menu.on_pick(lambda layer: setattr(self, "layer", layer))
        bound = [
            ("channel", self._channel_slider),
            ("method", self._method_toggle),
            ("position", self._position_toggle),
            ("image_index", self._index_slider),
            ("image_index", self._index_box),
            ("show_upload", self._upload_toggle),
            ("show_top", self._top_toggle),
            ("feature_vis", self._fviz_toggle),
        ]
        for trait, control in bound:
            self._bind(trait, control)
        self._upload_button.observe(self._on_upload, names="value")
        self._position_toggle.disabled = self._class_method()
        if len(self.source) == 0:
            self.status_line.info("No images given: upload a picture to start.")
        self._refresh({"grid", "input", "heat", "projection"})
        self.show_top = bool(state.get("show_top", False))

    # ----- layers and channels -------------------------------------------------------------
    def _default_layer(self) -> str:
        """The first block with feature maps (the paper's layer 1), as Figs. 1-2 begin; on a
        model without maps, ``Inspector.default_layer``; without an image, the first block."""
        shape = self._input_shape()
        if shape is None:
            return self.inspector.blocks[0]
        maps = self.inspector.map_layers(shape)
        return maps[0] if maps else self.inspector.default_layer(shape)

    def _class_count(self) -> int | None:
        """How many classes the model has; None while there is no image to ask it with, or
        when its output is maps, not class scores (a feature extractor: nothing predicted)."""
        shape = self._input_shape()
        if shape is None:
            return None
        out = tuple(self.inspector.shapes(shape)[-1][1:])
        if len(out) > 1 and any(side != 1 for side in out[1:]):
            return None
        return math.prod(out)

    def _display_name(self, layer: str) -> str:
        """The block or alias a layer is known by (``conv2``, ``layer3``), else its name."""
        return display_name(self.inspector, layer)

    def _class_method(self) -> bool:
        """Whether the method explains a class (Grad-CAM), not the selected unit."""
        return REGISTRY[self.method].kind == "class"

    def _input_shape(self) -> tuple[int, ...] | None:
        x = self.image
        return None if x is None else tuple(x.shape[-3:])

    def _layer_shape(self, layer: str) -> tuple[int, ...]:
        """(C, H, W) or (F,) of ``layer`` for the current image; (1,) when there is none."""
        shape = self._input_shape()
        if shape is None:
            return (1,)
        return tuple(self.inspector.shapes(shape)[self.inspector.layer_index(layer)][1:])

    def _sync_channel_range(self) -> None:
        """Fits the channel slider (and the channel, if it is now too big) to the layer."""
        last = self._layer_shape(self.layer)[0] - 1
        slider = self._channel_slider
        with self._quietly(), slider.hold_sync():
            if last >= slider.max:
                slider.max = last
            self.channel = min(self.channel, last)
            slider.max = last

    # ----- validation (WidgetBase's rule: raise while building, then keep and say why) ------
    @refusing("layer")
    def _check_layer(self, layer: str) -> str:
        self.inspector.layer_index(layer)  # an unknown layer: the core's message
        return layer

    @refusing("channel")
    def _check_channel(self, channel: int) -> int:
        count = self._layer_shape(self.layer)[0]
        if not 0 <= channel < count:
            name = self._display_name(self.layer)
            raise ValueError(f"map {channel} is out of range for {name}: 0..{count - 1}")
        return channel

    @refusing("method")
    def _check_method(self, method: str) -> str:
        if method in self._methods.absent:
            reason = self._methods.absent[method]
            raise ValueError(f"{method} is not available for this model: {reason}")
        if method not in self.methods:
            raise ValueError(f"unknown method {method!r}; use {', '.join(self.methods)}")
        return method

    @refusing("position")
    def _check_position(self, position: str) -> str:
        if position not in POSITIONS:
            raise ValueError(f"position must be 'max' or 'map'; got {position!r}")
        return position

    @refusing("synthesis_steps")
    def _check_synthesis_steps(self, steps: int) -> int:
        if not 1 <= steps <= MAX_SYNTHESIS_STEPS:
            raise ValueError(f"synthesis_steps must be in 1..{MAX_SYNTHESIS_STEPS}; got {steps}")
        return steps

    @refusing("image_index")
    def _check_image_index(self, index: int) -> int:
        count = len(self.source)
        if count and not 0 <= index < count:
            raise ValueError(f"image {index} is out of range: 0..{count - 1}")
        return index if count else 0

    # ----- reacting to changes -------------------------------------------------------------
    @traitlets.observe("layer")
    def _layer_changed(self, change: dict) -> None:
        if not self._live:
            return
        self._layer_menu.show(self.layer)
        with errors_to(self.status_line, "changing layer"):
            self._sync_channel_range()
        self._refresh({"grid", "heat", "projection", "top"})

    @traitlets.observe("channel")
    def _channel_changed(self, change: dict) -> None:
        class_map = self._class_method()  # a class map does not depend on the channel
        self._refresh({"highlight", "heat", "top"} | (set() if class_map else {"projection"}))

    @traitlets.observe("method")
    def _method_changed(self, change: dict) -> None:
        self._position_toggle.disabled = self._class_method()
        self._refresh({"projection", "top"})

    @traitlets.observe("position")
    def _position_changed(self, change: dict) -> None:
        self._refresh({"projection"})

    @traitlets.observe("image_index")
    def _image_index_changed(self, change: dict) -> None:
        if self.show_upload:
            self.show_upload = False  # picking from the set leaves the upload; that redraws
        else:
            self._refresh({"grid", "input", "heat", "projection"})

    @traitlets.observe("show_upload")
    def _show_upload_changed(self, change: dict) -> None:
        if not self._live:
            return
        with errors_to(self.status_line, "changing image"):
            self._sync_channel_range()
        self._refresh({"grid", "input", "heat", "projection"})

    @traitlets.observe("show_top")
    def _show_top_changed(self, change: dict) -> None:
        self._refresh({"top"})

    @traitlets.observe("feature_vis", "synthesis_steps")
    def _feature_vis_changed(self, change: dict) -> None:
        if not self._live:
            return
        with self._lock, errors_to(self.status_line, "feature visualisation"):
            if self.show_top and self._top_entries is not None:
                self._refresh_fviz()
            else:
                self._fviz_box.layout.display = "flex" if self.feature_vis else "none"

    def _on_canvas_click(self, x: float, y: float) -> None:
        """Selects the feature map under canvas pixel (x, y)."""
        index = None if self._grid is None else self._grid.cell_at(x, y)
        if index is not None:
            self.channel = index

    def _on_upload(self, change: dict) -> None:
        for name, data in uploaded_files(change["new"])[-1:]:
            self.upload(data, name)

    # ----- drawing -------------------------------------------------------------------------
    def _refresh(self, parts: set[str]) -> None:
        """Redraws ``parts`` (grid, highlight, input, heat, projection, top) for the state now."""
        if not self._live:
            return
        with self._lock:
            x = self.image
            if x is not None:
                self.status_line.clear()
                steps = [
                    ("grid", self._draw_grid),
                    ("highlight", lambda _: self._draw_highlight()),
                    ("input", self._draw_input),
                    ("heat", self._draw_heat),
                    ("projection", self._draw_projection),
                ]
                for part, draw in steps:
                    if part in parts:
                        with errors_to(self.status_line, f"drawing the {part}"):
                            draw(x)
            if "top" in parts:
                with errors_to(self.status_line, "top 9"):
                    self._refresh_top()
        release_unused_memory()  # a class shares one machine: keep each kernel small

    def _draw_grid(self, x: Tensor) -> None:
        acts = self.inspector.activations(x, self.layer)
        maps = acts if acts.ndim == 3 else acts.reshape(-1, 1, 1)  # a unit is a 1x1 map
        self._grid, zoom = GridGeometry.for_tiles(
            len(maps), tuple(maps.shape[1:]), width=GRID_WIDTH, height=GRID_HEIGHT
        )
        heat = render.heatmap(maps)  # one colour scale for the whole layer
        tiles = [render.upscale(h, zoom) for h in heat]
        picture = render.grid(
            tiles, cols=self._grid.cols, pad=self._grid.pad, background=render.BACKGROUND
        )
        self._grid_rgba = rgba(picture)
        self._redraw_canvas()
        self._draw_inset()
        lo, hi = float(maps.min()), float(maps.max())
        self._draw_bar(self._grid_bar, lo, hi, picture.shape[1])
        name = self._display_name(self.layer)
        size = "×".join(str(s) for s in maps.shape[1:])
        what = f"{len(maps)} feature maps of {size}" if acts.ndim == 3 else f"{len(maps)} units"
        self._canvas_caption.say(
            f"{name}: {what} for this image, all on one colour scale (the bar below). "
            "Click one to select it.",
            "body",
        )

    def _redraw_canvas(self, *_: Any) -> None:
        """Puts the grid picture on the canvas (also when a new view connects)."""
        if self._grid_rgba is None:
            return
        height, width = self._grid_rgba.shape[:2]
        with hold_canvas():
            size_canvas(self._canvas, height, width)
            self._canvas.put_image_data(self._grid_rgba, 0, 0)
            self._framed = None
            self._stroke_selection()

    def _draw_highlight(self) -> None:
        if self._grid_rgba is not None:
            with hold_canvas():
                self._stroke_selection()
        self._draw_inset()

    def _draw_inset(self) -> None:
        """Under a grid of small tiles: the selected map and its neighbours, enlarged by a whole
        number, the selection framed as on the grid; hidden when the tiles are big enough."""
        g, picture = self._grid, self._grid_rgba
        if g is None or picture is None or max(g.tile) > INSET_BELOW:
            self._inset_box.layout.display = "none"
            return
        crop, _, _ = inset_crop(picture[..., :3], g, self.channel, INSET_REACH)
        zoom = max(1, GRID_WIDTH // crop.shape[1])
        self._inset.value = render.to_png(render.upscale(crop, zoom))
        self._inset_caption.say(
            f"Map {self.channel} and the maps around it in the grid, {zoom}x larger",
            "muted",
        )
        self._inset_box.layout.display = "flex"

    def _stroke_selection(self) -> None:
        """Frames the selected map; the old frame is painted over in the gap colour.

        The frame fills exactly the gap around a tile (a line ``pad`` wide centred ``pad / 2``
        outside it), so erasing it never touches a map and no picture has to be re-sent.
        """
        g = self._grid
        if g is None:
            return
        for index, colour in ((self._framed, GAP_COLOUR), (self.channel, HIGHLIGHT)):
            if index is None or not 0 <= index < g.count:
                continue
            x, y = g.origin(index)
            self._canvas.stroke_style = colour
            self._canvas.line_width = g.pad
            half = g.pad / 2
            self._canvas.stroke_rect(x - half, y - half, g.tile[1] + g.pad, g.tile[0] + g.pad)
        self._framed = self.channel

    def _prepare_upload(self, data: bytes, name: str) -> Tensor:
        """An upload as the model's input, through the model's preprocessing (pictures of a
        preprocessing with no size of its own are resized to the images shown)."""
        prep, shape = self.preprocessing, self.source.shape
        size = None if shape is None else tuple(shape[-2:])
        if prep is None:  # pixels in [0, 1], resized to the images shown
            channels = self.inspector.in_channels or (3 if shape is None else shape[0])
            return image_from_bytes(data, channels, size, name=repr(name))
        if prep.size is None and size is not None:
            prep = dataclasses.replace(prep, size=size)
        channels = self.inspector.in_channels or prep.channels
        return image_from_bytes(data, channels, name=repr(name), preprocessing=prep)

    def _draw_input(self, x: Tensor) -> None:
        picture = render.input_image(x, preprocessing=self.preprocessing)
        picture, note = self._shown(picture)
        self._input_image.value = render.to_png(picture)
        if self.show_upload and self._upload is not None:
            what = f"uploaded {self._upload[0]!r}"
            what += " (black and white swapped)" if self._upload_note else ""
        else:
            label = self.source[self.image_index][1]
            what = f"image #{self.image_index}"
            what += "" if label is None else f" · label {self._class_name(label)}"
        self._input_caption.text = f"{what} · {self._prediction(x)}{note}"

    def _prediction(self, x: Tensor) -> str:
        """ "predicted <class> (p%)"; for a model whose output is maps, says there is none."""
        if self._class_count() is None:
            return "no class scores (the model's output is feature maps)"
        probs = self.inspector.predict(x)
        best = int(probs.argmax())
        return f"predicted {self._class_name(best)} ({float(probs[best]):.0%})"

    def _draw_heat(self, x: Tensor) -> None:
        acts = self.inspector.activations(x, self.layer)
        fmap = acts[self.channel]
        name = self._display_name(self.layer)
        if acts.ndim == 1:  # one unit: its colour on the layer's scale, as in the grid
            lo, hi = float(acts.min()), float(acts.max())
            heat = render.heatmap(fmap.reshape(1, 1), lo, hi)
            text = f"unit {self.channel} of {name} = {float(fmap):.3g} · on the layer's scale"
        else:
            lo, hi = float(fmap.min()), float(fmap.max())
            heat = render.heatmap(fmap)
            text = f"map {self.channel} of {name} · max {hi:.3g} · its own colour scale"
        heat, note = self._shown(heat)
        self._heat_image.value = render.to_png(heat)
        self._draw_bar(self._heat_bar, lo, hi, PICTURE_SIDE)
        self._heat_caption.text = text + note

    def _draw_projection(self, x: Tensor) -> None:
        method = REGISTRY[self.method]
        position = "max" if self.position == "max" else None
        signal = method.compute(self.inspector, x, self.layer, self.channel, position, None)
        gain = 1.0
        if method.kind == "class":
            picture, text = self._class_picture(x, signal)
        else:
            shown = unit_view(signal, self.method)
            picture, gain = shown.picture, shown.gain
            unit = (
                f"map {self.channel}'s strongest unit"
                if position == "max"
                else (f"all of map {self.channel}")
            )
            text = f"{method.label} projection of {unit}"
            for note in (shown.note, switch_note(self.inspector, self.layer, self.method)):
                text += f" · {note}" if note else ""
        picture, scale = self._shown(picture)
        self._projection_image.value = render.to_png(picture)
        head, dot, notes = text.partition(" · ")  # the scale first, before a long note
        self._projection_caption.text = head + scale + dot + notes
        lo, hi, kind = self._projection_range(signal, method, gain)
        self._draw_bar(self._projection_bar, lo, hi, PICTURE_SIDE, **kind)

    def _projection_scale(self, signal: Tensor, method, gain: float = 1.0) -> np.ndarray:
        """The bar under the projection: signed grey (0 = mid grey) on its own scale, |value|
        for saliency, the heat colours 0..1 for Grad-CAM; a stretched (faint) projection's
        ends are its peak / ``gain``, the values drawn at full contrast."""
        lo, hi, kind = self._projection_range(signal, method, gain)
        return render.colour_bar(lo, hi, PICTURE_SIDE, font_size=bar_font_size(), **kind)

    def _projection_range(
        self, signal: Tensor, method, gain: float = 1.0
    ) -> tuple[float, float, dict]:
        """The ends and kind of :meth:`_projection_scale`'s bar (kept to redraw it)."""
        if method.heat_map:  # drawn by render.heatmap: its own min..max
            return float(signal.min()), float(signal.max()), {}
        top = float(signal.abs().max()) / gain or 1.0
        if self.method == "saliency":
            return 0.0, top, {"kind": "grey"}
        return -top, top, {"kind": "signed"}

    def _class_picture(self, x: Tensor, signal: Tensor) -> tuple[np.ndarray, str]:
        """Grad-CAM and CAM as a heat map over the input; guided Grad-CAM as a signed
        projection."""
        method = REGISTRY[self.method]
        cam_layer = self._display_name(method.where(self.inspector, self.layer, x))
        best = int(self.inspector.predict(x).argmax())
        label = method.label
        if method.heat_map:
            picture = render.input_image(x, preprocessing=self.preprocessing)
            picture = render.overlay(picture, render.heatmap(signal))
            how = ", over the input"
        else:
            picture = render.projection_image(signal)
            how = ": guided backprop times Grad-CAM"
        text = f"{label} of class {self._class_name(best)} (predicted) at {cam_layer}{how}"
        return picture, text

    def _class_name(self, index: int) -> str:
        if self.classes is not None and 0 <= index < len(self.classes):
            return self.classes[index]
        return str(index)

    # ----- top 9 ---------------------------------------------------------------------------
    def _use_top(self, top: TopK | str | os.PathLike) -> None:
        """Takes the layers of ``top`` (checked against the model and the data set) as mined."""
        if self.dataset is None:
            raise ValueError("top= needs dataset=: the data set its results were mined on")
        if isinstance(top, TopK):
            source = "the TopK given as top="
            if top.model_fingerprint != model_fingerprint(self.inspector):
                raise ValueError(f"{source} was mined with a different model (or weights)")
            if top.data_fingerprint != data_fingerprint(self.dataset):
                raise ValueError(f"{source} was mined on a different data set")
            loaded = top
        elif isinstance(top, str | os.PathLike):
            source = os.fspath(top)
            loaded = TopK.load(top, self.inspector, self.dataset)  # its refusal names the file
        else:
            raise TypeError(
                f"top must be a TopK or the path of a TopK.save file; got {type(top).__name__}"
            )
        # A copy, so that layers mined here join it and not the caller's object.
        self._top = TopK(
            loaded.k, loaded.count, dict(loaded.layers), loaded.model_fingerprint,
            loaded.data_fingerprint,
        )  # fmt: skip
        self._top_source = source
        self._mined = {name: self._shown_part(self._top, name) for name in self._top.layers}

    @staticmethod
    def _shown_part(top: TopK, name: str) -> TopK:
        """``top``'s layer ``name`` alone, cut to the TOP_K strongest (what is drawn)."""
        t = top.layers[name]
        k = min(top.k, TOP_K)
        part = LayerTopK(t.values[:, :k], t.images[:, :k], t.positions[:, :k])
        return TopK(k, top.count, {name: part}, top.model_fingerprint, top.data_fingerprint)

    def _mark_menu(self) -> None:
        """Marks "not mined" the menu's layers missing from the ``top=`` results."""
        mined = set(self._mined)
        layer_name = self.inspector.layer_name
        notes = {
            name: "not mined"
            for name in self._layer_menu.names
            if self._ask_before_mining and layer_name(name) not in mined
        }
        self._layer_menu.mark(notes)

    def _refresh_top(self) -> None:
        self._top_panel.layout.display = "flex" if self.show_top else "none"
        self._fviz_box.layout.display = "flex" if self.feature_vis else "none"
        if not self.show_top:
            self._tasks.cancel()
            return
        if self.dataset is None:
            raise ValueError("no data set to mine: pass dataset= to LayerBrowser")
        name = self.inspector.layer_name(self.layer)
        top = self._mined.get(name)
        if top is None:
            if not self._ask_before_mining:
                self._start_mining(name)
            elif self._tasks.running != name:
                self._offer_mining(name)
            return
        self._mine_button.layout.display = "none"
        if self._tasks.running != self._fviz_task():  # this map's picture may go on
            self._tasks.cancel()  # a mining pass for another layer is no longer wanted
        method = self._top_method()
        entries = top_projections(self.inspector, top, self.dataset, name, self.channel, method)
        self._draw_top(entries, method, top.count)
        self._top_entries = entries
        self._refresh_fviz()

    def _fviz_key(self) -> tuple:
        """What the map's feature visualisation depends on: weights, layer, map, settings."""
        shape = self._fviz_shape()
        version = parameter_version(self.inspector.model)
        name = self.inspector.layer_name(self.layer)
        return (version, name, self.channel, shape, self.synthesis_steps, 0.05, 0)

    def _fviz_task(self) -> str:
        return f"feature visualisation {self.inspector.layer_name(self.layer)}:{self.channel}"

    def _fviz_shape(self) -> tuple[int, int, int]:
        """The model's input size: the image shown, else the top 9's images."""
        shape = self._input_shape()
        if shape is None and self._top_entries:
            shape = tuple(self._top_entries[0].image.shape[-3:])
        if shape is None:
            raise ValueError("feature visualisation needs the model's input size: give images")
        return tuple(shape)  # type: ignore[return-value]

    def _refresh_fviz(self) -> None:
        """The selected map's synthetic picture beside its top 9: from the cache, or made in
        the background (only while the top 9 are shown and ``feature_vis`` is on)."""
        self._fviz_box.layout.display = "flex" if self.feature_vis else "none"
        if not self.feature_vis:
            self._fit_right_column(0)
        if not (self.show_top and self.feature_vis):
            if self._tasks.running == self._fviz_task():
                self._tasks.cancel()
            return
        key = self._fviz_key()
        shown = f"map {self.channel} of {self._display_name(self.layer)}"
        if key in self.visualisations:
            self._draw_fviz(self.visualisations[key], shown)
            return
        task = self._fviz_task()
        if self._tasks.running == task:
            return
        self._fviz_image.value = blank_png(TOP_TILE)
        self._fviz_caption.say(f"drawing {shown}…", "busy")
        insp, channel, steps = self.inspector, self.channel, self.synthesis_steps
        layer = self._display_name(self.layer)  # the objective's name reads as the menu does
        # Imported here: a student who never opens this panel does not pay for it at start-up.
        from zfwidgets.core import synthesis as synth

        param = synth.Fourier(key[3], preprocessing=self.preprocessing)

        def work(should_stop, report) -> synth.Visualisation:
            def progress(done: int, total: int) -> None:
                if not should_stop():
                    report(done, total)
                    self.status_line.busy(f"feature visualisation of {shown}: step {done} of "
                                          f"{total}")  # fmt: skip

            return synth.visualise(
                insp, synth.channel(layer, channel), param, transforms="standard", steps=steps,
                lr=key[5], seed=key[6], callback=progress, should_stop=should_stop,
            )  # fmt: skip

        def done(vis: synth.Visualisation) -> None:
            self.visualisations[key] = vis
            self.status_line.info(f"feature visualisation of {shown}: {steps} steps")
            with errors_to(self.status_line, "feature visualisation"):
                if self.show_top and self.feature_vis and self._fviz_key() == key:
                    self._draw_fviz(vis, shown)

        self._in_background(task, work, done, label="feature vis")

    def _fit_right_column(self, extra: int) -> None:
        """The right column as designed, or wide enough for the picture (``extra`` pixels with
        its margin) beside the top-9 pair, so that the three stay on one row."""
        base = self._right_base
        pair = sum(_png_width(p.value) for p in (self._top_projections, self._top_patches))
        width = f"{max(base, extra + pair + 12 + 8) if extra else base}px"
        layout = self._right_column.layout
        if layout.width != width:
            layout.width = layout.min_width = width

    def _draw_fviz(self, vis: synth.Visualisation, shown: str) -> None:
        """The picture as tall as the top-9 grid beside it (whole-number zoom: crisp)."""
        pixels = render.input_image(vis.images[0], preprocessing=self.preprocessing)
        side = patch_side(self.inspector, self.layer, tuple(vis.images.shape[-3:]))
        tile = tile_pixels(side, largest=self._tile_room())
        target = 3 * tile[0] + 4 * 2  # the grid's height (render.grid's pad)
        zoom = max(1, target // max(pixels.shape[:2]))
        picture = render.upscale(pixels, zoom)
        self._fviz_image.value = render.to_png(picture)
        self._fviz_caption.layout.width = f"{picture.shape[1]}px"
        self._fit_right_column(picture.shape[1] + 12)
        self._fviz_caption.say(
            f"made to excite {shown} (Fourier + robust, {len(vis.objective)} steps)", "muted"
        )

    def _top_method(self) -> str:
        """The unit method the top 9 are projected with: the toggle's, or for a class method
        the model's projection method (the deconvnet, or saliency where it has none)."""
        return self.inspector.projection_method if self._class_method() else self.method

    def _offer_mining(self, name: str) -> None:
        """A layer the ``top=`` results lack: a button to mine it, with a time estimate."""
        self._tasks.cancel()
        shown = self._display_name(name)
        self._clear_top()
        guess = self._estimates.get(name)
        if guess is None or self._seconds_per_image is not None:  # time a batch once per layer
            guess = estimate_mining_seconds(
                self.inspector, self.dataset, name, seconds_per_image=self._seconds_per_image
            )
            self._estimates[name] = guess
        how = f"timed on {guess.sample} images" if guess.sample else "at the rate of the last pass"
        self._mine_button.description = (
            f"Mine {shown} (about {_duration(guess.seconds)} on this machine "
            f"for {guess.images:,} images)"
        )
        self._mine_button.layout.display = "flex"
        self._top_caption.say(
            f"{shown} is not in the mined results; mining it takes about "
            f"{_duration(guess.seconds)} here (an estimate, {how}).",
            "muted",
        )

    def _mine_clicked(self) -> None:
        with errors_to(self.status_line, "top 9"):
            if self.show_top and self.dataset is not None:
                self._start_mining(self.inspector.layer_name(self.layer))

    def _clear_top(self) -> None:
        self._top_entries = None
        self._top_projections.value = self._top_patches.value = blank_png(TOP_TILE)
        self._top_labels.value = ""

    def _start_mining(self, name: str) -> None:
        if self._tasks.running == name:
            return
        shown = self._display_name(name)
        self._mine_button.layout.display = "none"
        self._clear_top()
        self._top_caption.say(f"Mining {shown} over the data set…", "busy")
        k = TOP_K if self._top is None else self._top.k  # joins the results on hand

        def work(should_stop, report) -> TopK:
            started = time.perf_counter()
            top = mine(
                self.inspector,
                self.dataset,
                layers=[name],
                k=k,
                progress=False,
                callback=report,
                should_stop=should_stop,
            )
            self.mining_seconds[name] = time.perf_counter() - started
            return top

        def done(top: TopK) -> None:
            if self._top is None:
                self._top = top
            else:
                self._top.layers[name] = top.layers[name]
            self._mined[name] = self._shown_part(top, name)
            seconds = self.mining_seconds[name]
            self._seconds_per_image = seconds / max(top.count, 1)
            self.status_line.info(f"mined {shown} over {top.count:,} images in {seconds:.1f} s")
            with errors_to(self.status_line, "top 9"):
                self._mark_menu()
                self._refresh_top()

        self._in_background(name, work, done, label=f"mining {shown}")

    def _draw_top(self, entries: list[TopEntry], method: str, count: int) -> None:
        side = patch_side(self.inspector, self.layer, tuple(entries[0].image.shape))
        largest = self._tile_room()
        pictures = top_nine_pictures(entries, method, self.preprocessing, side, largest=largest)
        self._top_projections.value = pictures.projections
        self._top_patches.value = pictures.patches
        self._top_labels.value = tile_labels_html(
            [self._tile_text(e) for e in entries], tile_pixels(side, largest=largest)[1]
        )
        self._top_caption.help = f"Image index (activation), strongest first: {pictures.listing}"
        note = (
            f" ({REGISTRY[self.method].label} is a class map, so units use {method})"
            if method != self.method
            else ""
        )
        switches = switch_note(self.inspector, self.layer, method)
        warnings = [w for w in (pictures.note, switches) if w]
        self._top_caption.say(
            f"The {len(entries)} of {count:,} images that excite map {self.channel} of "
            f"{self._display_name(self.layer)} most: {method} projections (left) beside the "
            f"image patches they see (right), strongest first{note}."
            + "".join(f" ({w}.)" for w in warnings),
            "muted",
        )

    def _tile_text(self, entry: TopEntry) -> str:
        """``#298 · cats · 0.132``: the image, the data set's label for it, the activation."""
        label = data_label(self.dataset, entry.image_index)
        parts = [f"#{entry.image_index}"]
        if label is not None:
            names = self.dataset_classes
            parts.append(
                names[label] if names is not None and 0 <= label < len(names) else f"label {label}"
            )
        parts.append(f"{entry.value:.3g}")
        return " · ".join(parts)


def _check_fit_width(fit_width: Any) -> int:
    """``fit_width`` if it is a whole number of CSS pixels in ``FIT_WIDTHS``; else a one-line
    error naming what was given, what is allowed and what to do."""
    low, high = FIT_WIDTHS
    if isinstance(fit_width, bool) or not isinstance(fit_width, int | np.integer):
        ok = False
    else:
        ok = low <= fit_width <= high
    if not ok:
        raise ValueError(
            f"fit_width must be a whole number of CSS pixels from {low} to {high} (the notebook "
            f"output's width); got {fit_width!r}: leave it out for {FIT_WIDTH} (1280x720 with "
            "JupyterLab's file browser open) or pass e.g. fit_width=1200 on a wide screen"
        )
    return int(fit_width)


def inset_crop(
    picture: np.ndarray, grid: GridGeometry, index: int, reach: int = 1
) -> tuple[np.ndarray, int, int]:
    """The part of a grid ``picture`` (H, W, 3) around tile ``index``: up to ``reach`` tiles
    each way (shifted inward at the grid's edges), gaps included, with the gap around tile
    ``index`` painted in the selection colour. Returns ``(crop, first, last)``, the first and
    last map index the crop shows.

    Example:
        >>> g = GridGeometry(count=9, tile=(2, 2), cols=3, pad=1)
        >>> crop, first, last = inset_crop(np.zeros((10, 10, 3), np.uint8), g, 4, reach=0)
        >>> crop.shape, first, last, crop[0, 0].tolist(), crop[1, 1].tolist()
        ((4, 4, 3), 4, 4, [41, 182, 246], [0, 0, 0])
    """
    row, col = divmod(index, grid.cols)
    span = 2 * reach + 1

    def window(at: int, count: int) -> tuple[int, int]:
        start = min(max(at - reach, 0), max(count - span, 0))
        return start, min(start + span, count)

    (r0, r1), (c0, c1) = window(row, grid.rows), window(col, grid.cols)
    pitch_h, pitch_w = grid.tile[0] + grid.pad, grid.tile[1] + grid.pad
    crop = picture[r0 * pitch_h : r1 * pitch_h + grid.pad, c0 * pitch_w : c1 * pitch_w + grid.pad]
    crop = crop.copy()
    y, x, pad = (row - r0) * pitch_h, (col - c0) * pitch_w, grid.pad
    ring = np.zeros(crop.shape[:2], bool)
    ring[y : y + pitch_h + pad, x : x + pitch_w + pad] = True
    ring[y + pad : y + pitch_h, x + pad : x + pitch_w] = False  # the tile itself stays
    crop[ring] = HIGHLIGHT_RGB
    last = min(grid.count - 1, (r1 - 1) * grid.cols + c1 - 1)
    return crop, r0 * grid.cols + c0, last


def _png_width(png: bytes) -> int:
    """The width of a PNG picture, from its header."""
    return int.from_bytes(png[16:20], "big") if png[:8] == b"\x89PNG\r\n\x1a\n" else 0


def _duration(seconds: float) -> str:
    """``"3 s"``, ``"4 min"``: a rough time for an estimate."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"
