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
import time
from collections.abc import Callable
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
from zfwidgets.core.mining import mine
from zfwidgets.core.occlusion import occlusion_sweep
from zfwidgets.core.preprocess import as_preprocessing
from zfwidgets.figure_data import FigureData, load_figure_data, shape_is_imagenet

__all__ = ["FIGURES", "FigureData", "load_figure_data", "make_figures", "shape_is_imagenet"]

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


def _shown(x: Tensor, mean: Tensor | None) -> np.ndarray:
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
    tiles, names = [_enlarge(_shown(x, fd.mean))], ["input"]
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


def top9(insp: Inspector, fd: FigureData, layer: str, maps: int = 6, mined=None) -> np.ndarray:
    """Fig. 2: for the first ``maps`` maps, 9 projections (left) beside their patches (right),
    two maps a row; each half titled, each map named above its pair
    (:func:`zfwidgets.core.panels.fig2_panel`)."""
    top = mined if mined is not None else mine(insp, fd.images, [layer], k=9, progress=False)
    count = min(maps, top.layers[insp.layer_name(layer)].values.shape[0])
    return panels.fig2_panel(
        insp,
        top,
        fd.images,
        layer,
        maps=list(range(count)),
        method=insp.projection_method,
        preprocessing=as_preprocessing(mean=fd.mean),
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

    images = [fd.images[i] for i in _spread(fd.labels, count)]
    labels = [int(fd.labels[i]) for i in _spread(fd.labels, count)]
    side = int(fd.images.shape[-2])
    curves = invariance_curves(insp, images, labels, kind, default_amounts(kind, side, 13))
    layers = list(curves.distances)
    series = [curves.distances[layer] for layer in layers] + [curves.true_prob]
    titles = [f"distance at {layer}" for layer in layers] + ["p(true class)"]
    # At most FIT_WIDTH pixels wide, so a notebook shows it at its own size (sharp).
    width = min(4 * len(series), FIT_WIDTH / 100)
    figure, axes = plt.subplots(1, len(series), figsize=(width, 3.2), dpi=100)
    for ax, values, title in zip(axes, series, titles, strict=True):
        for i, row in enumerate(values.numpy()):
            ax.plot(curves.amounts, row, marker="o", markersize=3, label=fd.classes[labels[i]])
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
    on the first ``train_limit`` training images (all by default).

    Both train as tutorial 08 does (batch 32, PyTorch's default initialisation): with the
    paper's recipe (batch 128, weights drawn at 1e-2) these small nets stay at chance for the
    first epochs, and an untrained pair would compare nothing.
    """
    if fd.train is None:
        return None
    train_set = fd.train
    if train_limit is not None and train_limit < len(train_set):
        train_set = torch.utils.data.Subset(train_set, range(train_limit))
    from zfwidgets.core.selection import compare_architectures
    from zfwidgets.train import train_briefly
    from zfwidgets.zoo import SmallKrizhevskyNet, SmallZFNet

    builds = {"ZF 5x5/1": SmallZFNet, "Krizhevsky 9x9/2": SmallKrizhevskyNet}
    models = {  # the digits already have their mean removed: train subtracts nothing
        name: train_briefly(
            build, train_set, epochs, 0, None, progress=progress, batch_size=32, init="default"
        )
        for name, build in builds.items()
    }
    # Every other image: the figure data is sorted by class, so its first half lacks classes.
    report = compare_architectures(models, fd.images[::2], fd.labels[::2], device="cpu")
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
    palette = render.class_colours(len(fd.classes))
    tiles, labels = [], []
    for i in _spread(fd.labels, count):
        x, label = fd.images[i], int(fd.labels[i])
        maps = occlusion_sweep(insp, x, size, stride, target=label)
        tiles += [
            _enlarge(_shown(x, fd.mean)),
            _enlarge(render.heatmap(maps.activity)),
            _enlarge(render.projection_image(maps.projection.cpu())),
            _enlarge(render.heatmap(maps.target_prob, 0.0, 1.0)),
            _enlarge(palette[maps.top_class.numpy()]),
        ]
        name = fd.classes[label]
        labels += [
            "(a) " + name,
            "(b) activity",
            "(c) projection",
            f"(d) p({name})",
            "(e) top class",
        ]
    return render.grid(tiles, cols=5, pad=4, labels=labels)


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


def make_figures(
    model: str = "demo",
    out: str | Path = "figures",
    data: str | None = None,
    limit: int = 1000,
    progress: bool = True,
    arch_epochs: int = ARCH_EPOCHS,
    train_limit: int | None = None,
    log: Callable[[str], None] | None = print,
) -> list[Path]:
    """Writes every figure for ``model`` into ``out``; returns the paths written, in order.

    Figures that need what the model lacks (a training run, the demo's training set) are
    skipped with a line in ``log``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fd = load_figure_data(model, data, limit)
    insp = Inspector(fd.model, device="auto")
    written: list[Path] = []
    steps = _figure_steps(insp, fd, arch_epochs, train_limit)
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


def _figure_steps(
    insp: Inspector, fd: FigureData, arch_epochs: int, train_limit: int | None
) -> list[tuple[str, Callable[[], Files]]]:
    """(name, draw) for every figure, in the order of :data:`FIGURES`."""

    def one(file: str, picture) -> Files:
        return None if picture is None else {file: picture}

    steps: list[tuple[str, Callable[[], Files]]] = [
        ("deconvnet steps", lambda: one("deconvnet_steps.png", deconvnet_steps(insp, fd))),
        ("mining top 9", lambda: _top9_all(insp, fd)),
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


def _top9_all(insp: Inspector, fd: FigureData) -> Files:
    layers = _conv_layers(insp, fd)
    mined = mine(insp, fd.images, layers, k=9, progress=False)
    return {f"top9_{layer}.png": top9(insp, fd, layer, mined=mined) for layer in layers}


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
