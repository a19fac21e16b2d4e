"""The feature-visualisation loop: Adam on a parametrisation's tensors, maximising an
objective of the transformed images, through the Inspector's functional forward on its own
weight copies (the user's modules are never called or hooked), on the CPU or CUDA.

Example:
    >>> from zfwidgets import demo, Inspector
    >>> from zfwidgets.core.synthesis import Fourier, visualise, class_score
    >>> d = demo.load()
    >>> insp = Inspector(d.model, device="cpu")
    >>> v = visualise(insp, class_score(3), Fourier((1, 28, 28), mean=0.13, std=1), steps=8)
    >>> tuple(v.images.shape), v.objective[-1] > v.objective[0], v.name
    ((1, 1, 28, 28), True, 'class 3')
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from zfwidgets.core.checks import as_int, check_number
from zfwidgets.core.layers import run_graph
from zfwidgets.core.synthesis.classic import MAX_LR, SynthesisCancelled, stop_if_not_finite
from zfwidgets.core.synthesis.objectives import as_objective
from zfwidgets.core.synthesis.parametrisations import Fourier, Parametrisation
from zfwidgets.core.synthesis.transforms import standard

if TYPE_CHECKING:
    from zfwidgets.core.inspector import Inspector

__all__ = ["Visualisation", "bind", "gradient", "visualise"]

MAX_STEPS = 100_000


@dataclass(frozen=True)
class Visualisation:
    """What :func:`visualise` returns.

    Attributes:
        images: the batch of model inputs (N, C, H, W), on the CPU.
        pixels: the same as pixels in [0, 1] (None for :class:`Pixels`).
        objective: the objective's value after every step (of the transformed batch).
        name: the objective's readable name.
        settings: everything needed to run it again: ``visualise(insp, **settings)``.
    """

    images: Tensor
    pixels: Tensor | None
    objective: list[float]
    name: str = ""
    settings: dict[str, Any] = field(default_factory=dict)


def bind(insp: Inspector, objective, shape: tuple[int, ...]) -> Callable[[Tensor], Tensor]:
    """``objective`` checked against the model for inputs of ``shape`` (C, H, W): a function
    batch (N, C, H, W) -> the scalar to maximise, differentiable with respect to the batch.

    Raises:
        ValueError: an unknown layer, channel, class, position or vector length.
    """
    obj = as_objective(objective)
    last = len(insp.steps) - 1
    indices = [last if layer is None else insp.layer_index(layer) for layer in obj.layers]
    shapes = insp.shapes(tuple(shape))
    value = obj.bind(insp, tuple(shape), [shapes[i] for i in indices])
    weights = insp.current_weights()
    top, keep = max(indices), set(indices)

    def score(x: Tensor) -> Tensor:
        out = run_graph(insp.graph, weights, x, last=top, keep=keep)
        return value([out[i] for i in indices])

    return score


def gradient(insp: Inspector, objective, x: Tensor) -> tuple[float, Tensor]:
    """The objective's value for the batch ``x`` (N, C, H, W) and its gradient d value / d x
    (what the loop follows before transforms; for tests against torch autograd).

    Example:
        >>> import torch, torch.nn as nn
        >>> from zfwidgets import Inspector
        >>> from zfwidgets.core.synthesis import channel
        >>> insp = Inspector(nn.Sequential(nn.Conv2d(1, 2, 3)), device="cpu")
        >>> value, grad = gradient(insp, channel("0", 1), torch.zeros(2, 1, 5, 5))
        >>> tuple(grad.shape)
        (2, 1, 5, 5)
    """
    x = torch.as_tensor(x, dtype=torch.float32)
    if x.ndim != 4:
        raise ValueError(f"x must be a batch (N, C, H, W); got shape {tuple(x.shape)}")
    insp.image(x[0])  # checks the shape against the model
    score = bind(insp, objective, tuple(x.shape[1:]))
    x = x.to(insp.device).detach().requires_grad_()
    with torch.enable_grad():
        value = score(x)
        (grad,) = torch.autograd.grad(value, x)
    return float(value.detach()), grad.cpu()


def _check(steps, lr, seed) -> None:
    steps = as_int(steps)
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
        raise ValueError(f"steps must be an int in 1..{MAX_STEPS}; got {steps!r}")
    check_number("lr", lr, 0, MAX_LR, low_open=True)
    seed = as_int(seed)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an int >= 0; got {seed!r}")


def visualise(
    insp: Inspector,
    objective,
    param: Parametrisation | None = None,
    transforms: Callable | None | str = "standard",
    steps: int = 256,
    lr: float = 0.05,
    seed: int = 0,
    shape: tuple[int, int, int] | None = None,
    progress: bool = False,
    callback: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    every: int | None = None,
    on_image: Callable[[int, Tensor, list[float]], None] | None = None,
) -> Visualisation:
    """Maximises ``objective`` over the images of ``param`` with Adam (Lucid's recipe).

    Args:
        insp: the inspector of the model.
        objective: an :class:`Objective` (``channel``, ``neuron``, ``direction``,
            ``deepdream``, ``inversion``, ``diversity`` and their sums), ``class_score(c)`` or
            ``unit(layer, channel)``.
        param: the parametrisation (:class:`Fourier`, :class:`Pixels`); None: a Fourier image
            of ``shape`` (mean 0, std 1).
        transforms: applied to the batch every step, ``(x, generator) -> x``; "standard" for
            :func:`transforms.standard`, None for none.
        steps, lr: Adam's steps and step size.
        seed: seeds a local generator for the initial tensors and every transform (torch's
            global RNG is untouched).
        progress, callback(done, total), should_stop(), every, on_image(step, images,
            values): as for :func:`optimise` (``on_image`` gets the batch (N, C, H, W), CPU).

    Raises:
        ValueError: a setting out of range (named, with its allowed range), an unknown layer.
        SynthesisCancelled: ``should_stop()`` returned True.
    """
    _check(steps, lr, seed)
    if param is None:
        if shape is None:
            raise ValueError("give param=Fourier((C, H, W), ...) or shape=(C, H, W)")
        param = Fourier(tuple(shape))
    if not isinstance(param, Parametrisation):
        raise TypeError(f"param must be a Parametrisation (Fourier, Pixels); got {param!r}")
    if isinstance(transforms, str):
        if transforms != "standard":
            raise ValueError(f"transforms must be 'standard', None or callable; got {transforms!r}")
        transforms = standard()
    if transforms is not None and not callable(transforms):
        raise TypeError(f"transforms must be callable (x, generator) or None; got {transforms!r}")
    insp.image(torch.zeros(param.shape))  # the shape fits the model (its message if not)
    score = bind(insp, objective, param.shape)
    name = as_objective(objective).name
    from tqdm.auto import tqdm  # imported here: only long loops need it

    generator = torch.Generator().manual_seed(seed)
    tensors = param.init(generator, insp.device)
    opt = torch.optim.Adam(tensors, lr=lr)
    values: list[float] = []
    bar = tqdm(total=steps, desc="visualise", unit="step", disable=not progress)
    try:
        for step in range(1, steps + 1):
            opt.zero_grad(set_to_none=True)
            with torch.enable_grad():
                x = param.render(tensors)
                if transforms is not None:
                    x = transforms(x, generator)
                value = score(x)
                (-value).backward()
            opt.step()
            values.append(float(value.detach()))
            stop_if_not_finite(step, steps, values[-1], x.detach(), lr)
            bar.update(1)
            if callback is not None:
                callback(step, steps)
            if on_image is not None and every and step % every == 0:
                with torch.no_grad():
                    on_image(step, param.render(tensors).cpu(), list(values))
            if should_stop is not None and should_stop():
                raise SynthesisCancelled(f"synthesis stopped after {step} of {steps} steps")
    finally:
        bar.close()
    with torch.no_grad():
        images = param.render(tensors).detach().cpu()
        pixels = param.pixels(tensors)
    settings = dict(objective=objective, param=param, transforms=transforms, steps=steps, lr=lr,
                    seed=seed)  # fmt: skip
    return Visualisation(images, None if pixels is None else pixels.cpu(), values, name, settings)
