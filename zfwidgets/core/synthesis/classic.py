"""The lecture's method, pixels and priors: gradient ascent on a class or unit (Simonyan
et al. 2014; Yosinski et al. 2015), feature inversion (Mahendran & Vedaldi 2015) and DeepDream.

All three share one optimisation loop, :func:`optimise`, which differentiates the inspector's
own functional forward (:func:`zfwidgets.core.layers.run_graph` on its detached weight copies)
with respect to the image only: the user's model is never called, hooked or changed.

Example:
    >>> import torch, torch.nn as nn
    >>> from zfwidgets import Inspector
    >>> torch.manual_seed(0) and None
    >>> insp = Inspector(nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(),
    ...                                nn.Linear(4 * 6 * 6, 3)), device="cpu")
    >>> s = ascend(insp, class_score(1), shape=(1, 8, 8), steps=20, progress=False)
    >>> s.image.shape, s.objective[-1] > s.objective[0]
    (torch.Size([1, 8, 8]), True)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from zfwidgets.core import render
from zfwidgets.core.checks import (
    as_int,
    check_channel,
    check_class,
    check_number,
    check_position,
)
from zfwidgets.core.layers import run_graph
from zfwidgets.core.synthesis.objectives import ClassScore, Unit, class_score, unit
from zfwidgets.core.synthesis.regularisers import (
    clip_small_contribution,
    clip_small_values,
    gaussian_blur,
    jitter_offsets,
    total_variation,
)

if TYPE_CHECKING:
    from zfwidgets.core.inspector import Inspector

__all__ = [
    "ClassScore",
    "Synthesis",
    "SynthesisCancelled",
    "SynthesisDiverged",
    "Unit",
    "ascend",
    "bounds_for",
    "class_score",
    "dream",
    "input_shape",
    "invert",
    "objective_gradient",
    "optimise",
    "picture",
    "unit",
]


class SynthesisCancelled(RuntimeError):
    """Raised when ``should_stop()`` asked a synthesis to stop."""


class SynthesisDiverged(ValueError):
    """Raised when a synthesis' objective or image stopped being finite (a NaN picture).

    Example:
        >>> try:
        ...     stop_if_not_finite(3, 10, float("nan"), torch.zeros(1), 5.0)
        ... except SynthesisDiverged as err:
        ...     print(str(err)[:45])
        step 3 of 10: the objective became nan (lr 5)
    """


# Adam's step is about lr per pixel per step; past 10 (model-input units) every picture is noise
# or overflows, so a larger value is a typo, not a setting.
MAX_LR = 10.0
MAX_WEIGHT = 1e6  # regulariser weights (l2, tv_weight): beyond this the objective is ignored


def stop_if_not_finite(step: int, steps: int, value: float, x: Tensor, lr: float) -> None:
    """Raises :class:`SynthesisDiverged` naming the step once the objective or image is NaN
    or infinite: every later step would draw a NaN picture."""
    bad = None if math.isfinite(value) else f"the objective became {value}"
    if bad is None and not bool(torch.isfinite(x).all()):
        bad = "the image holds NaN or infinite pixels"
    if bad is not None:
        raise SynthesisDiverged(
            f"step {step} of {steps}: {bad} (lr {lr:g}); lower the step size (lr) or the "
            "regulariser weights, or check that the model's outputs are finite"
        )


@dataclass(frozen=True)
class Synthesis:
    """A synthesised image (C, H, W) on the CPU, its objective after every step, the settings.

    For ``ascend`` and ``dream`` the objective is what is maximised (class score, unit mean,
    mean squared activation); for ``invert`` it is the relative feature distance
    ``||Phi(I) - Phi_0||^2 / ||Phi_0||^2``, which falls.
    """

    image: Tensor
    objective: list[float]
    settings: dict[str, Any] = field(default_factory=dict)


Score = Callable[[Tensor], tuple[Tensor, Tensor]]  # image -> (loss to minimise, reported value)


def bounds_for(mean=0.0, std=1.0) -> tuple[Tensor, Tensor]:
    """The model-input values of pixels 0 and 1 when inputs are ``(pixels - mean) / std``.

    Example:
        >>> lo, hi = bounds_for(0.498, 0.502)
        >>> round(float(lo), 3), round(float(hi), 3)
        (-0.992, 1.0)
    """
    mean = torch.as_tensor(mean, dtype=torch.float32)
    std = torch.as_tensor(std, dtype=torch.float32)
    return (0 - mean) / std, (1 - mean) / std


def picture(image: Tensor, mean=None, std=1.0) -> np.ndarray:
    """A synthesised image (C, H, W) as uint8 pixels: ``image * std + mean`` clipped to 0..1
    when ``mean`` is given, else stretched min..max (see :func:`render.input_image`).

    Example:
        >>> picture(torch.zeros(1, 2, 2), mean=0.5).tolist()
        [[128, 128], [128, 128]]
    """
    if mean is None:
        return render.input_image(image)
    mean = torch.as_tensor(mean, dtype=torch.float32).expand_as(image)
    return render.input_image(image.cpu() * std, mean)


def _output_of(insp: Inspector, index: int) -> Callable[[Tensor], Tensor]:
    """x (1, C, H, W) -> the differentiable output of step ``index`` on our weight copies."""
    weights = insp.current_weights()
    return lambda x: run_graph(insp.graph, weights, x, last=index, keep={index})[index]


def _objective_score(insp: Inspector, objective, shape: tuple[int, ...]) -> Score:
    if isinstance(objective, ClassScore):
        last = len(insp.steps) - 1
        count = insp.shapes(shape)[last][-1]
        target = check_class(objective.target, count)
        forward = _output_of(insp, last)

        def score(x: Tensor) -> tuple[Tensor, Tensor]:
            value = forward(x)[0, target]
            return -value, value

        return score
    if isinstance(objective, Unit):
        index = insp.layer_index(objective.layer)
        out_shape = insp.shapes(shape)[index]
        channel = check_channel(objective.channel, out_shape[1], objective.layer)
        hw = tuple(out_shape[2:]) if len(out_shape) == 4 else None
        position = check_position(objective.position, hw, objective.layer)
        forward = _output_of(insp, index)

        def score(x: Tensor) -> tuple[Tensor, Tensor]:
            fmap = forward(x)[0, channel]
            value = fmap.mean() if position is None else fmap[position[0], position[1]]
            return -value, value

        return score
    raise TypeError(f"objective must be class_score(c) or unit(layer, channel); got {objective!r}")


def objective_gradient(insp: Inspector, objective, x: Tensor) -> tuple[float, Tensor]:
    """The objective's value for image ``x`` (C, H, W) and its gradient d objective / d x.

    The gradient the optimisation loop follows, exposed for tests against torch autograd.
    """
    x = insp.image(x).detach().requires_grad_()
    with torch.enable_grad():
        _, value = _objective_score(insp, objective, tuple(x.shape[1:]))(x)
        (grad,) = torch.autograd.grad(value, x)
    return float(value.detach()), grad[0].cpu()


def _clamp(x: Tensor, bounds) -> Tensor:
    if bounds is None:
        return x
    lo, hi = (torch.as_tensor(b, dtype=x.dtype, device=x.device) for b in bounds)
    return torch.maximum(torch.minimum(x, hi), lo)


def _check_settings(steps, lr, weights: dict[str, Any], counts: dict[str, Any], **fractions):
    steps = as_int(steps)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int; got {steps!r}")
    for name, value in counts.items():  # pixels and step counts: a float NaN is no count
        value = as_int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be an int >= 0; got {value!r}")
    check_number("lr", lr, 0, MAX_LR, low_open=True)
    for name, value in weights.items():
        check_number(name, value, 0, MAX_WEIGHT)
    for name, value in fractions.items():
        if not 0 <= value < 1:  # NaN fails this too
            raise ValueError(f"{name} must be a fraction in [0, 1); got {value!r}")


def optimise(
    x0: Tensor,
    score: Score,
    steps: int,
    lr: float = 0.05,
    l2: float = 0.0,
    blur_every: int = 0,
    blur_sigma: float = 0.5,
    clip_value: float = 0.0,
    clip_contribution: float = 0.0,
    jitter: int = 0,
    tv_weight: float = 0.0,
    tv_beta: float = 2.0,
    bounds=None,
    generator: torch.Generator | None = None,
    progress: bool = False,
    callback: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    every: int | None = None,
    on_image: Callable[[int, Tensor, list[float]], None] | None = None,
    desc: str = "synthesis",
) -> tuple[Tensor, list[float]]:
    """The one loop: Adam on the image minimising ``score(x)[0]`` plus the priors.

    ``score(x)`` gives (loss, reported value); each step jitters the image by up to
    ``jitter`` pixels, adds ``l2 * mean(x^2)`` and ``tv_weight * R_TV^tv_beta``, steps, then
    applies the projections: clamp to ``bounds``, blur every ``blur_every`` steps, zero the
    ``clip_value`` fraction of smallest pixels and the ``clip_contribution`` fraction
    contributing least. Returns the image (1, C, H, W) and the value after every step.
    ``on_image(step, image, values)`` gets the image (C, H, W, CPU) and the values so far
    every ``every`` steps (for live display).
    """
    weights = {"l2": l2, "tv_weight": tv_weight, "blur_sigma": blur_sigma, "tv_beta": tv_beta}
    counts = {"jitter": jitter, "blur_every": blur_every}
    _check_settings(
        steps, lr, weights, counts, clip_value=clip_value, clip_contribution=clip_contribution
    )
    from tqdm.auto import tqdm  # imported here: only long loops need it

    generator = generator or torch.Generator().manual_seed(0)
    x = _clamp(x0.detach().clone(), bounds).requires_grad_()
    opt = torch.optim.Adam([x], lr=lr)
    values: list[float] = []
    bar = tqdm(total=steps, desc=desc, unit="step", disable=not progress)
    try:
        for step in range(1, steps + 1):
            dy, dx = jitter_offsets(jitter, generator)
            opt.zero_grad(set_to_none=True)
            with torch.enable_grad():
                loss, value = score(torch.roll(x, (dy, dx), dims=(-2, -1)))
                if l2 > 0:
                    loss = loss + l2 * x.pow(2).mean()
                if tv_weight > 0:
                    loss = loss + tv_weight * total_variation(x, tv_beta)
                loss.backward()
            grad = x.grad.detach().clone()
            opt.step()
            with torch.no_grad():
                y = _clamp(x, bounds)
                if blur_every and step % blur_every == 0:
                    y = gaussian_blur(y, blur_sigma)
                y = clip_small_values(y, clip_value)
                y = clip_small_contribution(y, grad, clip_contribution)
                x.copy_(y)
            values.append(float(value.detach()))
            stop_if_not_finite(step, steps, values[-1], x.detach(), lr)
            bar.update(1)
            if callback is not None:
                callback(step, steps)
            if on_image is not None and every and step % every == 0:
                on_image(step, x.detach()[0].cpu().clone(), list(values))
            if should_stop is not None and should_stop():
                raise SynthesisCancelled(f"synthesis stopped after {step} of {steps} steps")
    finally:
        bar.close()
    return x.detach(), values


def _start(shape: tuple[int, ...], start: str, generator: torch.Generator, scale: float):
    if start == "zero":
        return torch.zeros(1, *shape)
    if start == "random":
        return scale * torch.randn(1, *shape, generator=generator)
    raise ValueError(f"start must be 'zero' or 'random'; got {start!r}")


def input_shape(insp: Inspector, shape: Sequence[int] | None) -> tuple[int, ...]:
    """``shape`` (C, H, W) checked against the model (the core's message when it does not fit).

    Example:
        >>> import torch.nn as nn
        >>> from zfwidgets import Inspector
        >>> input_shape(Inspector(nn.Sequential(nn.Conv2d(1, 2, 3)), device="cpu"), [1, 8, 8])
        (1, 8, 8)
    """
    if shape is None:
        raise ValueError(
            "give shape=(C, H, W), the model's input shape (e.g. (1, 28, 28) for the digits "
            f"demo, (3, 224, 224) for photos; this model takes {insp.in_channels} channels)"
        )
    return tuple(insp.image(torch.zeros(tuple(shape))).shape[1:])  # checked against the model


def ascend(
    insp: Inspector,
    objective: ClassScore | Unit,
    shape: Sequence[int] | None = None,
    steps: int = 100,
    lr: float = 0.05,
    l2: float = 1e-3,
    blur_every: int = 4,
    blur_sigma: float = 0.5,
    clip_value: float = 0.0,
    clip_contribution: float = 0.0,
    jitter: int = 1,
    start: str = "zero",
    seed: int = 0,
    bounds=None,
    **loop,
) -> Synthesis:
    """Gradient ascent I* = argmax S(I) - l2 ||I||^2 with Yosinski's regularisers.

    Args:
        insp: the inspector of the model.
        objective: :func:`class_score` or :func:`unit`.
        shape: the input shape (C, H, W) in the model's input space.
        steps, lr: Adam steps and step size (input units).
        l2: weight of the L2 decay (on the mean squared pixel).
        blur_every, blur_sigma: Gaussian blur of ``blur_sigma`` px every ``blur_every`` steps
            (0: never).
        clip_value, clip_contribution: fractions of pixels zeroed each step: those of
            smallest norm, and those of smallest ``|x * grad|``.
        jitter: random shift of up to this many pixels each step.
        start: ``"zero"`` or ``"random"`` (seeded Gaussian, std 0.1).
        seed: seeds a local generator (start and jitter); the global RNG is untouched.
        bounds: (lo, hi) input values (floats or tensors, see :func:`bounds_for`) the image
            is clamped to; None for no clamp.
        **loop: ``progress``, ``callback(done, total)``, ``should_stop()``, ``every`` and
            ``on_image(step, image, values)``, as for :func:`optimise`.

    Raises:
        SynthesisCancelled: ``should_stop()`` returned True.
    """
    shape = input_shape(insp, shape)
    generator = torch.Generator().manual_seed(seed)
    x0 = _start(shape, start, generator, 0.1).to(insp.device)
    score = _objective_score(insp, objective, shape)
    settings = dict(objective=objective, shape=shape, steps=steps, lr=lr, l2=l2,
                    blur_every=blur_every, blur_sigma=blur_sigma, clip_value=clip_value,
                    clip_contribution=clip_contribution, jitter=jitter, start=start,
                    seed=seed)  # fmt: skip
    x, values = optimise(x0, score, steps, lr, l2, blur_every, blur_sigma, clip_value,
                         clip_contribution, jitter, bounds=bounds, generator=generator,
                         desc="ascent", **loop)  # fmt: skip
    return Synthesis(x[0].cpu(), values, settings)


def invert(
    insp: Inspector,
    image,
    layer: str,
    steps: int = 200,
    lr: float = 0.05,
    tv_weight: float = 1e-2,
    tv_beta: float = 2.0,
    seed: int = 0,
    bounds=None,
    **loop,
) -> Synthesis:
    """Mahendran & Vedaldi's inversion: min ||Phi(I) - Phi_0||^2 / ||Phi_0||^2 + tv R_TV^beta.

    Starts from seeded noise (std 0.1) and reconstructs what ``layer`` keeps of ``image``.
    The reported objective is the relative feature distance (the TV term left out).

    Example:
        >>> import torch, torch.nn as nn
        >>> from zfwidgets import Inspector
        >>> insp = Inspector(nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU()), device="cpu")
        >>> img = torch.rand(1, 10, 10, generator=torch.Generator().manual_seed(1))
        >>> s = invert(insp, img, "1", steps=100, tv_weight=0, progress=False)
        >>> s.objective[-1] < 0.1 * s.objective[0]
        True
    """
    x_ref = insp.image(image)
    index = insp.layer_index(layer)
    forward = _output_of(insp, index)
    with torch.no_grad():
        target = forward(x_ref).detach()
    norm = target.pow(2).sum().clamp_min(1e-12)
    if not bool(torch.isfinite(norm)):  # an infinite norm would report every start as perfect
        raise SynthesisDiverged(
            f"before step 1: the features of {layer!r} on the image to invert are not finite "
            "(the model overflows on it); check the model's weights and the image's scale"
        )

    def score(x: Tensor) -> tuple[Tensor, Tensor]:
        distance = (forward(x) - target).pow(2).sum() / norm
        return distance, distance

    generator = torch.Generator().manual_seed(seed)
    x0 = _start(tuple(x_ref.shape[1:]), "random", generator, 0.1).to(insp.device)
    x, values = optimise(x0, score, steps, lr, tv_weight=tv_weight, tv_beta=tv_beta,
                         bounds=bounds, generator=generator, desc="inversion", **loop)  # fmt: skip
    settings = dict(
        layer=layer, steps=steps, lr=lr, tv_weight=tv_weight, tv_beta=tv_beta, seed=seed
    )
    return Synthesis(x[0].cpu(), values, settings)


def _resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _bounds_at(bounds, size: tuple[int, int]):
    """``bounds`` for an octave of ``size``: per-pixel bounds (a mean image) resized too."""
    if bounds is None:
        return None
    resized = []
    for b in bounds:
        b = torch.as_tensor(b, dtype=torch.float32)
        if b.ndim >= 2 and tuple(b.shape[-2:]) != size:
            b = _resize(b.reshape(1, -1, *b.shape[-2:]), size)
        resized.append(b)
    return tuple(resized)


def _counting_on(loop: dict, done: int, total: int, earlier: list[float]) -> dict:
    """``loop``'s callbacks for one octave, counting steps and values over all octaves."""
    loop = dict(loop)
    callback, on_image = loop.get("callback"), loop.get("on_image")
    if callback is not None:
        loop["callback"] = lambda step, _: callback(done + step, total)
    if on_image is not None:
        loop["on_image"] = lambda step, image, got: on_image(done + step, image, earlier + got)
    return loop


def _check_octaves(forward, base: Tensor, sizes: list[tuple[int, int]], layer: str, insp) -> None:
    """Refuses octaves the layer cannot take (a fully connected layer needs the model's own
    image size) before any step runs, naming the setting and what works instead."""
    if len(sizes) == 1:
        return
    try:
        with torch.no_grad():
            forward(_resize(base, sizes[-1]))
    except (RuntimeError, ValueError) as err:
        shape = insp.shapes(tuple(base.shape[1:]))[insp.layer_index(layer)]
        kind = "fully connected " if len(shape) == 2 else ""
        raise ValueError(
            f"octaves={len(sizes)} shrinks the image to {sizes[-1][0]}x{sizes[-1][1]}, which "
            f"{kind}layer '{layer}' cannot take (it needs {tuple(base.shape[-2:])} images up to "
            f"there); use octaves=1 for it, or dream at a convolutional layer"
        ) from err


def dream(
    insp: Inspector,
    image,
    layer: str,
    octaves: int = 3,
    octave_scale: float = 1.4,
    jitter: int = 2,
    steps: int = 10,
    lr: float = 0.02,
    seed: int = 0,
    bounds=None,
    **loop,
) -> Synthesis:
    """DeepDream: amplify mean_i f_i(I)^2 at ``layer``, over ``octaves`` scales.

    The image is dreamed at the smallest scale first; each larger octave starts from the
    original image at that size plus the detail dreamed so far, upsampled. ``steps`` per
    octave; the objective lists every step of every octave, smallest octave first.
    """
    base = insp.image(image)
    octaves = as_int(octaves)
    if isinstance(octaves, bool) or not isinstance(octaves, int) or octaves < 1:
        raise ValueError(f"octaves must be a positive int; got {octaves!r}")
    if not octave_scale >= 1:
        raise ValueError(f"octave_scale must be >= 1; got {octave_scale!r}")
    index = insp.layer_index(layer)
    forward = _output_of(insp, index)

    def score(x: Tensor) -> tuple[Tensor, Tensor]:
        value = forward(x).pow(2).mean()
        return -value, value

    side = base.shape[-2:]
    sizes = [tuple(max(1, round(s / octave_scale**k)) for s in side) for k in range(octaves)]
    _check_octaves(forward, base, sizes, layer, insp)
    generator = torch.Generator().manual_seed(seed)
    detail = torch.zeros_like(_resize(base, sizes[-1]))
    values: list[float] = []
    for size in reversed(sizes):
        start = _resize(base, size) if size != tuple(side) else base
        x, got = optimise(start + _resize(detail, size), score, steps, lr, jitter=jitter,
                          bounds=_bounds_at(bounds, size), generator=generator, desc="dream",
                          **_counting_on(loop, len(values), steps * octaves, values))  # fmt: skip
        detail = x - start
        values += got
    settings = dict(layer=layer, octaves=octaves, octave_scale=octave_scale, jitter=jitter,
                    steps=steps, lr=lr, seed=seed)  # fmt: skip
    return Synthesis(x[0].cpu(), values, settings)
