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
from zfwidgets.core.layers import pool_geometry, step_forward
from zfwidgets.core.record import Record

__all__ = ["METHODS", "backward", "backward_units", "unpool", "transposed_conv"]

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


# ----- one unit at a time: only inside its receptive field -----------------------------------
_CHANNELWISE = ("relu", "maxpool", "bn", "dropout", "identity")


def _unit_of(top: Tensor) -> tuple[int, int, int] | None:
    """(channel, y, x) of the only nonzero of ``top`` (C, H, W), or None if not exactly one."""
    nonzero = top.nonzero()
    if nonzero.shape[0] != 1:
        return None
    c, y, x = nonzero[0].tolist()
    return c, y, x


def _crop_rows(t: Tensor, box: tuple[int, int, int, int]) -> Tensor:
    y0, y1, x0, x1 = box
    return t[..., y0:y1, x0:x1]


def _unit_backward(
    chain: list[Step],
    weights: list[dict[str, Tensor]],
    rec: Record,
    row: int,
    start: int,
    unit: tuple[int, int, int],
    value: Tensor,
    method: str,
) -> Tensor | None:
    """The projection of one unit, computed only inside its receptive field.

    The signal is held as a box ``(top, left)`` of each layer's plane: a strided layer's box
    grows by its window on the way down, and everything outside stays exactly zero, so the
    result equals the full backward pass. While only one channel can be nonzero (down to the
    first conv) we carry that channel alone and use that channel's slice of the filters.
    Returns None when a layer on the way cannot be cropped (the caller then runs the full
    pass).
    """
    channel, y, x = unit
    grad = value.reshape(1, 1, 1, 1)
    box = (y, y + 1, x, x + 1)  # rows y0..y1-1, cols x0..x1-1 of the current plane
    single = True  # grad holds channel ``channel`` only
    for step in reversed(chain[: start + 1]):
        kind = step.kind
        w = weights[step.index]
        in_shape = rec.input_shapes[step.index]
        ch = slice(channel, channel + 1) if single else slice(None)
        if kind == "relu":
            if method == "deconvnet":
                grad = torch.relu(grad)
            else:
                mask = _crop_rows(rec.relu_mask(step.index)[row : row + 1, ch], box)
                grad = torch.relu(grad) * mask if method == "guided" else grad * mask
        elif kind in ("dropout", "identity"):
            pass
        elif kind == "bn":
            scale = torch.rsqrt(w["running_var"] + step.module.eps)
            if "weight" in w:
                scale = scale * w["weight"]
            grad = grad * scale[ch].view(1, -1, 1, 1)
        elif kind == "lrn":
            if method != "deconvnet":  # spatially pointwise, but it mixes channels
                if single:
                    full = grad.new_zeros(1, in_shape[1], *grad.shape[-2:])
                    full[:, channel] = grad[:, 0]
                    grad, single = full, False
                x_in = _crop_rows(rec.lrn_inputs[step.index][row : row + 1], box)
                grad = _vjp(step, w, x_in, grad)
        elif kind == "maxpool":
            grad, box = _unpool_box(step, rec, row, ch, grad, box, in_shape)
        elif kind == "conv":
            m = step.module
            if single and m.groups != 1:
                return None
            weight = w["weight"][ch]
            y0, y1, x0, x1 = box
            s, p, d = m.stride, m.padding, m.dilation
            out = _transposed_crop(grad, weight, s, d, m.groups)
            # ``out`` covers input rows y0*s-p .. ; keep what lies inside the plane.
            top, left = y0 * s[0] - p[0], x0 * s[1] - p[1]
            ny0, nx0 = max(top, 0), max(left, 0)
            ny1 = min(top + out.shape[-2], in_shape[-2])
            nx1 = min(left + out.shape[-1], in_shape[-1])
            grad = out[..., ny0 - top : ny1 - top, nx0 - left : nx1 - left]
            box, single = (ny0, ny1, nx0, nx1), False
        else:
            return None
    h, w_ = rec.input_shapes[0][-2:]
    full = grad.new_zeros(1, rec.input_shapes[0][1], h, w_)
    full[..., box[0] : box[1], box[2] : box[3]] = grad
    return full


def _transposed_crop(grad: Tensor, weight: Tensor, stride, dilation, groups: int) -> Tensor:
    """``conv_transpose2d`` without padding: the full extent every output reaches.

    Strided layers (conv1) go through one matrix product and ``fold`` (col2im), about twice
    as fast on the CPU as ``conv_transpose2d`` for a crop of one image.
    """
    if groups != 1 or stride == (1, 1) or grad.shape[0] != 1:
        return F.conv_transpose2d(grad, weight, None, stride, 0, 0, groups, dilation)
    c_out, h, w = grad.shape[1:]
    kh, kw = weight.shape[-2:]
    cols = weight.reshape(c_out, -1).t() @ grad.reshape(c_out, h * w)
    size = tuple(
        (n - 1) * stride[a] + dilation[a] * (k - 1) + 1
        for a, (n, k) in enumerate(((h, kh), (w, kw)))
    )
    return F.fold(cols[None], size, (kh, kw), dilation=dilation, stride=stride)


def _unpool_box(step: Step, rec: Record, row: int, ch: slice, grad: Tensor, box, in_shape):
    """Unpooling of a boxed signal into the box of the pool's input it can reach."""
    g = pool_geometry(step.module)
    y0, y1, x0, x1 = box
    iy0 = max(y0 * g.stride[0] - g.padding[0], 0)
    ix0 = max(x0 * g.stride[1] - g.padding[1], 0)
    iy1 = min(
        (y1 - 1) * g.stride[0] - g.padding[0] + g.dilation[0] * (g.kernel[0] - 1) + 1, in_shape[-2]
    )
    ix1 = min(
        (x1 - 1) * g.stride[1] - g.padding[1] + g.dilation[1] * (g.kernel[1] - 1) + 1, in_shape[-1]
    )
    off = rec.switches[step.index][row : row + 1, ch, y0:y1, x0:x1].long()
    oy = torch.arange(y0, y1, device=off.device).view(-1, 1) * g.stride[0] - g.padding[0]
    ox = torch.arange(x0, x1, device=off.device).view(1, -1) * g.stride[1] - g.padding[1]
    iy = oy + (off // g.kernel[1]) * g.dilation[0] - iy0
    ix = ox + (off % g.kernel[1]) * g.dilation[1] - ix0
    return unpool(grad, iy * (ix1 - ix0) + ix, (iy1 - iy0, ix1 - ix0)), (iy0, iy1, ix0, ix1)


def backward_units(
    chain: list[Step],
    weights: list[dict[str, Tensor]],
    rec: Record,
    top: Tensor,
    start: int,
    method: str = "deconvnet",
) -> Tensor:
    """Like :func:`backward` to the pixels, but each single-unit top signal is cropped.

    ``top`` (K, C, H, W) holds K top signals for one recorded image (batch 1) or one per image
    (batch K). A signal with exactly one nonzero unit is passed down only inside that unit's
    receptive field; the rest go through the full pass. The results are the same.
    """
    if method not in METHODS:
        raise ValueError(f"method {method!r} is not one of {', '.join(METHODS)}")
    if top.ndim != 4:
        return backward(chain, weights, rec, top, start, method)
    n = rec.input_shapes[0][0]
    outs: list[Tensor | None] = []
    with torch.no_grad():
        for k in range(top.shape[0]):
            unit = _unit_of(top[k])
            row = k if n == top.shape[0] and n > 1 else 0
            outs.append(
                None
                if unit is None
                else _unit_backward(chain, weights, rec, row, start, unit, top[k][unit], method)
            )
    rest = [k for k, o in enumerate(outs) if o is None]
    if rest:
        if len(rest) == top.shape[0]:
            return backward(chain, weights, rec, top, start, method)
        sub = rec if n == 1 else _rows(rec, rest)
        full = backward(chain, weights, sub, top[rest], start, method)
        for j, k in enumerate(rest):
            outs[k] = full[j : j + 1]
    return torch.cat(outs)


def _rows(rec: Record, rows: list[int]) -> Record:
    """The records of some images of a batched record."""
    pick = torch.tensor(rows)
    return Record(
        input_shapes=[torch.Size((len(rows), *s[1:])) for s in rec.input_shapes],
        depth=rec.depth,
        outputs={i: t[pick.to(t.device)] for i, t in rec.outputs.items()},
        switches={i: t[pick.to(t.device)] for i, t in rec.switches.items()},
        masks={i: t[pick.to(t.device)] for i, t in rec.masks.items()},
        lrn_inputs={i: t[pick.to(t.device)] for i, t in rec.lrn_inputs.items()},
    )
