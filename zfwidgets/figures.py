"""The paper's figures as PNG files, headless: ``zfwidgets figures --model demo --out DIR``.

Every picture is made with the same core calls the widgets make (``trace_projection``,
``mine`` + ``top_projections``, ``Evolution``, ``invariance_curves``, ``compare_architectures``,
``occlusion_sweep``, ``correspondence``) and drawn with :mod:`zfwidgets.core.render`; the
invariance curves are plotted with matplotlib.

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
    >>> paths = make_figures("demo", "figures", progress=False)   # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn
from tqdm import tqdm

from zfwidgets.core import Inspector, render
from zfwidgets.core.correspondence import correspondence
from zfwidgets.core.invariance import TRANSFORMS, UNITS, default_amounts, invariance_curves
from zfwidgets.core.mining import mine
from zfwidgets.core.occlusion import occlusion_sweep
from zfwidgets.core.top_views import top_projections

__all__ = ["FIGURES", "FigureData", "load_figure_data", "make_figures"]

TILE = 112  # side of most tiles, in pixels
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


@dataclass
class FigureData:
    """A model with the images the figures are made from.

    Attributes:
        name: the model's name (``demo``, ``alexnet``...).
        model: the model (never modified).
        images: (N, C, H, W) model inputs.
        labels: (N,) true classes.
        classes: class names.
        mean: the mean image subtracted from the inputs (for display), or None.
        run: the model's training run (``demo.snapshots()``), or None.
        train: a training set for the architecture comparison (the demo's), or None.
    """

    name: str
    model: nn.Module
    images: Tensor
    labels: Tensor
    classes: list[str]
    mean: Tensor | None = None
    run: Any = None
    train: Any = None
    notes: list[str] = field(default_factory=list)


def load_figure_data(model: str = "demo", data: str | None = None, limit: int = 1000) -> FigureData:
    """The model called ``model`` (a :func:`~zfwidgets.zoo.registry.get_model` name) with images.

    ``data``: ``None`` picks the demo digits for 28-pixel models and scikit-image's photos for
    ImageNet models; ``"demo"``, ``"photos"`` or a folder of class folders of pictures
    (torchvision ``ImageFolder``) choose explicitly. At most ``limit`` images are used.
    """
    from zfwidgets import demo
    from zfwidgets.zoo.registry import get_model

    if model == "demo":
        d = demo.load()
        net, shape = d.model, (1, 28, 28)
    else:
        net, shape = get_model(model, pretrained=shape_is_imagenet(model))
        d = None
    data = data or ("demo" if shape[-1] == 28 else "photos")
    if data == "demo":
        d = d or demo.load()
        if shape[0] != 1 or shape[-1] != 28:
            raise ValueError(f"the demo digits are (1, 28, 28) but {model} takes {shape}")
        # Evenly spread over the held-out split (sorted by class): every class is present.
        picks = torch.linspace(0, len(d.dataset) - 1, min(limit, len(d.dataset))).long()
        return FigureData(
            model,
            net,
            d.dataset.images[picks],
            d.dataset.labels[picks],
            d.classes,
            d.mean,
            run=demo.snapshots() if model == "demo" else None,
            train=d.train,
        )
    if data == "photos":
        return _photos(model, net, shape, limit)
    return _image_folder(model, net, shape, Path(data), limit)


def shape_is_imagenet(model: str) -> bool:
    """True for torchvision's ImageNet models (they are loaded with their pretrained weights)."""
    from zfwidgets.zoo.registry import MODEL_NAMES

    return model in MODEL_NAMES and model.startswith(("alexnet", "vgg"))


def _imagenet_names(model: str, count: int) -> list[str]:
    import torchvision

    try:
        names = list(torchvision.models.get_model_weights(model).DEFAULT.meta["categories"])
    except (ValueError, KeyError, AttributeError):
        names = []
    return names if len(names) == count else [str(i) for i in range(count)]


_IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
_IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225])[:, None, None]


def _prepare(picture: np.ndarray, shape: tuple[int, ...]) -> Tensor:
    """An RGB uint8 picture resized and centre-cropped to ``shape``, ImageNet-normalised."""
    channels, size = shape[0], shape[-1]
    img = Image.fromarray(picture).convert("RGB" if channels == 3 else "L")
    scale = size / min(img.size)
    img = img.resize((max(size, round(img.width * scale)), max(size, round(img.height * scale))))
    left, top = (img.width - size) // 2, (img.height - size) // 2
    img = img.crop((left, top, left + size, top + size))
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0)
    x = x.permute(2, 0, 1) if x.ndim == 3 else x[None]
    if channels == 3:
        x = (x - _IMAGENET_MEAN) / _IMAGENET_STD
    return x


def _photos(model: str, net: nn.Module, shape, limit: int) -> FigureData:
    from skimage import data as skdata

    names = ["chelsea", "astronaut", "coffee", "rocket", "coins", "camera", "cat", "horse"]
    pictures = []
    for name in names:
        picture = getattr(skdata, name)()
        picture = picture if picture.dtype == np.uint8 else (picture * 255).astype(np.uint8)
        pictures.append(_prepare(picture, shape))
    images = torch.stack(pictures[:limit])
    insp = Inspector(net, device="cpu")
    logits = insp.run_batch(images, [insp.layers[-1]])[insp.layers[-1]]
    labels = logits.argmax(1)  # photos have no labels: the model's own answer stands in
    classes = _imagenet_names(model, int(logits.shape[1]))
    return FigureData(model, net, images, labels.cpu(), classes, None)


def _image_folder(model: str, net: nn.Module, shape, folder: Path, limit: int) -> FigureData:
    from torchvision.datasets import ImageFolder

    if not folder.is_dir():
        raise ValueError(
            f"data must be 'demo', 'photos' or a folder of class folders; got {folder}"
        )
    dataset = ImageFolder(str(folder))
    if len(dataset) == 0:
        raise ValueError(f"no pictures found under {folder}")
    count = min(limit, len(dataset))
    images = torch.stack([_prepare(np.asarray(dataset[i][0]), shape) for i in range(count)])
    labels = torch.tensor([dataset[i][1] for i in range(count)])
    return FigureData(model, net, images, labels, list(dataset.classes), None)


# ----- drawing helpers ------------------------------------------------------------------------


def _enlarge(picture: np.ndarray, side: int = TILE) -> np.ndarray:
    """Nearest-neighbour resize of a uint8 picture to ``side`` x ``side``."""
    img = Image.fromarray(picture)
    return np.asarray(img.resize((side, side), Image.NEAREST))


def _save(picture: np.ndarray, path: Path) -> Path:
    path.write_bytes(render.to_png(picture))
    return path


def _shown(x: Tensor, mean: Tensor | None) -> np.ndarray:
    return render.input_image(x.cpu(), None if mean is None else mean.cpu())


def _conv_layers(insp: Inspector, fd: FigureData) -> list[str]:
    return insp.map_layers(tuple(fd.images[0].shape[-3:]))


# ----- the figures ----------------------------------------------------------------------------


def _signal_picture(signal, method: str) -> np.ndarray:
    return (
        render.saliency_image(signal) if method == "saliency" else render.projection_image(signal)
    )


def deconvnet_steps(insp: Inspector, fd: FigureData, out: Path) -> Path:
    """One unit of the last conv layer, traced down to the pixels step by step."""
    x = fd.images[0]
    layer = _conv_layers(insp, fd)[-1]
    channel = int(insp.activations(x, layer).flatten(1).amax(1).argmax())
    method = insp.projection_method  # saliency where the model has no rectifier rules
    trace = insp.trace_projection(x, layer, channel, method=method)
    tiles, names = [_enlarge(_shown(x, fd.mean))], ["input"]
    for step, signal in trace[1:]:
        if signal.ndim == 3 and step.kind in ("maxpool", "relu", "relu6", "conv"):
            summed = signal if signal.shape[0] in (1, 3) else signal.sum(0, keepdim=True)
            tiles.append(_enlarge(_signal_picture(summed.cpu(), method)))
            names.append(f"below {step.kind} {step.name}")
    return _save(render.grid(tiles, cols=min(len(tiles), 7), pad=4, labels=names), out)


def top9(insp: Inspector, fd: FigureData, layer: str, out: Path, maps: int = 6, mined=None):
    """Fig. 2: for the first ``maps`` maps, 9 projections (left) beside their patches (right)."""
    top = mined if mined is not None else mine(insp, fd.images, [layer], k=9, progress=False)
    count = min(maps, top.layers[insp.layer_name(layer)].values.shape[0])
    side = 48
    rows = []
    for channel in range(count):
        method = insp.projection_method
        entries = top_projections(insp, top, fd.images, layer, channel, method)
        projections = [
            _enlarge(_signal_picture(e.projection_patch.cpu(), method), side) for e in entries
        ]
        patches = []
        for e in entries:
            rows_, cols_ = e.box.slices
            mean = None if fd.mean is None else fd.mean[:, rows_, cols_]
            patches.append(_enlarge(_shown(e.patch, mean), side))
        blank = np.full((side, side, 3), render.BACKGROUND, np.uint8)
        while len(projections) < 9:
            projections.append(blank)
            patches.append(blank)
        left = render.grid(projections, cols=3, pad=2)
        right = render.grid(patches, cols=3, pad=2)
        rows.append(render.grid([left, right], cols=2, pad=6))
    labels = [f"{layer} map {c}" for c in range(count)]
    return _save(render.grid(rows, cols=min(3, len(rows)), pad=10, labels=labels), out)


def evolution(
    fd: FigureData, out: Path, maps: int = 4, progress: bool = False, cache_dir=None
) -> Path | None:
    """Fig. 4: projections of the first ``maps`` maps per layer over the snapshot epochs."""
    if fd.run is None:
        return None
    from zfwidgets.train import Evolution

    # The figure's own images are the probe (the demo's held-out digits): the same maps as the
    # other figures, and mining stays as quick as the rest.
    evo = Evolution(fd.run, probe=fd.images, progress=progress, device="cpu", cache_dir=cache_dir)
    tiles, labels = [], []
    for layer in evo.layers:
        for channel in range(maps):
            for epoch in fd.run.epochs:
                p = evo.projection(epoch, layer, channel)
                tiles.append(_enlarge(render.projection_image(p.cpu()), 56))
                labels.append(f"{layer}/{channel} ep {epoch}")
    cols = len(fd.run.epochs)
    return _save(render.grid(tiles, cols=cols, pad=3, labels=labels), out)


def invariance(insp: Inspector, fd: FigureData, kind: str, out: Path, count: int = 5) -> Path:
    """Fig. 5: distance at two layers and p(true class) against the amount, one line per image."""
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
    figure, axes = plt.subplots(1, len(series), figsize=(4 * len(series), 3.2), dpi=100)
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
    out.write_bytes(buffer.getvalue())
    return out


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


def architecture(
    fd: FigureData, out: Path, epochs: int = 1, train_limit: int | None = None, progress=False
):
    """Fig. 6: the small ZF net against the small Krizhevsky net, trained here for ``epochs``
    on the first ``train_limit`` training images (all by default)."""
    if fd.train is None:
        return None
    train_set = fd.train
    if train_limit is not None and train_limit < len(train_set):
        train_set = torch.utils.data.Subset(train_set, range(train_limit))
    from zfwidgets.core.selection import compare_architectures
    from zfwidgets.train import TrainConfig, train
    from zfwidgets.zoo import SmallKrizhevskyNet, SmallZFNet

    models = {}
    for name, build in (("ZF 5x5/1", SmallZFNet), ("Krizhevsky 9x9/2", SmallKrizhevskyNet)):
        torch.manual_seed(0)
        model = build()
        config = TrainConfig(epochs=epochs, seed=0, mean=None)  # digits: mean already removed
        train(model, train_set, config=config, device="cpu", progress=progress)
        models[name] = model.eval()
    report = compare_architectures(models, fd.images[:500], fd.labels[:500], device="cpu")
    tiles, labels = [], []
    for name in models:
        tiles.append(report.filter_grid(name, cols=8))
        labels.append(f"{name}: layer-1 filters")
        tiles.append(report.projection_grid(name, cols=8))
        labels.append(f"{name}: layer-2 projections")
    side = max(max(t.shape[:2]) for t in tiles)
    tiles = [_pad(t, side) for t in tiles]
    picture = render.grid(tiles, cols=2, pad=8, labels=labels)
    table = _text_picture(report.table(), picture.shape[1])
    return _save(np.concatenate([picture, table], axis=0), out)


def _pad(picture: np.ndarray, side: int) -> np.ndarray:
    rgb = render.to_rgb(picture)
    tile = np.full((side, side, 3), render.BACKGROUND, np.uint8)
    tile[: rgb.shape[0], : rgb.shape[1]] = rgb[:side, :side]
    return tile


def _text_picture(text: str, width: int) -> np.ndarray:
    from PIL import ImageDraw, ImageFont

    lines = text.splitlines() or [""]
    font = ImageFont.load_default()
    height = 16 * len(lines) + 12
    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        draw.text((8, 6 + 16 * i), line, fill=(0, 0, 0), font=font)
    return np.asarray(img)


def occlusion(insp: Inspector, fd: FigureData, out: Path, count: int = 3) -> Path:
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
    return _save(render.grid(tiles, cols=5, pad=4, labels=labels), out)


def correspondence_table(insp: Inspector, fd: FigureData, out_md: Path, out_csv: Path):
    """Table 1: Delta per layer for two parts of five images of one class, and random boxes."""
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
        for r in correspondence(insp, chosen, [corner] * len(chosen), size, layers, draws=10):
            rows.append(
                {
                    "part": part,
                    "layer": r.layer,
                    "delta_part": round(r.part, 4),
                    "delta_random": round(r.random_mean, 4),
                    "random_std": round(r.random_std, 4),
                }
            )
    with out_csv.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        f"# Correspondence (Table 1) on {len(chosen)} images of class {fd.classes[label]!r}",
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
    out_md.write_text("\n".join(lines) + "\n")
    return [out_md, out_csv]


# ----- the command ----------------------------------------------------------------------------


def make_figures(
    model: str = "demo",
    out: str | Path = "figures",
    data: str | None = None,
    limit: int = 1000,
    progress: bool = True,
    arch_epochs: int = 1,
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
    layers = _conv_layers(insp, fd)
    steps: list[tuple[str, Callable[[], Any]]] = [
        ("deconvnet steps", lambda: deconvnet_steps(insp, fd, out / "deconvnet_steps.png")),
        ("mining top 9", lambda: _top9_all(insp, fd, layers, out)),
        ("feature evolution", lambda: evolution(fd, out / "evolution.png")),
    ]
    steps += [
        (f"invariance {kind}", lambda k=kind: invariance(insp, fd, k, out / f"invariance_{k}.png"))
        for kind in TRANSFORMS
    ]
    steps += [
        (
            "architecture",
            lambda: architecture(fd, out / "architecture.png", arch_epochs, train_limit),
        ),
        ("occlusion", lambda: occlusion(insp, fd, out / "occlusion.png")),
        (
            "correspondence",
            lambda: correspondence_table(
                insp, fd, out / "correspondence.md", out / "correspondence.csv"
            ),
        ),
    ]
    written: list[Path] = []
    bar = tqdm(steps, desc="figures", unit="fig", disable=not progress)
    for name, step in bar:
        bar.set_postfix_str(name)
        started = time.perf_counter()
        result = step()
        if result is None:
            if log:
                log(f"skipped {name}: {model} has no training run / training set for it")
            continue
        paths = result if isinstance(result, list) else [result]
        written += paths
        if log:
            names = ", ".join(p.name for p in paths)
            bar.write(f"{names} ({time.perf_counter() - started:.1f} s)")
    return written


def _top9_all(insp: Inspector, fd: FigureData, layers: Sequence[str], out: Path) -> list[Path]:
    mined = mine(insp, fd.images, layers, k=9, progress=False)
    return [top9(insp, fd, layer, out / f"top9_{layer}.png", mined=mined) for layer in layers]
