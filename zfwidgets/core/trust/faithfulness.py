"""Deletion and insertion (Petsiuk et al., BMVC 2018): does the map point at what the model uses?

Pixels are taken in order of the map's importance (heat maps by value, picture signals by
magnitude). Deletion sets the first ``k/steps`` of them to the occluder fill and reads the class
probability; insertion puts them back into a blurred copy of the image. A faithful map makes the
deletion curve fall fast (low AUC) and the insertion curve rise fast (high AUC). Several steps
run in one batched forward pass through the inspector, channels-last (:func:`class_scores`),
up to the classifier, which then runs once over every step (:func:`tail_start`); the first
deletion step and the last insertion step are the image itself, read from the inspector.
``fill="road"`` imputes the removed pixels from their neighbours instead (ROAD, Rong et al.
2022; :func:`road_impute`): one sparse solve per step image (0.06-0.4 s at 224 px on one
CPU core), so slower than a plain fill.

Why no incremental recomputation (as occlusion does): consecutive steps change pixels
scattered over the whole image (in the map's order), so the region a step's change reaches
covers nearly every position after the first layers; on AlexNet the first convolution, the
only layer where reuse would pay, is about a tenth of the work, and adding each changed pixel's
share to its outputs (it is linear) costs as much memory traffic as the convolution itself
(tried: 53 ms against 41-63 ms for a batch of 32).

Example:
    >>> from zfwidgets import Inspector, demo
    >>> d = demo.load()
    >>> insp = Inspector(d.model)
    >>> c = deletion_insertion(insp, d.dataset[0][0], "gradcam", steps=10)
    >>> c.deletion.shape, c.fractions[-1].item()
    (torch.Size([11]), 1.0)
    >>> 0.0 <= c.deletion_auc <= 1.0
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from zfwidgets.core.checks import as_int, check_count, check_fill
from zfwidgets.core.inspector import Inspector
from zfwidgets.core.layers import evaluate_in_place, narrow_after, pool_geometry, run_graph
from zfwidgets.core.trust.maps import check_trust_method, class_map, heat_map
from zfwidgets.core.trust.road import road_impute

__all__ = [
    "TAIL_BYTES",
    "Curves",
    "auc",
    "blurred",
    "check_steps",
    "class_scores",
    "deletion_insertion",
    "is_road",
    "pixel_order",
    "step_counts",
    "tail_start",
]


@dataclass(frozen=True)
class Curves:
    """Deletion and insertion curves of one map.

    Attributes:
        fractions: (steps + 1,) share of the pixels changed, 0 to 1.
        deletion: class probability with that share of pixels set to the fill.
        insertion: class probability with that share of pixels put into the blurred image.
        deletion_auc, insertion_auc: areas under the curves (trapezoid rule, x in [0, 1]).
        target: the class whose probability is read.
        method: the method whose map ordered the pixels (None: a map was given).
    """

    fractions: Tensor
    deletion: Tensor
    insertion: Tensor
    deletion_auc: float
    insertion_auc: float
    target: int
    method: str | None


def auc(fractions: Tensor, values: Tensor) -> float:
    """Area under ``values`` over ``fractions`` by the trapezoid rule.

    Example:
        >>> auc(torch.tensor([0.0, 0.5, 1.0]), torch.tensor([1.0, 0.5, 0.0]))
        0.5
    """
    x = fractions.detach().double().cpu()
    y = values.detach().double().cpu()
    return float(((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2).sum())


def check_steps(steps: Any, pixels: int) -> int:
    """``steps`` as an int in 1..``pixels``: each step must change at least one pixel (more
    steps only repeat forward passes: 10**6 steps on a 28x28 image would run 2,000,002).

    Example:
        >>> check_steps(100, 784)
        100
        >>> try:
        ...     check_steps(10**6, 784)
        ... except ValueError as err:
        ...     print(str(err)[:50])
        steps=1000000 is more than the image's 784 pixels;
    """
    steps = as_int(steps)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1 (the number of equal shares); got {steps!r}")
    if steps > pixels:
        raise ValueError(
            f"steps={steps} is more than the image's {pixels} pixels; each step changes at least "
            f"one pixel: use 1..{pixels} ({min(100, pixels)} is usual)"
        )
    return steps


def step_counts(pixels: int, steps: int) -> list[int]:
    """How many pixels are changed at each of the ``steps + 1`` steps: ``ceil(k * pixels / steps)``.

    Example:
        >>> step_counts(10, 4)
        [0, 3, 5, 8, 10]
    """
    return [-(-k * pixels // steps) for k in range(steps + 1)]


def pixel_order(saliency: Tensor, by_magnitude: bool) -> Tensor:
    """Each pixel's rank (0 = most important) in a (H, W) map; ties keep raster order."""
    flat = saliency.detach().flatten().float()
    flat = flat.abs() if by_magnitude else flat
    order = torch.argsort(flat, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order), device=order.device)
    return rank.view(saliency.shape)


def blurred(img: Tensor, sigma: float | None = None) -> Tensor:
    """``img`` (1, C, H, W) blurred by a gaussian (default sigma: 5 px per 224, at least 1)."""
    h, w = img.shape[-2:]
    sigma = max(1.0, 5.0 * min(h, w) / 224) if sigma is None else float(sigma)
    if not math.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"blur_sigma must be a positive number; got {sigma!r}")
    radius = min(int(math.ceil(2 * sigma)), (min(h, w) - 1))
    r = torch.arange(-radius, radius + 1, dtype=img.dtype, device=img.device)
    g = torch.exp(-(r**2) / (2 * sigma**2))
    g = g / g.sum()
    c = img.shape[1]
    out = F.pad(img, (radius, radius, 0, 0), mode="reflect") if radius else img
    out = F.conv2d(out, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    out = F.pad(out, (0, 0, radius, radius), mode="reflect") if radius else out
    return F.conv2d(out, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def _fill_image(fill, img: Tensor) -> Tensor:
    values = torch.as_tensor(fill, dtype=img.dtype, device=img.device)
    if values.ndim == 1:
        values = values.view(-1, 1, 1)
    return values.expand(img.shape[1:]).unsqueeze(0)


# Steps that take a channels-last tensor as it is (and give one back); any other step gets
# its 4-D inputs made plain contiguous first (a view or a generic step may need that).
_CHANNELS_LAST_SAFE = frozenset({"conv", "relu", "relu6", "bn", "dropout", "identity", "lrn"})


def _channels_last_step(step, w, env, kept):
    """One step of :func:`class_scores`: as the inspector computes it, in channels-last."""
    x = env.get(step.node.args[0]) if step.node.args else None
    channels_last = isinstance(x, Tensor) and x.ndim == 4 and not x.is_contiguous()
    pool = step.module if step.kind == "maxpool" else None
    if pool is not None and channels_last and not pool.return_indices:
        g = pool_geometry(pool)  # layers.max_pool would return it NCHW: one copy more
        return F.max_pool2d(x, g.kernel, g.stride, g.padding, g.dilation, g.ceil_mode)
    if step.kind not in _CHANNELS_LAST_SAFE:
        for node in step.node.all_input_nodes:
            value = env.get(node)
            if isinstance(value, Tensor) and value.ndim == 4 and not value.is_contiguous():
                env[node] = value.contiguous()
    return evaluate_in_place(step, w, env, kept)


# The most bytes of classifier inputs held to run the classifier once over all step images.
TAIL_BYTES = 2**26


def class_scores(insp: Inspector, batch: Tensor) -> Tensor:
    """The class scores of a batch of images (N, C, H, W) of a shape the inspector verified,
    run channels-last: the CPU's (oneDNN) and the GPU's convolutions and max-pools take it
    without reordering every layer's input and output (AlexNet's 224-px batches: about 1.5x
    faster). Same values as ``insp.run_batch(batch, [insp.layers[-1]])`` (tested to 1e-5).

    Example:
        >>> from zfwidgets import Inspector, demo
        >>> insp = Inspector(demo.load().model)
        >>> x = insp.image(demo.load().dataset[0][0])
        >>> last = insp.layers[-1]
        >>> torch.allclose(class_scores(insp, x), insp.run_batch(x, [last])[last], atol=1e-5)
        True
    """
    return _scores(insp, [batch], len(batch), tuple(batch.shape[1:]))


def _scores(insp: Inspector, batches, count: int, image: tuple) -> Tensor:
    """The class scores of ``count`` images of shape ``image`` given in ``batches``: each
    batch through the trunk, then the classifier once over all of them where its inputs fit
    in ``TAIL_BYTES`` (:func:`tail_start`), else each batch through the whole network."""
    split = tail_start(insp)
    if split is not None and math.prod(insp.shapes(image)[split]) * 4 * count > TAIL_BYTES:
        split = None
    last = len(insp.steps) - 1 if split is None else split
    out = torch.cat([_trunk(insp, batch, last) for batch in batches])
    return insp.class_scores(out) if split is None else _tail(insp, out, split)


def tail_start(insp: Inspector) -> int | None:
    """The step after which the classifier can run on its own: the last one before the first
    linear layer after the last convolution from whose output alone the rest follows. Run
    once over every step image, the classifier reads its large weights once, not once per
    batch (AlexNet's 58 M: a quarter of its time at batches of 32). None: no such step.

    Example:
        >>> import torchvision
        >>> insp = Inspector(torchvision.models.alexnet())
        >>> insp.steps[tail_start(insp)].name
        'classifier.0'
    """
    steps = insp.steps
    last_conv = max((s.index for s in steps if s.kind == "conv"), default=-1)
    linear = next((s.index for s in steps[last_conv + 1 :] if s.kind == "linear"), None)
    if linear is None:
        return None
    return next(
        (k for k in range(linear - 1, max(last_conv, 0) - 1, -1) if narrow_after(insp.graph, k)),
        None,
    )


def _trunk(insp: Inspector, batch: Tensor, last: int) -> Tensor:
    """Step ``last``'s outputs for ``batch``, channels-last, in chunks that fit in memory."""
    chunk = insp._batch_chunk(batch, {last: insp.steps[last].name})  # run_batch's guard
    weights = insp.current_weights()
    kept: frozenset = frozenset()  # nothing but the scores is read back: ReLUs may run in place
    step = lambda s, w, env: _channels_last_step(s, w, env, kept)  # noqa: E731
    out = []
    with torch.inference_mode():
        for start in range(0, len(batch), chunk):
            h = batch[start : start + chunk].to(insp.device, torch.float32)
            h = h.contiguous(memory_format=torch.channels_last)
            out.append(run_graph(insp.graph, weights, h, last, set(), compute=step)[last])
    return torch.cat(out) if len(out) > 1 else out[0]


def _tail(insp: Inspector, value: Tensor, after: int) -> Tensor:
    """The class scores from step ``after``'s outputs (see :func:`tail_start`)."""
    weights = insp.current_weights()
    with torch.inference_mode():
        scores = run_graph(insp.graph, weights, None, resume=(after, value))
    return insp.class_scores(scores[len(insp.steps) - 1])


def is_road(fill: Any) -> bool:
    """Whether ``fill`` asks for ROAD's imputation (``"road"``); any other string is refused.

    Example:
        >>> is_road("road"), is_road(0.0)
        (True, False)
    """
    if not isinstance(fill, str):
        return False
    if fill != "road":
        raise ValueError(
            "fill must be a number, one value per channel (C,), an image (C, H, W) or 'road'; "
            f"got {fill!r}"
        )
    return True


def _fill_steps(img: Tensor, rank: Tensor, counts: list[int], fill_img: Tensor, start: Tensor):
    """Step images ``begin..end`` (deletion's steps, then insertion's) as one channels-last
    batch: the first ``n`` pixels of ``rank`` set to the fill (deletion) or put into
    ``start`` (insertion)."""
    steps = len(counts)

    def make(begin: int, end: int) -> Tensor:
        shape = (end - begin, *img.shape[1:])
        out = torch.empty(
            shape, dtype=img.dtype, device=img.device, memory_format=torch.channels_last
        )
        for lo, hi, base, new in (
            (begin, min(end, steps), img, fill_img),
            (max(begin, steps), end, start, img),
        ):
            if lo < hi:
                n = torch.tensor([counts[j % steps] for j in range(lo, hi)], device=img.device)
                torch.where(rank < n.view(-1, 1, 1, 1), new, base, out=out[lo - begin : hi - begin])
        return out

    return make


def _road_steps(img: Tensor, rank: Tensor, counts: list[int], noise: float, seed: int):
    """Step images as :func:`_fill_steps`, the removed pixels imputed by ROAD; each step's
    noise from its own generator (seed, step), so any batching gives the same images."""
    steps = len(counts)
    seed = as_int(seed)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int; got {seed!r}")

    def one(job: int) -> Tensor:
        taken = rank < counts[job % steps]
        removed = taken if job < steps else ~taken
        generator = torch.Generator().manual_seed((seed * 1_000_003 + job) % 2**63)
        return road_impute(img[0], removed, noise, generator)

    return lambda begin, end: torch.stack([one(j) for j in range(begin, end)])


def _probabilities(
    insp: Inspector, make, image: tuple, begin: int, end: int, batch_size: int, target: int
) -> Tensor:
    """The target's probability for step images ``begin..end`` (each of shape ``image``)
    made by ``make``, in batches of ``batch_size`` (:func:`_scores`)."""
    batches = (make(b, min(b + batch_size, end)) for b in range(begin, end, batch_size))
    scores = _scores(insp, batches, end - begin, image)
    return torch.softmax(scores.float(), dim=1)[:, target].cpu()


def deletion_insertion(
    insp: Inspector,
    x,
    saliency: str | Tensor,
    target: int | None = None,
    steps: int = 100,
    fill: float | Tensor | str = 0.0,
    blur_sigma: float | None = None,
    batch_size: int = 32,
    by_magnitude: bool | None = None,
    road_noise: float = 0.01,
    seed: int = 0,
) -> Curves:
    """Deletion and insertion curves of one map for image ``x``.

    Args:
        insp: the model's inspector.
        x: one image (C, H, W) or (1, C, H, W).
        saliency: a method name (its :func:`class_map` is computed) or a map (H, W), (h, w)
            maps being upsampled to the image.
        target: the class read (None: the predicted class).
        steps: the number of equal shares of the pixels changed (one curve point each, plus 0).
        fill: what deleted pixels become, in model-input units (0: the data mean for
            mean-subtracted inputs); a number, one per channel, or an image. ``"road"``: ROAD
            (Rong et al., 2022): the removed pixels (deletion: those taken; insertion: those
            not yet put back) are imputed from their neighbours (:func:`road_impute`), so no
            fill pattern is left for the model to read; with every pixel removed they are 0.
        blur_sigma: the blur of the insertion's starting image (pixels).
        batch_size: step images per forward pass.
        by_magnitude: rank pixels by ``|map|``; default True for picture signals, False for
            heat maps (Grad-CAM, CAM, occlusion) and for given maps.
        road_noise: with ``fill="road"``, the standard deviation of the noise added to the
            imputed pixels (model-input units), drawn from generators seeded by ``seed`` and
            the step (the global random state is untouched).
        seed: see ``road_noise``.

    Raises:
        ValueError: ``steps`` or ``batch_size`` below 1, a fill with NaN, an unknown method or
            one the model lacks, a map of the wrong shape.
    """
    img = insp.image(x)
    steps = check_steps(steps, img.shape[-2] * img.shape[-1])
    batch_size = check_count("batch_size", batch_size)
    road = is_road(fill)
    if not road:
        check_fill(fill, img)
    target = insp.target_class(img, target)
    method = None
    if isinstance(saliency, str):
        method = check_trust_method(insp, saliency)
        by_magnitude = (not heat_map(method)) if by_magnitude is None else by_magnitude
        saliency = class_map(insp, img, method, target)
    if not isinstance(saliency, Tensor) or saliency.ndim != 2:
        got = tuple(saliency.shape) if isinstance(saliency, Tensor) else type(saliency).__name__
        raise ValueError(f"saliency must be a method name or a map (H, W); got {got}")
    saliency = saliency.to(img.device, torch.float32)
    if tuple(saliency.shape) != tuple(img.shape[-2:]):
        from zfwidgets.core.gradcam import upsample

        saliency = upsample(saliency, tuple(img.shape[-2:]))
    rank = pixel_order(saliency, bool(by_magnitude))
    counts = step_counts(rank.numel(), steps)
    if road:
        make = _road_steps(img, rank, counts, road_noise, seed)
    else:
        make = _fill_steps(img, rank, counts, _fill_image(fill, img), blurred(img, blur_sigma))
    jobs = 2 * len(counts)  # every step image: deletion's then insertion's
    # The first deletion step and the last insertion step are the image itself: its
    # probability comes from the inspector's (cached) pass, as the target did.
    image_prob = insp.predict(img)[target].reshape(1).cpu()
    probs = _probabilities(insp, make, tuple(img.shape[1:]), 1, jobs - 1, batch_size, target)
    curve = torch.cat([image_prob, probs, image_prob])
    fractions = torch.tensor(counts, dtype=torch.float64) / rank.numel()
    deletion, insertion = curve[: steps + 1], curve[steps + 1 :]
    return Curves(
        fractions=fractions,
        deletion=deletion,
        insertion=insertion,
        deletion_auc=auc(fractions, deletion),
        insertion_auc=auc(fractions, insertion),
        target=target,
        method=method,
    )
