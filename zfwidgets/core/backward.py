"""Passing a signal down the chain: the deconvnet, guided backprop and saliency.

The three methods share every rule except the one at a ReLU (Zeiler & Fergus §2.1; Springenberg
et al. for guided backprop; Simonyan et al. for saliency):

==============  ==========================================
method          what a ReLU passes down
==============  ==========================================
deconvnet       ``relu(g)``  (rectify the reconstruction)
guided          ``relu(g) * (x > 0)``
saliency        ``g * (x > 0)``  (the plain gradient)
==============  ==========================================

Everything else is the transpose of the forward layer: unpool with the recorded switches
(adding, since 3x3/2 windows overlap and one input can win two windows), convolve with the
transposed filters (no bias), multiply by the batch-norm scale, transpose linear layers,
un-flatten. Local response norm is skipped by the deconvnet (the paper uses no contrast
normalisation on the way down) and differentiated exactly by the other two methods.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from zfwidgets.core.chain import Step
from zfwidgets.core.layers import step_forward
from zfwidgets.core.record import Record

__all__ = ["METHODS", "backward", "unpool", "transposed_conv"]

METHODS = ("deconvnet", "guided", "saliency")


def unpool(grad: Tensor, indices: Tensor, in_shape: torch.Size) -> Tensor:
    """Places every pooled value at its switch position, adding where windows overlap.

    ``indices`` (N or 1, C, Ho, Wo) are flat positions in the (H*W) input plane; the result
    has ``grad``'s batch size and ``in_shape``'s channels and plane.
    """
    n, c = grad.shape[:2]
    out = grad.new_zeros(n, c, in_shape[-2] * in_shape[-1])
    idx = indices.expand(n, -1, -1, -1).reshape(n, c, -1)
    out.scatter_add_(2, idx, grad.reshape(n, c, -1))
    return out.view(n, c, in_shape[-2], in_shape[-1])


def transposed_conv(grad: Tensor, weight: Tensor, module, in_hw: tuple[int, int]) -> Tensor:
    """Filters ``grad`` with the transposed (flipped) filters, landing exactly on ``in_hw``.

    ``output_padding`` recovers the rows and columns a strided forward conv never reached
    with its last window (224 -> 55 -> 224 on AlexNet conv1, not 223).
    """
    out_hw = grad.shape[-2:]
    extra = []
    for d in range(2):
        k_eff = module.dilation[d] * (weight.shape[2 + d] - 1) + 1
        reached = (out_hw[d] - 1) * module.stride[d] - 2 * module.padding[d] + k_eff
        extra.append(in_hw[d] - reached)
    return F.conv_transpose2d(
        grad,
        weight,
        None,
        module.stride,
        module.padding,
        tuple(extra),
        module.groups,
        module.dilation,
    )


def _relu_rule(grad: Tensor, rec: Record, index: int, method: str) -> Tensor:
    if method == "deconvnet":
        return torch.relu(grad)
    positive = rec.relu_mask(index)
    if method == "guided":
        return torch.relu(grad) * positive
    return grad * positive


def _vjp(step: Step, weights: dict[str, Tensor], x: Tensor, grad: Tensor) -> Tensor:
    """Exact vector-Jacobian product of a step at input ``x`` (for LRN and average pools)."""
    with torch.enable_grad():
        x = x.detach().clone().expand(grad.shape[0], *x.shape[1:]).requires_grad_(True)
        (g,) = torch.autograd.grad(step_forward(step, weights, x), x, grad)
    return g


def _step_backward(
    step: Step, weights: dict[str, Tensor], rec: Record, grad: Tensor, method: str
) -> Tensor:
    kind = step.kind
    in_shape = rec.input_shapes[step.index]
    if kind == "conv":
        return transposed_conv(grad, weights["weight"], step.module, tuple(in_shape[-2:]))
    if kind == "relu":
        return _relu_rule(grad, rec, step.index, method)
    if kind == "maxpool":
        return unpool(grad, rec.pool_indices(step), in_shape)
    if kind == "lrn":
        if method == "deconvnet":
            return grad
        return _vjp(step, weights, rec.lrn_inputs[step.index], grad)
    if kind == "bn":
        scale = torch.rsqrt(weights["running_var"] + step.module.eps)
        if "weight" in weights:
            scale = scale * weights["weight"]
        return grad * scale.view(1, -1, 1, 1)
    if kind in ("dropout", "identity"):
        return grad
    if kind == "avgpool":  # linear, so the Jacobian does not depend on the input values
        return _vjp(step, weights, grad.new_zeros(1, *in_shape[1:]), grad)
    if kind == "flatten":
        return grad.reshape(grad.shape[0], *in_shape[1:])
    if kind == "linear":
        return grad @ weights["weight"]
    raise AssertionError(f"unknown step kind {kind}")


def backward(
    chain: list[Step],
    weights: list[dict[str, Tensor]],
    rec: Record,
    grad: Tensor,
    start: int,
    method: str = "deconvnet",
    stop: int = -1,
) -> Tensor:
    """Passes ``grad`` (the signal at the output of step ``start``) down to step ``stop``.

    Returns the signal at the output of step ``stop`` (``stop=-1``: at the input pixels).
    ``grad`` may hold K signals for one recorded image (batch K vs 1), or one per image.
    """
    if method not in METHODS:
        raise ValueError(f"method {method!r} is not one of {', '.join(METHODS)}")
    with torch.no_grad():
        for step in reversed(chain[stop + 1 : start + 1]):
            grad = _step_backward(step, weights[step.index], rec, grad, method)
    return grad
