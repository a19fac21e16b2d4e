"""The paper's figures as PNG files, headless: ``zfwidgets figures --model demo --out DIR``.

Every picture is made with the same core calls the widgets make (``trace_projection``,
``mine`` + ``top_projections``, ``Evolution``, ``invariance_curves``, ``compare_architectures``,
``occlusion_sweep``, ``correspondence``) and drawn with :mod:`zfwidgets.core.render`; the
invariance curves are plotted with matplotlib. Each figure function returns its picture (a uint8
RGB array, or PNG bytes for the plots); only :func:`make_figures` writes files. The models and
images come from :mod:`zfwidgets.figure_data`, and the brief training of Fig. 6 from
:func:`zfwidgets.train.train_briefly`.

Files written (``<layer>`` for every conv layer):

- ``deconvnet_steps.png``: one unit's projection after every step down (Sec. 2.1);
- ``top9_<layer>.png``: the strongest 9 projections beside their patches, per map (Fig. 2);
- ``evolution.png``: projections of a few maps per layer over the training epochs (Fig. 4;
  models with a training run: the demo);
- ``invariance_translate.png``, ``invariance_scale.png``, ``invariance_rotate.png`` (Fig. 5);
- ``architecture.png``: layer-1 filters and layer-2 projections of two first layers (Fig. 6;
  the demo's small nets, trained briefly here);
- ``occlusion.png``: (a)-(e) of Fig. 7 for three images;
- ``correspondence.md`` and ``correspondence.csv``: Table 1 on the data.

On your own pictures: ``zfwidgets figures --model alexnet --pretrained --data DIR --limit 200``
reads DIR as a torchvision ImageFolder with the model's own preprocessing, takes the 200 images
in turn from its classes, draws inputs and patches in their true colours, names the model's
answers with its own classes (ImageNet's) and the folder's classes as the data set's labels.
``--pretrained`` falls back to random weights with one line on stderr when offline; ``--top
FILE`` draws Fig. 2 from a file written by ``TopK.save`` (checked against the model and data)
instead of mining; ``--maps 3,17,42`` or ``--maps random:6 --seed 1`` choose Fig. 2's maps.

Example:
    >>> from zfwidgets.core import Inspector
    >>> fd = load_figure_data("demo", limit=20)
    >>> occlusion(Inspector(fd.model, device="cpu"), fd, count=1).shape   # (a)-(e), one row
    (120, 584, 3)
    >>> paths = make_figures("demo", "figures", progress=False)   # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from tqdm import tqdm

from zfwidgets.core import Inspector, panels, render
from zfwidgets.core.correspondence import correspondence
from zfwidgets.core.invariance import TRANSFORMS, UNITS, default_amounts, invariance_curves
from zfwidgets.core.mining import TopK, data_fingerprint, mine
from zfwidgets.core.occlusion import occlusion_sweep
from zfwidgets.core.preprocess import as_preprocessing
from zfwidgets.figure_data import (
    FigureData,
    _stderr_line,
    load_figure_data,
    shape_is_imagenet,
    stratified,
)

__all__ = [
    "FIGURES",
    "FigureData",
    "MapChoice",
    "load_figure_data",
    "make_figures",
    "shape_is_imagenet",
]

TILE = 112  # side of most tiles, in pixels
# The widest a figure gets: a notebook cell's output is about 880 px wide at a 968 px notebook,
# and a wider picture is shrunk to it and goes soft.
FIT_WIDTH = 880
TOP9_TILE = 64  # about how big each Fig. 2 tile is: a 5x5 conv1 patch is enlarged 12 times
FIGURES = (
    "deconvnet_steps.png",
    "top9_{layer}.png",
    "evolution.png",
    "invariance_translate.png",
    "invariance_scale.png",
    "invariance_rotate.png",
    "architecture.png",
    "occlusion.png",
    "correspondence.md",
    "correspondence.csv",
)

# What a figure gives make_figures to write: file name -> picture (uint8 array, saved as PNG),
# PNG bytes, or text; None when the model lacks what the figure needs.
Files = dict[str, Any] | None


# ----- drawing helpers ------------------------------------------------------------------------


def _enlarge(picture: np.ndarray, side: int = TILE) -> np.ndarray:
    """A uint8 picture on a ``side`` x ``side`` tile, enlarged by a whole number (crisp)."""
    return panels.fit(picture, side)


def _shown(x: Tensor, fd: FigureData, box=None) -> np.ndarray:
    """An input (or the patch of it inside ``box``) as a picture in its true colours: through
    the model's preprocessing where known, else adding the mean image, else stretched."""
    prep = fd.preprocessing
    if prep is not None and not prep.mean_image:
        return prep.picture(x.cpu())
    mean = fd.mean
    if mean is not None and box is not None:
        rows, cols = box.slices
        mean = mean[:, rows, cols]
    return render.input_image(x.cpu(), None if mean is None else mean.cpu())


def _conv_layers(insp: Inspector, fd: FigureData) -> list[str]:
    return insp.map_layers(tuple(fd.images[0].shape[-3:]))


# ----- the figures ----------------------------------------------------------------------------


def _signal_picture(signal, method: str) -> np.ndarray:
    return (
        render.saliency_image(signal) if method == "saliency" else render.projection_image(signal)
    )


def deconvnet_steps(insp: Inspector, fd: FigureData) -> np.ndarray:
    """One unit of the last conv layer, traced down to the pixels step by step."""
    x = fd.images[0]
    layer = _conv_layers(insp, fd)[-1]
    channel = int(insp.activations(x, layer).flatten(1).amax(1).argmax())
    method = insp.projection_method  # saliency where the model has no rectifier rules
    trace = insp.trace_projection(x, layer, channel, method=method)
    tiles, names = [_enlarge(_shown(x, fd))], ["input"]
    for step, signal in trace[1:]:
        if signal.ndim == 3 and step.kind in _STEP_WORDS:
            summed = signal if signal.shape[0] in (1, 3) else signal.sum(0, keepdim=True)
            tiles.append(_enlarge(_signal_picture(summed.cpu(), method)))
            names.append(f"{len(names)}. {_STEP_WORDS[step.kind]}")  # short: legible labels
    picture = render.grid(tiles, cols=min(len(tiles), 7), pad=4, labels=names)
    title = f"{insp.short_name(layer)} map {channel}, its strongest unit traced down to pixels"
    return panels.titled(picture, title)


# What each step of the way down does (the paper's words), as the labels of deconvnet_steps.
_STEP_WORDS = {"relu": "rectify", "relu6": "rectify", "maxpool": "unpool", "conv": "filter"}


def top9(
    insp: Inspector,
    fd: FigureData,
    layer: str,
    maps: int | Sequence[int] = 6,
    mined: TopK | None = None,
    data: Any = None,
) -> np.ndarray:
    """Fig. 2: for the maps ``maps`` (a count: the first ones), 9 projections (left) beside
    their patches (right), two maps a row; each half titled, each map named above its pair
    (:func:`zfwidgets.core.panels.fig2_panel`).

    ``mined``: top-k results to draw from (mined here when None) and ``data`` the data set
    they were mined on (default the figure's images).
    """
    data = fd.images if data is None else data
    top = mined if mined is not None else mine(insp, data, [layer], k=9, progress=False)
    available = top.layers[insp.layer_name(layer)].values.shape[0]
    channels = list(range(min(maps, available))) if isinstance(maps, int) else list(maps)
    prep = fd.preprocessing if fd.preprocessing is not None else as_preprocessing(mean=fd.mean)
    return panels.fig2_panel(
        insp,
        top,
        data,
        layer,
        maps=channels,
        method=insp.projection_method,
        preprocessing=prep,
        tile=_top9_side(insp, fd, layer),
        text_size=panels.TEXT_SIZE,
    )


def _top9_side(insp: Inspector, fd: FigureData, layer: str) -> int:
    """The tile side of ``layer``'s patches: a whole-number multiple of the receptive field
    (within the image) near :data:`TOP9_TILE`, or the receptive field shrunk to it."""
    shape = tuple(fd.images[0].shape[-3:])
    size = insp.describe(shape)[insp.layer_index(layer)]["rf_size"] or shape[-1]
    size = min(size, shape[-2], shape[-1])
    return size * (TOP9_TILE // size) if size <= TOP9_TILE else TOP9_TILE


def evolution(
    fd: FigureData, maps: int = 4, progress: bool = False, cache_dir=None
) -> np.ndarray | None:
    """Fig. 4: projections of the first ``maps`` maps per layer over the snapshot epochs."""
    if fd.run is None:
        return None
    from zfwidgets.train import Evolution

    # The figure's own images are the probe (the demo's held-out digits): the same maps as the
    # other figures, and mining stays as quick as the rest.
    evo = Evolution(fd.run, probe=fd.images, progress=progress, device="cpu", cache_dir=cache_dir)
    epochs, side = fd.run.epochs, 100  # conv1's 5 px x 20, conv2's 11 px x 9, conv3's 23 x 4
    # Text in bands of its own, at a legible size: epochs above the columns, maps above rows.
    empty = np.zeros((0, side), np.uint8)
    header = render.grid([panels.titled(empty, f"epoch {e}") for e in epochs], len(epochs), 3)
    rows = [header]
    for layer in evo.layers:
        pictures = [
            [render.projection_image(evo.projection(e, layer, c).cpu()) for e in epochs]
            for c in range(maps)
        ]
        # One zoom per layer: a crop cut short by the image border keeps the layer's scale.
        # (None: crops larger than a tile are shrunk to fit instead)
        zoom = side // max(max(p.shape[:2]) for row in pictures for p in row) or None
        for channel, row in enumerate(pictures):
            tiles = [panels.fit(p, side, zoom=zoom) for p in row]
            rows.append(panels.titled(render.grid(tiles, len(epochs), 3), f"{layer} map {channel}"))
    return np.concatenate(rows, axis=0)


def invariance(insp: Inspector, fd: FigureData, kind: str, count: int = 5) -> bytes:
    """Fig. 5: distance at two layers and p(true class) against the amount, one line per image.

    Returns the matplotlib plot as PNG bytes.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    picks = _spread(fd.labels, count)
    images = [fd.images[i] for i in picks]
    targets = [int(fd.target_labels[i]) for i in picks]  # the model's classes
    side = int(fd.images.shape[-2])
    curves = invariance_curves(insp, images, targets, kind, default_amounts(kind, side, 13))
    layers = list(curves.distances)
    series = [curves.distances[layer] for layer in layers] + [curves.true_prob]
    measured = "p(true class)" if fd.targets is None else "p(the model's answer)"
    titles = [f"distance at {layer}" for layer in layers] + [measured]
    # At most FIT_WIDTH pixels wide, so a notebook shows it at its own size (sharp).
    width = min(4 * len(series), FIT_WIDTH / 100)
    figure, axes = plt.subplots(1, len(series), figsize=(width, 3.2), dpi=100)
    for ax, values, title in zip(axes, series, titles, strict=True):
        for i, row in enumerate(values.numpy()):
            ax.plot(curves.amounts, row, marker="o", markersize=3, label=_legend(fd, picks[i]))
        ax.set_title(title)
        ax.set_xlabel(UNITS[kind])
        ax.grid(alpha=0.3)
    axes[-1].set_ylim(-0.02, 1.02)
    axes[-1].legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def _legend(fd: FigureData, i: int) -> str:
    """Image ``i``'s data-set class, and the model's answer where that is another list."""
    name = fd.classes[int(fd.labels[i])]
    if fd.targets is None:
        return name
    return f"{name}: {_short(fd.target_names[int(fd.targets[i])])}"


def _short(name: str, width: int = 18) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def _spread(labels: Tensor, count: int) -> list[int]:
    """Indices of up to ``count`` images of different classes (first of each), then any."""
    seen, picks = set(), []
    for i, label in enumerate(labels.tolist()):
        if label not in seen:
            seen.add(label)
            picks.append(i)
        if len(picks) == count:
            return picks
    extra = [i for i in range(len(labels)) if i not in picks]
    return (picks + extra)[:count]


ARCH_EPOCHS = 5  # Fig. 6's training: both nets well above chance on the digits (0.97, 0.92)


def architecture(
    fd: FigureData,
    epochs: int = ARCH_EPOCHS,
    train_limit: int | None = None,
    progress: bool = False,
) -> np.ndarray | None:
    """Fig. 6: the small ZF net against the small Krizhevsky net, trained here for ``epochs``
    on ``train_limit`` training images spread over every class (all by default: the demo's
    training split is sorted by class, so its first 400 are all 0s).

    Both train as tutorial 08 does (batch 32, PyTorch's default initialisation): with the
    paper's recipe (batch 128, weights drawn at 1e-2) these small nets stay at chance for the
    first epochs, and an untrained pair would compare nothing.
    """
    if fd.train is None:
        return None
    train_set = fd.train
    from zfwidgets.core.selection import compare_architectures
    from zfwidgets.train import train_briefly
    from zfwidgets.train.data import subset_evenly

    if train_limit is not None:
        train_set = subset_evenly(train_set, train_limit)
    from zfwidgets.zoo import SmallKrizhevskyNet, SmallZFNet

    builds = {"ZF 5x5/1": SmallZFNet, "Krizhevsky 9x9/2": SmallKrizhevskyNet}
    models = {  # the digits already have their mean removed: train subtracts nothing
        name: train_briefly(
            build, train_set, epochs, 0, None, progress=progress, batch_size=32, init="default"
        )
        for name, build in builds.items()
    }
    # Half the images, taken in turn from each class, so every class is present whatever the
    # data's order (the demo digits are interleaved by class, a folder's sorted by class).
    half = stratified(fd.labels.tolist(), (len(fd.labels) + 1) // 2)
    report = compare_architectures(models, fd.images[half], fd.labels[half], device="cpu")
    return architecture_picture(report)


ARCH_PANEL = 400  # about how wide each panel of Fig. 6 is, in pixels
ARCH_PROJECTIONS = 16  # layer-2 projections shown per model: 4 x 4, each large enough to judge


def architecture_picture(report) -> np.ndarray:
    """Fig. 6 from a :func:`~zfwidgets.core.selection.compare_architectures` report: a row of
    layer-1 filters (6b, 6c) over a row of layer-2 projections (6d, 6e), one column per model,
    each panel titled, every pixel enlarged by a whole number; the table of measures below.

    The projections are the first :data:`ARCH_PROJECTIONS` maps', each cut to the square around
    its non-zero pixels, so the fine detail that aliasing adds is many screen pixels wide.
    """
    names = list(report.filters)
    filters, projections = [], []
    for name in names:
        weights = report.filters[name]
        zoom = max(1, (ARCH_PANEL - 18) // (8 * int(weights.shape[-1])))  # 8 columns, 9 gaps
        grid = report.filter_grid(name, cols=8, scale=zoom)
        filters.append(panels.titled(grid, f"{name}: layer-1 filters"))
        cut = panels.crop_to_support(report.projections[name][:ARCH_PROJECTIONS]).shape[-1]
        zoom = max(1, (ARCH_PANEL - 10) // (4 * int(cut)))
        grid = report.projection_grid(name, 4, zoom, crop=True, count=ARCH_PROJECTIONS)
        projections.append(panels.titled(grid, f"{name}: layer-2 projections"))
    cell = max(p.shape[1] for p in filters + projections)
    rows = [
        render.grid([_pad(p, (max(q.shape[0] for q in row), cell)) for p in row], len(names), 12)
        for row in (filters, projections)
    ]
    picture = np.concatenate(rows, axis=0)
    table = _text_picture(report.table(), picture.shape[1])
    return np.concatenate([picture, table], axis=0)


def _pad(picture: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``picture`` in the top-left corner of a ``size`` (h, w) tile of the background grey."""
    rgb = render.to_rgb(picture)
    tile = np.full((*size, 3), render.BACKGROUND, np.uint8)
    tile[: rgb.shape[0], : rgb.shape[1]] = rgb[: size[0], : size[1]]
    return tile


def _text_picture(text: str, width: int) -> np.ndarray:
    from PIL import ImageDraw, ImageFont

    lines = text.splitlines() or [""]
    try:  # 15 px: legible in a lecture hall (the bitmap default is about 8 px)
        font = ImageFont.load_default(size=15)
    except (TypeError, OSError, ImportError):
        font = ImageFont.load_default()
    step = 21
    height = step * len(lines) + 12
    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        draw.text((8, 6 + step * i), line, fill=(0, 0, 0), font=font)
    return np.asarray(img)


def occlusion(insp: Inspector, fd: FigureData, count: int = 3) -> np.ndarray:
    """Fig. 7: (a) image, (b) activity, (c) projection, (d) p(true class), (e) top class."""
    side = int(fd.images.shape[-1])
    size, stride = max(1, round(side / 4)), max(1, round(side / 14))
    palette = None  # one colour per class of the model's: what (e) colours
    tiles, labels = [], []
    for i in _spread(fd.labels, count):
        x, target = fd.images[i], int(fd.target_labels[i])
        maps = occlusion_sweep(insp, x, size, stride, fill=_fill(fd), target=target)
        if palette is None:
            palette = render.class_colours(max(len(fd.target_names), int(maps.top_class.max()) + 1))
        tiles += [
            _enlarge(_shown(x, fd)),
            _enlarge(render.heatmap(maps.activity)),
            _enlarge(render.projection_image(maps.projection.cpu())),
            _enlarge(render.heatmap(maps.target_prob, 0.0, 1.0)),
            _enlarge(palette[maps.top_class.numpy()]),
        ]
        name = _short(fd.target_names[target])
        labels += [
            "(a) " + _short(fd.classes[int(fd.labels[i])]),
            "(b) activity",
            "(c) projection",
            f"(d) p({name})",
            "(e) top class",
        ]
    return render.grid(tiles, cols=5, pad=4, labels=labels)


def _fill(fd: FigureData) -> float:
    """The occluder's value in model units (the mean: 0)."""
    return 0.0 if fd.preprocessing is None else fd.preprocessing.fill


def correspondence_table(insp: Inspector, fd: FigureData) -> tuple[str, bytes]:
    """Table 1: Delta per layer for two parts of five images of one class, and random boxes.

    Returns ``(markdown, csv)``: the table to read, and its rows as CSV bytes.
    """
    label = int(torch.mode(fd.labels).values)
    chosen = [fd.images[i] for i in range(len(fd.labels)) if int(fd.labels[i]) == label][:5]
    side = int(fd.images.shape[-1])
    size = max(1, round(side * 0.28))
    parts = {
        "top centre": (round(side * 0.15), (side - size) // 2),
        "centre": ((side - size) // 2, (side - size) // 2),
    }
    layers = insp.blocks[:-1]
    rows = []
    for part, corner in parts.items():
        found = correspondence(insp, chosen, [corner] * len(chosen), size, layers, draws=10)
        rows += [_correspondence_row(part, r) for r in found]
    title = f"on {len(chosen)} images of class {fd.classes[label]!r}"
    return _correspondence_markdown(rows, title, size), _csv_bytes(rows)


def _correspondence_row(part: str, r) -> dict[str, Any]:
    return {
        "part": part,
        "layer": r.layer,
        "delta_part": round(r.part, 4),
        "delta_random": round(r.random_mean, 4),
        "random_std": round(r.random_std, 4),
    }


def _correspondence_markdown(rows: list[dict[str, Any]], title: str, size: int) -> str:
    lines = [
        f"# Correspondence (Table 1) {title}",
        "",
        f"Mask {size}x{size} pixels; Delta = mean normalised Hamming distance between the signs "
        "of the feature changes (lower = more consistent); random: 10 random boxes.",
        "",
        "| part | layer | Delta part | Delta random | random std |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['part']} | {r['layer']} | {r['delta_part']:.3f} | {r['delta_random']:.3f} | "
        f"{r['random_std']:.3f} |"
        for r in rows
    ]
    return "\n".join(lines) + "\n"


def _csv_bytes(rows: list[dict[str, Any]]) -> bytes:
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode()


# ----- the command ----------------------------------------------------------------------------


@dataclass(frozen=True)
class MapChoice:
    """Which feature maps Fig. 2 shows per layer: the ``picked`` maps, else ``random`` maps
    drawn per layer (seeded by ``seed`` and the layer's name), else the first ``first``.

    Example:
        >>> MapChoice.parse("3,17,42").for_layer("conv2", 64)
        [3, 17, 42]
        >>> MapChoice.parse("random:3", seed=1).for_layer("conv2", 64)
        [6, 18, 31]
        >>> MapChoice().for_layer("conv1", 4)
        [0, 1, 2, 3]
    """

    picked: tuple[int, ...] = ()
    random: int = 0
    seed: int = 0
    first: int = 6

    @classmethod
    def parse(cls, text: str | None, seed: int = 0) -> MapChoice:
        """``"3,17,42"``, ``"random:6"`` or None (the first 6); ValueError otherwise."""
        if text is None:
            return cls(seed=seed)
        spec = text.strip()
        try:
            if spec.startswith("random:"):
                count = int(spec.removeprefix("random:"))
                if count >= 1:
                    return cls(random=count, seed=seed)
            else:
                picked = tuple(int(v) for v in spec.split(","))
                if picked and min(picked) >= 0:
                    return cls(picked=tuple(dict.fromkeys(picked)), seed=seed)
        except ValueError:
            pass
        raise ValueError(
            f"--maps takes map numbers such as 3,17,42 or random:N (N >= 1); got {text!r}"
        )

    def for_layer(self, layer: str, channels: int) -> list[int]:
        """The maps shown for ``layer``, which has ``channels`` maps."""
        if self.picked:
            return list(self.picked)
        if self.random:
            draw = random.Random(f"{self.seed}:{layer}")
            return sorted(draw.sample(range(channels), min(self.random, channels)))
        return list(range(min(self.first, channels)))

    def check(self, channels: dict[str, int]) -> None:
        """Refuses picked maps that some layer (name -> its number of maps) lacks."""
        if not self.picked or not channels:
            return
        layer, fewest = min(channels.items(), key=lambda item: item[1])
        wrong = [m for m in self.picked if m >= fewest]
        if wrong:
            raise ValueError(
                f"--maps {','.join(map(str, wrong))} out of range: maps must be in "
                f"0..{fewest - 1} ({layer} has {fewest} maps)"
            )


def make_figures(
    model: str = "demo",
    out: str | Path = "figures",
    data: str | None = None,
    limit: int = 1000,
    progress: bool = True,
    arch_epochs: int = ARCH_EPOCHS,
    train_limit: int | None = None,
    log: Callable[[str], None] | None = print,
    pretrained: bool = False,
    top: str | Path | None = None,
    maps: MapChoice | str | None = None,
    seed: int = 0,
    warn: Callable[[str], None] | None = _stderr_line,
) -> list[Path]:
    """Writes every figure for ``model`` into ``out``; returns the paths written, in order.

    ``data``, ``limit`` and ``pretrained`` choose the images and weights
    (:func:`~zfwidgets.figure_data.load_figure_data`; ``warn`` gets the line saying that
    ImageNet weights could not be had). ``top``: a file written by
    :meth:`~zfwidgets.core.mining.TopK.save` for this model, mined on the figure's images or
    on the whole image folder, drawn instead of mining. ``maps``: the maps of Fig. 2
    (:class:`MapChoice` or its text, ``"3,17,42"`` / ``"random:6"`` drawn with ``seed``).
    Figures that need what the model lacks (a training run, the demo's training set) are
    skipped with a line in ``log``. Everything refused raises ValueError before any figure
    is drawn.
    """
    choice = maps if isinstance(maps, MapChoice) else MapChoice.parse(maps, seed)
    out = _writable_folder(Path(out))
    fd = load_figure_data(model, data, limit, pretrained=pretrained, warn=warn)
    insp = Inspector(fd.model, device="auto")
    layers = _conv_layers(insp, fd)
    choice.check({layer: _channels(insp, fd, layer) for layer in layers})
    mined = None if top is None else _load_top(Path(top), insp, fd, layers)
    written: list[Path] = []
    steps = _figure_steps(insp, fd, arch_epochs, train_limit, choice, mined, log)
    bar = tqdm(steps, desc="figures", unit="fig", disable=not progress)
    for name, draw in bar:
        bar.set_postfix_str(name)
        started = time.perf_counter()
        files = draw()
        if files is None:
            if log:
                log(f"skipped {name}: {model} has no training run / training set for it")
            continue
        paths = [_write(out / file, content) for file, content in files.items()]
        written += paths
        if log:
            names = ", ".join(p.name for p in paths)
            bar.write(f"{names} ({time.perf_counter() - started:.1f} s)")
    return written


def _writable_folder(out: Path) -> Path:
    """``out``, made if missing; ValueError (one line) where it cannot be written to."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"cannot write figures to {out}: {err.strerror or err}") from err
    if not os.access(out, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write figures to {out}: permission denied")
    return out


def _channels(insp: Inspector, fd: FigureData, layer: str) -> int:
    """How many feature maps ``layer`` has."""
    rows = insp.describe(tuple(fd.images.shape[-3:]))
    return int(rows[insp.layer_index(layer)]["shape"][0])


# A saved top-k file and the data set it was mined on.
Mined = tuple[TopK, Any]


def _load_top(path: Path, insp: Inspector, fd: FigureData, layers: list[str]) -> Mined:
    """Results saved by TopK.save, checked against the model and the data: mined on the
    figure's images, or on the whole folder they come from."""
    try:
        top = TopK.load(path, insp)  # ValueError naming the file: not one, other model
    except OSError as err:
        raise ValueError(f"cannot read --top {path}: {err.strerror or err}") from err
    candidates = [fd.images] + ([fd.dataset] if fd.dataset is not None else [])
    data = next(
        (
            d
            for d in candidates
            if len(d) == top.count and data_fingerprint(d) == top.data_fingerprint
        ),
        None,
    )
    if data is None:
        whole = "" if fd.dataset is None else f" (or all {len(fd.dataset)} of the folder)"
        raise ValueError(
            f"{path} was mined on a different data set: mine the {len(fd.images)} images "
            f"the figures use{whole} with the model's preprocessing"
        )
    if not any(insp.layer_name(layer) in top.layers for layer in layers):
        raise ValueError(f"{path} holds none of the conv layers {', '.join(layers)}")
    return top, data


def _figure_steps(
    insp: Inspector,
    fd: FigureData,
    arch_epochs: int,
    train_limit: int | None,
    choice: MapChoice | None = None,
    mined: Mined | None = None,
    log: Callable[[str], None] | None = None,
) -> list[tuple[str, Callable[[], Files]]]:
    """(name, draw) for every figure, in the order of :data:`FIGURES`."""

    def one(file: str, picture) -> Files:
        return None if picture is None else {file: picture}

    steps: list[tuple[str, Callable[[], Files]]] = [
        ("deconvnet steps", lambda: one("deconvnet_steps.png", deconvnet_steps(insp, fd))),
        ("mining top 9", lambda: _top9_all(insp, fd, choice or MapChoice(), mined, log)),
        ("feature evolution", lambda: one("evolution.png", evolution(fd))),
    ]
    steps += [
        (f"invariance {kind}", lambda k=kind: {f"invariance_{k}.png": invariance(insp, fd, k)})
        for kind in TRANSFORMS
    ]
    steps += [
        (
            "architecture",
            lambda: one("architecture.png", architecture(fd, arch_epochs, train_limit)),
        ),
        ("occlusion", lambda: one("occlusion.png", occlusion(insp, fd))),
        ("correspondence", lambda: _correspondence_files(insp, fd)),
    ]
    return steps


def _top9_all(
    insp: Inspector,
    fd: FigureData,
    choice: MapChoice,
    mined: Mined | None = None,
    log: Callable[[str], None] | None = None,
) -> Files:
    layers = _conv_layers(insp, fd)
    if mined is None:
        top, data = mine(insp, fd.images, layers, k=9, progress=False), fd.images
    else:
        top, data = mined
        missing = [layer for layer in layers if insp.layer_name(layer) not in top.layers]
        if missing and log:
            log(f"skipped top9 of {', '.join(missing)}: not in the top-k file")
        layers = [layer for layer in layers if layer not in missing]
    return {
        f"top9_{layer}.png": top9(
            insp, fd, layer, choice.for_layer(layer, _channels(insp, fd, layer)), top, data
        )
        for layer in layers
    }


def _correspondence_files(insp: Inspector, fd: FigureData) -> Files:
    markdown, table = correspondence_table(insp, fd)
    return {"correspondence.md": markdown, "correspondence.csv": table}


def _write(path: Path, content: np.ndarray | bytes | str) -> Path:
    """Write a picture (as PNG), bytes or text to ``path``."""
    if isinstance(content, np.ndarray):
        path.write_bytes(render.to_png(content))
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path
