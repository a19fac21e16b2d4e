"""Synthesis: images the network makes, live — class and unit visualisations by gradient
ascent, feature inversion from a layer, and DeepDream.

Choose what to do (``mode``), set the regularisers, press Start: the picture updates every few
steps while the optimisation runs in the background, beside the objective's curve. Stop ends
it; a second Start with the same settings shows the finished result at once (cached).

A class or a unit can be drawn two ways (``method``): the lecture's (pixels + Yosinski's priors,
:func:`~zfwidgets.core.synthesis.ascend`) or Fourier + robust (Lucid's,
:func:`~zfwidgets.core.synthesis.visualise`), each of whose priors can be switched off
(``fourier``, ``decorrelate``, ``transforms``) to see why it matters; ``diversity`` draws 1-4
different images of one unit side by side. A class picture's caption gives its robust class
probability (:func:`~zfwidgets.core.synthesis.robustness`): high on a picture of the object, low
on an adversarial pattern.

Example:
    >>> from zfwidgets import demo
    >>> from zfwidgets.widgets.synthesis import Synthesis
    >>> d = demo.load()
    >>> w = Synthesis(d.model, images=[d.dataset[0][0]], mean=d.mean, steps=20)
    >>> w.target = 3
    >>> w.start(); w.wait()
    True
    >>> len(w.result.objective), w.result.image.shape
    (20, torch.Size([1, 28, 28]))
    >>> w.close()
    >>> w = Synthesis(d.model, mean=d.mean, shape=(1, 28, 28), steps=8, method="robust",
    ...               diversity=2)
    >>> w.start(); w.wait()
    True
    >>> tuple(w.result.images.shape), sorted(w.result.settings)[:3]
    ((2, 1, 28, 28), ['lr', 'objective', 'param'])
    >>> w.close()
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import ipywidgets as widgets
import torch
import traitlets
from bqplot import Axis, Figure, LinearScale, Lines
from torch import Tensor, nn

from zfwidgets.core import render
from zfwidgets.core import synthesis as core
from zfwidgets.core.checks import check_channel, check_class
from zfwidgets.core.inspector import Inspector
from zfwidgets.core.preprocess import Preprocessing
from zfwidgets.widgets.base import WidgetBase, class_names, errors_to, inspector_for, refusing
from zfwidgets.widgets.menus import LayerMenu
from zfwidgets.widgets.parts import (
    COLOURS,
    FONT,
    PICTURE_SIDE,
    ImageSource,
    caption,
    class_options,
    full_width,
    nice_ticks,
    png_image,
    widget_preprocessing,
    zoom_for,
)

__all__ = ["METHODS", "MODES", "Synthesis"]

MODES = {
    "class": ("class", "Gradient ascent on a class score: what the model thinks the class is"),
    "unit": ("unit", "Gradient ascent on a feature map of a layer: what excites it most"),
    "invert": ("invert", "Feature inversion: an image whose features at the layer match"),
    "dream": ("dream", "DeepDream: amplify whatever the layer already sees in the image"),
}
METHODS = {
    "lecture": (
        "lecture (pixels + priors)",
        "The lecture's method: gradient ascent on the pixels with Yosinski's priors (L2 decay, "
        "blur, jitter)",
    ),
    "robust": (
        "Fourier + robust",
        "Lucid's method (Olah et al., 2017): a Fourier image with decorrelated colours, "
        "randomly transformed every step; switch each prior off to see why it matters",
    ),
}
ROBUST = ("fourier", "decorrelate", "transforms", "diversity", "diversity_weight")
MAX_DIVERSITY = 4
ROBUST_VIEWS = 32  # random views behind the robust class probability (as the bench's)
GAP = 4  # pixels between the images of a diverse batch
LIVE_EVERY = 5  # steps between live pictures: often enough to watch, cheap to send
CURVE_COLOUR = "#1976d2"
STOP_WAIT = 5.0  # seconds Stop waits for the worker to finish its step
SETTINGS = ("steps", "lr", "l2", "blur_every", "jitter", "tv_weight", "octaves", "seed")


class Synthesis(WidgetBase):
    """Make images from a model: maximise a class or unit, invert a layer, or dream.

    Args:
        model_or_inspector: an ``nn.Module`` (never modified) or an ``Inspector``.
        images: images to invert or dream from (tensor, list or Dataset); optional for
            ``class`` and ``unit``.
        classes: class names, indexed by class.
        mean, std: the older shorthand for ``preprocessing``: the model's inputs are
            ``(pixels - mean) / std`` (``mean`` may be a mean image or one number per channel).
        shape: the input shape (C, H, W); default the images' shape.
        preprocessing: the model's preprocessing (a
            :class:`~zfwidgets.core.preprocess.Preprocessing`, or torchvision's
            ``weights.transforms()``): pictures are shown in their true colours
            (``x * std + mean``) and kept to pixels 0..1. Without it (and without ``mean``)
            pictures are stretched min..max and not bounded.
        **state: initial values of the traits below.

    Traits: mode (``"class"``, ``"unit"``, ``"invert"``, ``"dream"``), target (class),
    layer, channel, image_index, and the settings steps, lr, l2, blur_every, jitter,
    tv_weight, octaves, seed. For ``class`` and ``unit``: method (``"lecture"``: pixels and
    the priors above; ``"robust"``: :func:`core.visualise`), and the robust route's priors
    fourier (a Fourier image; off: pixels), decorrelate (colours), transforms
    (:func:`core.standard` every step), diversity (1-4 images, with
    ``diversity_weight * core.diversity(layer)`` added when > 1). ``result`` is the last
    finished :class:`core.Synthesis` (lecture) or :class:`core.Visualisation` (robust);
    ``results`` caches them per settings; ``robust_probabilities`` the robust class
    probability of each class picture; status (read-only) is the status line's message.
    """

    css_class = "zfw-synthesis"
    status_hint = "choose what to make, then press Start"
    name_in_refusals = True

    mode = traitlets.Unicode("class")
    target = traitlets.Int(0)
    layer = traitlets.Unicode("")
    channel = traitlets.Int(0)
    image_index = traitlets.Int(0)
    steps = traitlets.Int(100)
    lr = traitlets.Float(0.1)
    l2 = traitlets.Float(1e-3)
    blur_every = traitlets.Int(4)
    jitter = traitlets.Int(1)
    tv_weight = traitlets.Float(1e-2)
    octaves = traitlets.Int(2)
    seed = traitlets.Int(0)
    method = traitlets.Unicode("lecture")
    fourier = traitlets.Bool(True)
    decorrelate = traitlets.Bool(True)
    transforms = traitlets.Bool(True)
    diversity = traitlets.Int(1)
    diversity_weight = traitlets.Float(10.0)

    def __init__(
        self,
        model_or_inspector: nn.Module | Inspector,
        images: Any = None,
        classes: Sequence[str] | None = None,
        mean: Tensor | float | None = None,
        std: Any = None,
        shape: Sequence[int] | None = None,
        preprocessing: Any = None,
        **state: Any,
    ) -> None:
        super().__init__()
        allowed = ("mode", "target", "layer", "channel", "image_index", "method", *SETTINGS,
                   *ROBUST)  # fmt: skip
        self._check_state(state, allowed)
        self.inspector = inspector_for(model_or_inspector)
        source = ImageSource(images)
        self.images = [self.inspector.image(source[i][0])[0].cpu() for i in range(len(source))]
        shape = shape or (tuple(self.images[0].shape) if self.images else None)
        self.shape = core.input_shape(self.inspector, shape)
        self._shapes = self.inspector.shapes(self.shape)
        self.classes = class_names(classes, int(self._shapes[-1][-1]))
        self.preprocessing = _preprocessing(preprocessing, mean, std, self.shape[0])
        self.mean, self.std = mean, 1.0 if std is None else std
        self.bounds = _bounds(self.preprocessing, self.shape)
        self.results: dict[tuple, core.Synthesis | core.Visualisation] = {}
        self.result: core.Synthesis | core.Visualisation | None = None
        self.robust_probabilities: dict[tuple, list[float]] = {}
        self.layer = state.pop("layer", self.inspector.default_layer(self.shape))
        self._build()
        with self._quietly():
            for name, value in state.items():
                setattr(self, name, value)
        self._finish_building()
        self._layer.show(self.layer)
        self._layer.on_pick(lambda layer: setattr(self, "layer", layer))
        self._show_controls()
        self._draw(None, None, [])

    # ----- public --------------------------------------------------------------------------
    def start(self) -> None:
        """Runs the synthesis for the current settings (a cached result shows at once)."""
        key = self._key()
        if key in self.results:
            self._finished(key, self.results[key], cached=True)
            return
        with errors_to(self.status_line, "start"):
            self._check_ready()
            run, mode = self._runner(), self.mode
            total = self.steps * (self.octaves if mode == "dream" else 1)
            robust = self._robust_probability(mode)

            def work(should_stop, report):
                def progress(done: int, _: int) -> None:
                    if should_stop():  # stopped: the status line says so already
                        return
                    report(done, total)
                    self.status_line.busy(f"{mode}: step {done} of {total}")

                def live(step: int, image: Tensor, values: list[float]) -> None:
                    with self._lock:
                        self._draw(key, image, values, f"{self._what(key)} — step {step}")

                result = run(callback=progress, should_stop=should_stop, every=LIVE_EVERY,
                             on_image=live)  # fmt: skip
                return result, robust(result)

            self.status_line.busy(f"{self.mode}: starting")
            self._in_background(repr(key), work, self._finished_fresh(key), label=self.mode)

    def stop(self) -> None:
        """Stops the running synthesis (the last live picture stays)."""
        if self._tasks.running is not None:
            self._tasks.cancel()
            self._tasks.wait(STOP_WAIT)  # the worker ends at its next step; then say so
            self.status_line.info(f"{self.mode}: stopped")

    # ----- building ------------------------------------------------------------------------
    def _build(self) -> None:
        self._mode_toggle = widgets.ToggleButtons(
            options=[(label, mode) for mode, (label, _) in MODES.items()],
            tooltips=[tip for _, tip in MODES.values()],
            style={"button_width": "90px"},
        )
        self._target = widgets.Dropdown(
            options=class_options(self.classes),
            description="class",
            tooltip="The class whose score gradient ascent maximises",
        )
        self._method_toggle = widgets.ToggleButtons(
            options=[(label, method) for method, (label, _) in METHODS.items()],
            tooltips=[tip for _, tip in METHODS.values()],
            style={"button_width": "auto"},
        )
        # The LayerBrowser's menu: the blocks, then the steps worth browsing.
        self._layer = LayerMenu(
            self.inspector, description="layer", tooltip="The layer to maximise, invert or dream"
        )
        self._robust_controls = {
            "fourier": widgets.Checkbox(
                description="Fourier image", indent=False,
                tooltip="The image as a Fourier spectrum scaled by 1/frequency (off: pixels)"),
            "decorrelate": widgets.Checkbox(
                description="decorrelated colours", indent=False,
                tooltip="Mix colours through ImageNet's colour correlation (Fourier image only)"),
            "transforms": widgets.Checkbox(
                description="random transforms", indent=False,
                tooltip="Pad, jitter, scale and rotate the image at random every step"),
            "diversity": widgets.IntSlider(
                min=1, max=MAX_DIVERSITY, description="images",
                tooltip="How many different images of the unit (diversity objective when > 1)"),
            "diversity_weight": widgets.FloatLogSlider(
                min=-1, max=3, description="diversity",
                tooltip="Weight of the diversity objective (images > 1)"),
        }  # fmt: skip
        self._channel = widgets.BoundedIntText(
            min=0, description="map", tooltip="The feature map of the layer whose mean is maximised"
        )
        self._image = widgets.IntSlider(
            min=0, max=max(len(self.images) - 1, 0), description="image",
            tooltip="The image to invert or dream from (←/→ when focused)",
        )  # fmt: skip
        self._sliders = {
            "steps": widgets.IntSlider(min=5, max=500, step=5, description="steps",
                                       tooltip="Optimisation steps (per octave for dream)"),
            "lr": widgets.FloatLogSlider(min=-3, max=0, description="step size",
                                         tooltip="Adam step size, in model-input units"),
            "l2": widgets.FloatLogSlider(min=-5, max=0, description="L2 decay",
                                         tooltip="Weight of ||I||^2: keeps pixels small"),
            "blur_every": widgets.IntSlider(min=0, max=20, description="blur every",
                                            tooltip="Gaussian blur every this many steps (0: no)"),
            "jitter": widgets.IntSlider(min=0, max=8, description="jitter",
                                        tooltip="Random shift of up to this many pixels per step"),
            "tv_weight": widgets.FloatLogSlider(min=-5, max=1, description="TV weight",
                                                tooltip="Weight of total variation: smoother"),
            "octaves": widgets.IntSlider(min=1, max=5, description="octaves",
                                         tooltip="Scales DeepDream works at, smallest first"),
            "seed": widgets.IntText(description="seed",
                                    tooltip="Seed of the random start and the jitter"),
        }  # fmt: skip
        self._channel.max = self._channels() - 1
        self._start_button = widgets.Button(
            description="Start", button_style="primary", tooltip="Run with these settings"
        )
        self._stop_button = widgets.Button(description="Stop", tooltip="Stop the running job")
        self._start_button.on_click(lambda _: self.start())
        self._stop_button.on_click(lambda _: self.stop())
        zoom = zoom_for(max(self.shape[-2:]), 2 * PICTURE_SIDE)
        self._zoom, side = zoom, max(self.shape[-2:]) * zoom
        self._picture = png_image(
            "the synthesised image, in the model's input space",
            css_class="zfw-synthesis-image", width=f"{side}px", height=f"{side}px",
        )  # fmt: skip
        self._caption = caption(tooltip=self._picture.help_text)
        self._curve, self._figure = self._plot()
        controls = widgets.VBox(
            [self._target, self._layer, self._channel, self._image, *self._sliders.values(),
             *self._robust_controls.values(),
             widgets.HBox([self._start_button, self._stop_button])],
            layout=widgets.Layout(flex="1 1 320px"),
        )  # fmt: skip
        left = widgets.VBox(
            [self._caption, self._picture], layout=widgets.Layout(margin="0 16px 0 0")
        )
        self.children = [
            self._mode_toggle,
            self._method_toggle,
            widgets.HBox([left, controls, self._figure], layout=full_width(flex_flow="row wrap")),
            widgets.HBox([self._progress], layout=full_width()),
            self.status_line,
        ]
        for trait, control in [
            ("mode", self._mode_toggle),
            ("target", self._target),
            ("method", self._method_toggle),
            ("channel", self._channel),
            ("image_index", self._image),
            *self._sliders.items(),
            *self._robust_controls.items(),
        ]:
            self._bind(trait, control)

    def _tick_figures(self) -> list[Figure]:
        figure = getattr(self, "_figure", None)
        return [] if figure is None else [figure]

    def _plot(self) -> tuple[Lines, Figure]:
        x, y = LinearScale(min=0.0, max=1.0), LinearScale(min=0.0, max=1.0)
        line = Lines(x=[0.0], y=[0.0], scales={"x": x, "y": y}, colors=[CURVE_COLOUR])
        text = {"fill": COLOURS["body"], "font-family": FONT}
        axes = [
            Axis(scale=x, label="step", tick_style=text, label_color="#888", tick_format="d"),
            Axis(scale=y, side="left", label="objective", tick_style=text, label_color="#888",
                 tick_format=".3~g", label_offset="44px"),
        ]  # fmt: skip
        figure = Figure(
            marks=[line], axes=axes, background_style={"fill": "transparent"},
            fig_margin={"top": 12, "bottom": 44, "left": 60, "right": 14},
            layout=widgets.Layout(width="300px", height="240px"),
        )  # fmt: skip
        figure.add_class("zfw-synthesis-curve")
        return line, figure

    # ----- validation ----------------------------------------------------------------------
    @refusing("mode")
    def _check_mode(self, mode: str) -> str:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
        if mode in ("invert", "dream") and not self.images:
            raise ValueError(f"{mode} needs an image: create the widget with images=...")
        return mode

    @refusing("target")
    def _check_target(self, target: int) -> int:
        return check_class(target, len(self.classes))

    @refusing("method")
    def _check_method(self, method: str) -> str:
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
        return method

    @refusing("layer")
    def _check_layer(self, layer: str) -> str:
        self.inspector.layer_index(layer)  # unknown layer: the core's message
        return layer

    @refusing("diversity")
    def _check_diversity(self, count: int) -> int:
        if not 1 <= count <= MAX_DIVERSITY:
            raise ValueError(f"must be an int in 1..{MAX_DIVERSITY}; got {count}")
        return count

    @refusing("channel")
    def _check_channel(self, channel: int) -> int:
        count = self._channels()
        return check_channel(channel, count, self.layer)

    @refusing("image_index")
    def _check_image(self, index: int) -> int:
        if not 0 <= index < max(len(self.images), 1):
            raise ValueError(f"image {index} is out of range: 0..{len(self.images) - 1}")
        return index

    @refusing(*SETTINGS, "diversity_weight")
    def _check_setting(self, value):
        if not math.isfinite(value):
            raise ValueError(f"must be a finite number; got {value}")
        if value < 0:
            raise ValueError(f"must not be negative; got {value}")
        return value

    def _channels(self) -> int:
        return int(self._shapes[self.inspector.layer_index(self.layer)][1])

    def _check_ready(self) -> None:
        if self.steps < 1:
            raise ValueError("steps must be at least 1")

    # ----- reacting ------------------------------------------------------------------------
    @traitlets.observe("mode", "layer", "method", "fourier", "diversity")
    def _choice_changed(self, change: dict) -> None:
        if change["name"] == "layer" and hasattr(self, "_channel"):
            if self.channel >= self._channels():
                self.set_trait("channel", 0)
            self._channel.max = self._channels() - 1
            self._layer.show(self.layer)
        if self._live:
            self._show_controls()

    def _robust(self) -> bool:
        """Whether the next run takes the Fourier + robust route (class and unit only)."""
        return self.method == "robust" and self.mode in ("class", "unit")

    def _show_controls(self) -> None:
        mode, robust, lecture = self.mode, self._robust(), not self._robust()
        visible = {
            self._method_toggle: mode in ("class", "unit"),
            self._target: mode == "class",
            self._layer: mode != "class",
            self._channel: mode == "unit",
            self._image: mode in ("invert", "dream") and len(self.images) > 1,
            self._sliders["l2"]: mode in ("class", "unit") and lecture,
            self._sliders["blur_every"]: mode in ("class", "unit") and lecture,
            self._sliders["tv_weight"]: mode == "invert",
            self._sliders["octaves"]: mode == "dream",
            self._sliders["jitter"]: mode != "invert" and lecture,
            self._robust_controls["fourier"]: robust,
            self._robust_controls["decorrelate"]: robust,
            self._robust_controls["transforms"]: robust,
            self._robust_controls["diversity"]: robust,
            self._robust_controls["diversity_weight"]: robust and self.diversity > 1,
        }
        for control, show in visible.items():
            control.layout.display = "" if show else "none"
        self._robust_controls["decorrelate"].disabled = not self.fourier

    # ----- running -------------------------------------------------------------------------
    def _key(self) -> tuple:
        what = {
            "class": (self.target,),
            "unit": (self.layer, self.channel),
            "invert": (self.layer, self.image_index),
            "dream": (self.layer, self.image_index),
        }
        if self._robust():
            robust = (self.steps, self.lr, self.seed, *(getattr(self, s) for s in ROBUST))
            return (self.mode, *what[self.mode], "robust", *robust)
        return (self.mode, *what[self.mode], *(getattr(self, s) for s in SETTINGS))  # fmt: skip

    def robust_settings(self) -> dict[str, Any]:
        """The arguments the Fourier + robust route passes to :func:`core.visualise` for the
        current state (what ``result.settings`` holds after the run).

        Example:
            >>> from zfwidgets import demo
            >>> d = demo.load()
            >>> w = Synthesis(d.model, mean=d.mean, shape=(1, 28, 28), method="robust")
            >>> w.fourier = False
            >>> type(w.robust_settings()["param"]).__name__
            'Pixels'
            >>> w.close()

        Raises:
            ValueError: a layer, channel or class the model does not have, or diversity on a
                layer without feature maps.
        """
        n = self.diversity
        if self.fourier:
            param: core.Parametrisation = core.Fourier(
                self.shape, batch=n, decorrelate=self.decorrelate,
                preprocessing=self.preprocessing)  # fmt: skip
        else:
            param = core.Pixels(self.shape, batch=n)
        if self.mode == "class":
            objective = core.as_objective(core.class_score(self.target))
        else:
            objective = core.channel(self.layer, self.channel)
        if n > 1:
            objective = objective + self.diversity_weight * core.diversity(self._diverse_layer())
        core.bind(self.inspector, objective, self.shape)  # its errors now, not in the worker
        transforms = core.standard() if self.transforms else None
        return dict(objective=objective, param=param, transforms=transforms, steps=self.steps,
                    lr=self.lr, seed=self.seed)  # fmt: skip

    def _diverse_layer(self) -> str:
        """The layer whose Gram matrices the diversity objective keeps apart: the unit's own
        (which must have maps), or for a class the last block with feature maps."""
        if self.mode == "unit":
            return self.layer
        maps = self.inspector.map_layers(self.shape)
        if not maps:
            raise ValueError("diversity needs a layer with feature maps; this model has none")
        return maps[-1]

    def _robust_probability(self, mode: str):
        """What the worker runs on a finished class picture: its robust class probability
        (one per image); nothing for other modes."""
        if mode != "class":
            return lambda result: None
        insp, target, prep = self.inspector, self.target, self.preprocessing

        def robust(result) -> list[float]:
            images = result.images if isinstance(result, core.Visualisation) else result.image
            p = core.robustness(insp, images, target, views=ROBUST_VIEWS, preprocessing=prep)
            return [float(v) for v in p]

        return robust

    def _runner(self):
        if self._robust():
            settings, insp = self.robust_settings(), self.inspector
            return lambda **loop: core.visualise(insp, **settings, progress=False, **loop)
        insp, mode, common = self.inspector, self.mode, dict(
            steps=self.steps, lr=self.lr, seed=self.seed, bounds=self.bounds, progress=False
        )  # fmt: skip
        if mode in ("class", "unit"):
            objective = (core.class_score(self.target) if mode == "class"
                         else core.unit(self.layer, self.channel))  # fmt: skip
            return lambda **loop: core.ascend(
                insp, objective, self.shape, l2=self.l2, blur_every=self.blur_every,
                jitter=self.jitter, **common, **loop)  # fmt: skip
        image = self.images[self.image_index]
        if mode == "invert":
            return lambda **loop: core.invert(
                insp, image, self.layer, tv_weight=self.tv_weight, **common, **loop)  # fmt: skip
        return lambda **loop: core.dream(
            insp, image, self.layer, octaves=self.octaves, jitter=self.jitter, **common, **loop
        )  # fmt: skip

    def _finished_fresh(self, key: tuple):
        def done(made: tuple) -> None:
            result, robust = made
            self.results[key] = result
            if robust is not None:
                self.robust_probabilities[key] = robust
            self._finished(key, result, cached=False)

        return done

    def _finished(self, key: tuple, result, cached: bool) -> None:
        self.result = result
        robust = self.robust_probabilities.get(key)
        said = "" if robust is None else " · robust p = " + ", ".join(f"{p:.2f}" for p in robust)
        images = result.images if isinstance(result, core.Visualisation) else result.image
        self._draw(key, images, result.objective, f"{self._what(key)} — done{said}")
        last = result.objective[-1]
        self.status_line.info(
            f"{self._what(key)}: {len(result.objective)} steps, objective {last:.4g}{said}"
            + (" (cached)" if cached else "")
        )

    def _what(self, key: tuple) -> str:
        """What the run of ``key`` (see :meth:`_key`) makes, for captions and the status."""
        mode, first, second = (*key[:2], key[2] if len(key) > 2 else None)
        how = " (Fourier + robust)" if "robust" in key else ""
        if mode == "class":
            return f"class {self.classes[first]}{how}"
        if mode == "unit":
            return f"{first} map {second}{how}"
        return f"{mode} {first}, image {second}"

    def _draw(self, key, image: Tensor | None, values: list[float], text: str = "") -> None:
        with errors_to(self.status_line, "picture"):
            if image is not None:
                self._picture.value = self._png(image)
            self._caption.say(text or "nothing made yet: press Start")
            if values:
                self._figure.axes[1].label = "feature distance" if key[0] == "invert" else (
                    "objective")  # fmt: skip
                self._draw_curve(values)

    def _png(self, image: Tensor) -> bytes:
        """One image (C, H, W) as today, or a batch (N, C, H, W) side by side; the picture's
        box is sized to it."""
        batch = image[None] if image.ndim == 3 else image
        shrink = 1.0 if len(batch) <= 2 else 2 / len(batch)  # 3 or 4: as wide as 2
        tiles = []
        for x in batch:
            pixels = render.input_image(x, preprocessing=self.preprocessing)
            zoom = max(1, round(shrink * self._zoom * self.shape[-1] / pixels.shape[1]))  # octaves
            tiles.append(render.upscale(pixels, zoom))
        picture = tiles[0] if len(tiles) == 1 else render.grid(tiles, cols=len(tiles), pad=GAP)
        height, width = picture.shape[:2]
        self._picture.layout.width, self._picture.layout.height = f"{width}px", f"{height}px"
        return render.to_png(picture)

    def _draw_curve(self, values: list[float]) -> None:
        # Explicit domains: bqplot's automatic domain of a figure whose data change after it is
        # displayed stays at the placeholder's in JupyterLab 4 (see InvarianceExplorer).
        x_scale, y_scale = self._curve.scales["x"], self._curve.scales["y"]
        low, high = min(values), max(values)
        room = 0.05 * (high - low) or 1e-3
        with x_scale.hold_sync():
            x_scale.min, x_scale.max = 0.0, float(max(len(values), 2))
        with y_scale.hold_sync():
            y_scale.min, y_scale.max = low - room, high + room
        x_axis, y_axis = self._figure.axes
        x_axis.tick_values = nice_ticks(0.0, float(len(values)), count=4, steps=(1, 2, 5))
        y_axis.tick_values = nice_ticks(low - room, high + room, count=4)
        with self._curve.hold_sync():
            self._curve.x, self._curve.y = list(range(1, len(values) + 1)), values


def _preprocessing(preprocessing: Any, mean: Any, std: Any, channels: int) -> Preprocessing | None:
    """Synthesis's ``preprocessing=`` or the older ``mean=`` and ``std=`` as one object."""
    if preprocessing is not None and std is not None:
        raise ValueError(
            "Synthesis: give either preprocessing= (it holds the std) or the older mean= and "
            "std=, not both"
        )
    if mean is None and std is not None:
        raise ValueError("Synthesis: std= needs mean= (or give preprocessing=)")
    prep = widget_preprocessing("Synthesis", preprocessing, mean, channels)
    if prep is not None and std is not None:
        try:
            prep = dataclasses.replace(prep, std=std)
        except (TypeError, ValueError) as err:
            raise ValueError(f"Synthesis: std={std!r:.60} cannot be used ({err})") from err
    return prep


def _bounds(prep: Preprocessing | None, shape: tuple[int, ...]) -> tuple[Tensor, Tensor] | None:
    """The model-input values of pixels 0 and 1 (per channel, or per pixel for a mean image)."""
    if prep is None:
        return None
    side = tuple(shape[-3:]) if prep.mean_image else (prep.channels, 1, 1)
    return prep.normalise(torch.zeros(side)), prep.normalise(torch.ones(side))
