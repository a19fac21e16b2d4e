"""Occlusion sensitivity (paper Fig. 7): slide a grey square over the image and watch.

For each position of the square we record (b) the total activation of the strongest feature
map of a layer (the map is chosen once, on the unoccluded image), (d) the probability of the
target class and (e) the most probable class; (c) is that map's projection with no occluder.
All positions run as batched, incremental forward passes on the inspector's device: each
occluder recomputes only the part of every layer it can change (see
:mod:`zfwidgets.core.incremental`), which gives the same maps as full forward passes.

Example:
    >>> from zfwidgets import Inspector, demo
    >>> d = demo.load()
    >>> insp = Inspector(d.model)
    >>> maps = occlusion_sweep(insp, d.dataset[0][0], size=8, stride=2)
    >>> maps.target_prob.shape     # one value per occluder position
    torch.Size([11, 11])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from zfwidgets.core.checks import as_int, check_channel, check_count, check_fill
from zfwidgets.core.incremental import OcclusionPlan
from zfwidgets.core.inspector import Inspector

__all__ = [
    "OcclusionCancelled",
    "OcclusionMaps",
    "OcclusionReading",
    "occlude",
    "occlusion_at",
    "occlusion_sweep",
]


class OcclusionCancelled(RuntimeError):
    """Raised when ``should_stop()`` asked a sweep to stop."""


@dataclass(frozen=True)
class OcclusionMaps:
    """The maps of one sweep; entry ``[i, j]`` is the occluder at ``(ys[i], xs[j])``.

    Attributes:
        ys, xs: top-left corners of the occluder positions (rows, columns).
        size, stride: occluder side and step in pixels.
        layer, channel: the feature map watched (strongest on the unoccluded image).
        target: the class whose probability is mapped.
        activity: (b) total activation of the map.
        target_prob: (d) probability of ``target``.
        top_class, top_prob: (e) most probable class and its probability.
        projection: (c) the map's strongest unit projected to pixels, occluder absent.
        base_activity, base_prob: the same readings on the unoccluded image.
    """

    ys: list[int]
    xs: list[int]
    size: int
    stride: int
    layer: str
    channel: int
    target: int
    activity: Tensor
    target_prob: Tensor
    top_class: Tensor
    top_prob: Tensor
    projection: Tensor
    base_activity: float
    base_prob: float


@dataclass(frozen=True)
class OcclusionReading:
    """What one occluder position gives: target probability, top-5, map activity."""

    target_prob: float
    top_classes: list[int]
    top_probs: list[float]
    activity: float


def _positions(length: int, size: int, stride: int) -> list[int]:
    return list(range(0, length - size + 1, stride))


def _check_square(shape: torch.Size, size: int, stride: int) -> None:
    for name, value in (("size", size), ("stride", stride)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"occluder {name} must be a positive int; got {value!r}")
    if size > min(shape[-2:]):
        raise ValueError(f"occluder size {size} is larger than the image ({shape[-2]}x{shape[-1]})")


def occlude(image: Tensor, row: int, col: int, size: int, fill: float | Tensor = 0.0) -> Tensor:
    """A copy of ``image`` (..., C, H, W), the ``size`` square at ``(row, col)`` set to ``fill``.

    ``fill`` is in model-input units: 0 is the data mean for mean-subtracted inputs (grey).

    Example:
        >>> occlude(torch.ones(1, 4, 4), 1, 2, 2)[0].int().tolist()
        [[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1]]
    """
    out = image.clone()
    patch = out[..., row : row + size, col : col + size]
    fill = torch.as_tensor(fill, dtype=out.dtype, device=out.device)
    if fill.ndim == 3:  # a per-pixel fill image: take the same square from it
        fill = fill[..., row : row + size, col : col + size]
    elif fill.ndim == 1:  # one value per channel
        fill = fill.view(-1, 1, 1)
    patch.copy_(fill.expand_as(patch))
    return out


def _strongest_channel(insp: Inspector, x, layer: str) -> int:
    act = insp.activations(x, layer)
    return int(act.flatten(1).amax(1).argmax()) if act.ndim == 3 else int(act.argmax())


def _readings(insp: Inspector, batch: Tensor, name: str, channel: int) -> tuple[Tensor, Tensor]:
    """Map activity (B,) and class probabilities (B, classes) for a batch of images."""
    last = insp.layers[-1]
    out = insp.run_batch(batch, [name, last])
    act = out[name][:, channel]
    activity = act.flatten(1).sum(1) if act.ndim == 3 else act
    return activity, torch.softmax(out[last], dim=1)


def occlusion_sweep(
    insp: Inspector,
    x,
    size: int,
    stride: int,
    fill: float | Tensor = 0.0,
    target: int | None = None,
    layer: str | None = None,
    batch_size: int = 64,
    callback: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    incremental: bool = True,
) -> OcclusionMaps:
    """Slides a ``size`` square with step ``stride`` over image ``x``; see the module doc.

    ``target`` defaults to the predicted class, ``layer`` to the last conv layer.
    ``callback(done, total)`` reports progress; ``should_stop()`` returning True cancels.
    ``incremental=False`` runs a full forward pass per position instead (same maps, slower;
    kept as the reference the incremental path is tested against).
    """
    img = insp.image(x)
    size, stride = as_int(size), as_int(stride)
    _check_square(img.shape, size, stride)
    check_fill(fill, img)
    batch_size = check_count("batch_size", batch_size)
    layer = layer or insp.default_layer(tuple(img.shape[1:]))
    name = insp.layer_name(layer)
    channel = _strongest_channel(insp, img, name)
    target = insp.target_class(img, target)
    ys, xs = _positions(img.shape[-2], size, stride), _positions(img.shape[-1], size, stride)
    corners = [(row, col) for row in ys for col in xs]
    index = insp.layer_index(name)
    if incremental:
        plan = OcclusionPlan(insp.graph, insp.current_weights(), img, size, corners)
    activity, probs = [], []
    for start in range(0, len(corners), batch_size):
        chunk = corners[start : start + batch_size]
        if incremental:
            totals, out = plan.run(range(start, start + len(chunk)), fill, {index: channel})
            a, p = totals[index], torch.softmax(out, dim=1)
        else:
            batch = torch.cat([occlude(img, row, col, size, fill) for row, col in chunk])
            a, p = _readings(insp, batch, name, channel)
        activity.append(a)
        probs.append(p)
        if callback is not None:
            callback(start + len(chunk), len(corners))
        if should_stop is not None and should_stop():
            raise OcclusionCancelled(f"sweep stopped after {start + len(chunk)} positions")
    probs = torch.cat(probs).view(len(ys), len(xs), -1).cpu()
    base_map = insp.activations(img, name)[channel]  # from the cached record: no new forward
    top_prob, top_class = probs.max(dim=2)
    return OcclusionMaps(
        ys=ys,
        xs=xs,
        size=size,
        stride=stride,
        layer=name,
        channel=channel,
        target=target,
        activity=torch.cat(activity).view(len(ys), len(xs)).cpu(),
        target_prob=probs[..., target],
        top_class=top_class,
        top_prob=top_prob,
        projection=insp.project(img, name, channel, method=insp.projection_method)[0],
        base_activity=float(base_map.sum()),
        base_prob=float(insp.predict(img)[target]),
    )


def occlusion_at(
    insp: Inspector,
    image,
    row: int,
    col: int,
    size: int,
    fill: float | Tensor = 0.0,
    target: int | None = None,
    layer: str | None = None,
    channel: int | None = None,
) -> OcclusionReading:
    """The readings with the occluder's top-left corner at ``(row, col)`` (for live interaction).

    ``channel`` defaults to the map strongest on the unoccluded image, as in the sweep.
    """
    img = insp.image(image)
    size, row, col = as_int(size), as_int(row), as_int(col)
    _check_square(img.shape, size, 1)
    check_fill(fill, img)
    rows, cols = img.shape[-2] - size, img.shape[-1] - size
    if not (0 <= row <= rows and 0 <= col <= cols):
        raise ValueError(
            f"occluder at ({row}, {col}) of size {size} leaves the {img.shape[-2]}x{img.shape[-1]} "
            f"image: row in 0..{rows}, column in 0..{cols}"
        )
    name = insp.layer_name(layer or insp.default_layer(tuple(img.shape[1:])))
    maps = insp.activations(img, name)
    if channel is None:
        channel = _strongest_channel(insp, img, name)
    elif maps.ndim == 3:  # an explicit map must exist: -1 must not quietly read the last one
        channel = check_channel(channel, maps.shape[0], layer or name)
    target = insp.target_class(img, target)
    activity, probs = _readings(insp, occlude(img, row, col, size, fill), name, channel)
    top = torch.topk(probs[0], min(5, probs.shape[1]))
    return OcclusionReading(
        target_prob=float(probs[0, target]),
        top_classes=[int(c) for c in top.indices],
        top_probs=[float(p) for p in top.values],
        activity=float(activity[0]),
    )
