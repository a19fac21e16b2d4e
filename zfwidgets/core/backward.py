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

import operator
from dataclasses import dataclass
from functools import partial

import torch
import torch.fx
import torch.nn.functional as F
from torch import Tensor

from zfwidgets.core.folding import folded_norms, norm_scale
from zfwidgets.core.graph import Step
from zfwidgets.core.layers import call_node, pool_geometry, step_forward
from zfwidgets.core.record import Record, window_steps

__all__ = [
    "METHODS",
    "backward",
    "backward_units",
    "unpool",
    "transposed_conv",
]

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


def transposed_conv(
    grad: Tensor, weight: Tensor, module, in_hw: tuple[int, int], transposed=None
) -> Tensor:
    """Filters ``grad`` with the transposed (flipped) filters, landing exactly on ``in_hw``.

    ``output_padding`` recovers the rows and columns a strided forward conv never reached
    with its last window (224 -> 55 -> 224 on AlexNet conv1, not 223). ``transposed``: a call
    that gives the 1x1 filters as :func:`_onednn_filters` makes them (the faster CPU product).
    """
    if weight.shape[-2:] == (1, 1) and module.stride == (1, 1) and module.padding == (0, 0):
        if module.groups == 1:  # one matrix product
            n, c_out, h, w = grad.shape
            cols = _filters_times(weight, grad.reshape(n, c_out, h * w), transposed)
            return cols.reshape(n, -1, h, w)
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
    """ReLU and ReLU6 alike: the mask is ``x > 0`` or ``0 < x < 6``."""
    if method == "deconvnet":
        return torch.relu(grad)
    positive = rec.relu_mask(index)
    if method == "guided":
        return torch.relu(grad) * positive
    return grad * positive


def _vjp(step: Step, weights: dict[str, Tensor], x: Tensor, grad: Tensor) -> Tensor:
    """Exact vector-Jacobian product of a one-input step at input ``x`` (LRN, pools, pads)."""
    with torch.enable_grad():
        x = x.detach().clone().expand(grad.shape[0], *x.shape[1:]).requires_grad_(True)
        (g,) = torch.autograd.grad(step_forward(step, weights, x), x, grad)
    return g


def _flat(value) -> list:
    return [x for v in value for x in _flat(v)] if isinstance(value, tuple | list) else [value]


def _node_vjp(step: Step, w: dict, rec: Record, grad, inputs: list) -> list[Tensor | None]:
    """Exact vector-Jacobian product of a function or generic step, at ``inputs``.

    The step's own operation is run again under autograd on ``inputs`` (the recorded inputs
    for a nonlinear step, zeros for a linear one), with the side values of the recorded
    forward. K signals for one recorded image are passed as one batched backward.
    """
    nodes = [n for n in step.node.all_input_nodes if n not in rec.side]
    leaves = [v.detach().requires_grad_(v.is_floating_point()) for v in inputs]
    values = dict(zip(nodes, leaves, strict=True))

    def value(n):
        return values[n] if n in values else rec.side[n]

    args = torch.fx.node.map_arg(step.node.args, value)
    kwargs = torch.fx.node.map_arg(step.node.kwargs, value)
    with torch.enable_grad():
        outs = _flat(call_node(step, w, args, kwargs))
        pairs = [
            (o, g)
            for o, g in zip(outs, _flat(grad), strict=True)
            if g is not None and isinstance(o, Tensor) and o.requires_grad
        ]
        wanted = [leaf for leaf in leaves if leaf.requires_grad]
        if not pairs or not wanted:
            return [None] * len(leaves)
        got = _batched_grad([o for o, _ in pairs], wanted, [g for _, g in pairs], rec.batch)
    found = iter(got)
    return [next(found) if leaf.requires_grad else None for leaf in leaves]


def _batched_grad(outs: list, leaves: list, grads: list, n: int) -> tuple:
    k = grads[0].shape[0]
    if k == n:
        return torch.autograd.grad(outs, leaves, grads, allow_unused=True)
    # K signals for one recorded image: one backward per signal, batched by autograd.
    batched = [g.unsqueeze(1) for g in grads]
    try:
        got = torch.autograd.grad(
            outs, leaves, batched, allow_unused=True, retain_graph=True, is_grads_batched=True
        )
        return tuple(None if g is None else g.squeeze(1) for g in got)
    except RuntimeError:  # an operation without a batching rule: one signal at a time
        per = [
            torch.autograd.grad(outs, leaves, [g[j : j + 1] for g in grads], True, True, True)
            for j in range(k)
        ]
        return tuple(
            None if parts[0] is None else torch.cat(parts) for parts in zip(*per, strict=True)
        )


def _input_shape(rec: Record, index: int) -> torch.Size:
    return rec.image_shape if index < 0 else rec.shapes[index]


def _to_shape(grad: Tensor, shape: torch.Size) -> Tensor:
    """``grad`` summed over the dimensions a broadcast input was expanded along."""
    if grad.shape[1:] == shape[1:]:
        return grad
    return grad.sum_to_size(grad.shape[0], *shape[1:])


def _wiring_backward(step: Step, w: dict, rec: Record, grad) -> list:
    """add, cat, item, reshapes and other linear wiring: the signal is routed, not changed."""
    kind = step.kind
    if kind == "add":
        return [_to_shape(grad, _input_shape(rec, i)) for i in step.inputs]
    if kind == "cat":
        dim = step.node.kwargs.get("dim", step.node.args[1] if len(step.node.args) > 1 else 0)
        sizes = [_input_shape(rec, i)[dim] for i in step.inputs]
        return list(torch.split(grad, sizes, dim=dim))
    producer = step.inputs[0] if step.inputs else -1
    if step.node.target is operator.getitem and isinstance(rec.shapes[producer], list):
        slots: list = [None] * len(rec.shapes[producer])
        slots[step.node.args[1]] = grad
        return [slots]
    in_shape = _input_shape(rec, producer)
    if kind in ("reshape", "flatten") and rec.shapes[step.index][0] == in_shape[0]:
        return [grad.reshape(grad.shape[0], *in_shape[1:])]
    zeros = [torch.zeros(_input_shape(rec, i), device=_device(grad)) for i in step.inputs]
    return _node_vjp(step, w, rec, grad, zeros)


def _device(grad) -> torch.device:
    return next(g for g in _flat(grad) if g is not None).device


# ----- batch norms folded into the filters (zfwidgets.core.folding) ----------------------
_FOLDED = {"folded": True}  # a batch norm's entry once its scale is in the conv before it


def _prepared(steps: list[Step], weights: list[dict], start: int, stop: int) -> list[dict]:
    """``weights`` for one pass from ``start`` down to ``stop``: each batch norm on the way
    whose conv is also on the way is folded into that conv's filters, and each 1x1 conv
    gets its filters laid out for oneDNN where that product is used."""
    folds = folded_norms(steps, weights)
    out = list(weights)
    for norm, conv in folds.pairs.items():
        if norm <= start and conv > stop:
            out[norm] = _FOLDED
            out[conv] = {**weights[conv], "weight": folds.weight[conv]}
    for step in steps[stop + 1 : start + 1]:
        w = out[step.index]
        if step.kind == "conv" and w is not _FOLDED and _onednn_usable(step, w["weight"]):
            out[step.index] = {**w, "transposed": partial(_onednn_filters, folds, step, w)}
    return out


def _onednn_usable(step: Step, weight: Tensor) -> bool:
    return weight.shape[-2:] == (1, 1) and step.module.groups == 1 and _onednn_ready(weight)


def _onednn_filters(folds, step: Step, w: dict) -> Tensor:
    """A 1x1 conv's filters (folded or not) laid out for oneDNN's product ``W.t() @ g``:
    (C_in, C_out, 1, 1), made when a product first needs them and kept with the folds (only
    for convs whose signal plane is large: none of ResNet-50's layer4 at 224).

    On this project's CPU (AMD, AVX-512) oneDNN's 1x1 convolution runs at about 110 GMAC/s
    per core and the BLAS matrix product at 55, on the half-width vectors MKL uses on AMD.
    """
    key = (step.index, w["weight"] is folds.weight.get(step.index))
    if key not in folds.transposed:
        matrix = w["weight"].reshape(w["weight"].shape[0], -1)
        folds.transposed[key] = matrix.t().contiguous()[:, :, None, None]
    return folds.transposed[key]


def _onednn_ready(t: Tensor) -> bool:
    cpu = t.device.type == "cpu" and t.dtype == torch.float32
    return cpu and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled


def _filters_times(weight: Tensor, grad: Tensor, transposed=None) -> Tensor:
    """``weight.reshape(C_out, -1).t() @ grad`` for ``grad`` (N, C_out, L): (N, C_in*k*k, L).

    On a small plane the product is computed transposed: BLAS is 3-4x faster with the few
    plane positions as the rows (a cropped unit's signal near the top of a network). Given
    ``transposed`` (a call that returns the filters as :func:`_onednn_filters` lays them
    out), a large plane's product is oneDNN's 1x1 convolution, about twice as fast on the CPU.
    """
    matrix = weight.reshape(weight.shape[0], -1)
    n, c_out, positions = grad.shape
    if positions <= _SMALL_PLANE:
        return (grad.transpose(1, 2) @ matrix).transpose(1, 2)
    if transposed is not None and c_out >= _ONEDNN_CHANNELS and _onednn_ready(grad):
        plane = grad.reshape(n, c_out, 1, positions)
        out = torch.mkldnn_convolution(plane, transposed(), None, (0, 0), (1, 1), (1, 1), 1)
        return out.reshape(n, -1, positions)
    if n == 1:  # a plain matrix product: no batched copy of the filters
        return torch.mm(matrix.t(), grad[0])[None]
    return matrix.t() @ grad


_SMALL_PLANE = 64  # plane positions up to which the transposed product wins
# oneDNN's plain-layout 1x1 kernel is 3x slower than BLAS with fewer signal channels and a
# large output (64 -> 256 channels at 56x56); from 128 channels on it is about 2x faster.
_ONEDNN_CHANNELS = 128


def _step_backward(
    step: Step, weights: dict[str, Tensor], rec: Record, grad, method: str
) -> list[Tensor | None]:
    """The signals at a step's inputs (one per entry of ``step.inputs``)."""
    kind = step.kind
    in_shape = rec.input_shapes[step.index]
    if kind == "conv":
        module, transposed = step.module, weights.get("transposed")
        return [transposed_conv(grad, weights["weight"], module, tuple(in_shape[-2:]), transposed)]
    if kind in ("relu", "relu6"):
        return [_relu_rule(grad, rec, step.index, method)]
    if kind == "maxpool":
        return [unpool(grad, rec.pool_indices(step), in_shape)]
    if kind == "lrn":
        if method == "deconvnet":
            return [grad]
        return [_vjp(step, weights, rec.saved[step.index][0], grad)]
    if kind == "bn":
        if weights is _FOLDED:
            return [grad]
        return [grad * norm_scale(step, weights).view(1, -1, 1, 1)]
    if kind in ("dropout", "identity"):
        return [grad]
    if kind in ("avgpool", "pad"):  # linear: the Jacobian does not depend on the input values
        return [_vjp(step, weights, grad.new_zeros(1, *in_shape[1:]), grad)]
    if kind == "linear":
        return [grad @ weights["weight"]]
    if kind == "generic":
        return _node_vjp(step, weights, rec, grad, list(rec.saved[step.index]))
    return _wiring_backward(step, weights, rec, grad)


def _accumulate(grads: dict, index: int, signal) -> None:
    """Signals coming back to one tensor from several readers add up."""
    have = grads.get(index)
    if have is None:
        grads[index] = signal
    elif isinstance(have, list):
        grads[index] = [
            b if a is None else a if b is None else a + b for a, b in zip(have, signal, strict=True)
        ]
    else:
        grads[index] = have + signal


def backward(
    steps: list[Step],
    weights: list[dict[str, Tensor]],
    rec: Record,
    grad: Tensor,
    start: int,
    method: str = "deconvnet",
    stop: int = -1,
    on_step=None,
) -> Tensor:
    """Passes ``grad`` (the signal at the output of step ``start``) down to step ``stop``.

    Returns the signal at the output of step ``stop`` (``stop=-1``: at the input pixels).
    ``grad`` may hold K signals for one recorded image (batch K vs 1), or one per image.
    ``on_step(step, grads)``, when given, sees the signals after each step is passed.
    """
    if method not in METHODS:
        raise ValueError(f"method {method!r} is not one of {', '.join(METHODS)}")
    grads: dict[int, object] = {start: grad}
    k = grad.shape[0]
    if on_step is None:  # a trace shows each step's own signal: nothing folded there
        weights = _prepared(steps, weights, start, stop)
    with torch.no_grad():
        for step in reversed(steps[stop + 1 : start + 1]):
            signal = grads.pop(step.index, None)
            if signal is None:
                continue
            parts = _step_backward(step, weights[step.index], rec, signal, method)
            for index, part in zip(step.inputs, parts, strict=True):
                if part is not None:
                    _accumulate(grads, index, part)
            if on_step is not None:
                on_step(step, grads)
    out = grads.get(stop)
    if out is None:  # ``stop`` does not feed ``start``: nothing reaches it
        shape = _input_shape(rec, stop)
        out = grad.new_zeros(k, *shape[1:])
    return out


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


@dataclass
class _Boxed:
    """A signal that is zero outside ``box`` of its plane: ``t`` (1, C or 1, h, w).

    ``box`` is (y0, y1, x0, x1), end exclusive; ``channel`` is the one channel ``t`` carries
    while only one can be nonzero (None once it carries them all). ``owned``: no other signal
    shares ``t``, so the next step may write into it (fewer large allocations).
    """

    t: Tensor
    box: tuple[int, int, int, int]
    channel: int | None
    owned: bool = False

    def full_channels(self, channels: int) -> _Boxed:
        if self.channel is None:
            return self
        t = self.t.new_zeros(1, channels, *self.t.shape[-2:])
        t[:, self.channel] = self.t[:, 0]
        return _Boxed(t, self.box, None, True)


def _join(a: _Boxed | None, b: _Boxed, channels: int) -> _Boxed:
    """The sum of two boxed signals on one plane (where a tensor has several readers)."""
    if a is None:
        return b
    if a.channel is None or a.channel != b.channel:
        a, b = a.full_channels(channels), b.full_channels(channels)
    box = (min(a.box[0], b.box[0]), max(a.box[1], b.box[1]), min(a.box[2], b.box[2]))
    box = (*box, max(a.box[3], b.box[3]))
    if box == a.box == b.box:
        if b.owned or a.owned:
            into, other = (b, a) if b.owned else (a, b)
            into.t += other.t
            return into
        return _Boxed(a.t + b.t, box, a.channel, True)
    t = a.t.new_zeros(1, a.t.shape[1], box[1] - box[0], box[3] - box[2])
    for part in (a, b):
        y0, x0 = part.box[0] - box[0], part.box[2] - box[2]
        t[..., y0 : y0 + part.t.shape[-2], x0 : x0 + part.t.shape[-1]] += part.t
    return _Boxed(t, box, a.channel, True)


def _boxed_step(step: Step, w: dict, rec: Record, row: int, sig: _Boxed, method: str):
    """The boxed signals at a step's inputs, or None when the step cannot be cropped."""
    kind = step.kind
    in_shape = rec.input_shapes[step.index]
    ch = slice(None) if sig.channel is None else slice(sig.channel, sig.channel + 1)
    grad, box = sig.t, sig.box
    if kind in ("relu", "relu6"):
        if method != "saliency":
            grad = grad.relu_() if sig.owned else torch.relu(grad)
        if method != "deconvnet":
            mask = _crop_rows(rec.relu_mask(step.index)[row : row + 1, ch], box)
            grad = grad.mul_(mask) if sig.owned or method == "guided" else grad * mask
        return [_Boxed(grad, box, sig.channel, True)]
    if kind in ("dropout", "identity"):
        return [sig]
    if kind == "bn":
        if w is _FOLDED:
            return [sig]
        scale = norm_scale(step, w)[ch].view(1, -1, 1, 1)
        grad = grad.mul_(scale) if sig.owned else grad * scale
        return [_Boxed(grad, box, sig.channel, True)]
    if kind == "lrn":
        if method == "deconvnet":
            return [sig]
        sig = sig.full_channels(in_shape[1])  # spatially pointwise, but it mixes channels
        x_in = _crop_rows(rec.saved[step.index][0][row : row + 1], box)
        return [_Boxed(_vjp(step, w, x_in, sig.t), box, None, True)]
    if kind == "maxpool":
        grad, box = _unpool_box(step, rec, row, ch, grad, box, in_shape)
        return [_Boxed(grad, box, sig.channel, True)]
    if kind == "conv":
        return [_conv_boxed(step, w, sig, in_shape)]
    if kind == "add" and all(_input_shape(rec, i) == rec.shapes[step.index] for i in step.inputs):
        return [_Boxed(sig.t, sig.box, sig.channel)] * len(step.inputs)  # shared: not owned
    if kind == "cat" and _cat_dim(step) in (1, -3) and len(rec.shapes[step.index]) == 4:
        return _cat_boxed(step, rec, sig)
    return None


def _conv_boxed(step: Step, w: dict, sig: _Boxed, in_shape) -> _Boxed:
    m = step.module
    if sig.channel is not None and m.groups != 1:
        sig = sig.full_channels(w["weight"].shape[0])
    ch = slice(None) if sig.channel is None else slice(sig.channel, sig.channel + 1)
    weight = w["weight"][ch]
    y0, _, x0, _ = sig.box
    s, p, d = m.stride, m.padding, m.dilation
    # The full extent the box reaches starts at input row y0*s-p; rows outside the plane are
    # not computed where both ends overhang (a box over the whole plane: the conv's padding).
    top, left = y0 * s[0] - p[0], x0 * s[1] - p[1]
    extent = [
        (n - 1) * s[a] + d[a] * (weight.shape[2 + a] - 1) + 1
        for a, n in enumerate(sig.t.shape[-2:])
    ]
    trim = tuple(
        max(0, min(-start, start + extent[a] - in_shape[-2 + a]))
        for a, start in enumerate((top, left))
    )
    transposed = w.get("transposed") if sig.channel is None else None
    out = _transposed_crop(sig.t, weight, s, d, m.groups, trim, transposed)
    top, left = top + trim[0], left + trim[1]
    ny0, nx0 = max(top, 0), max(left, 0)
    ny1 = min(top + out.shape[-2], in_shape[-2])
    nx1 = min(left + out.shape[-1], in_shape[-1])
    grad = out[..., ny0 - top : ny1 - top, nx0 - left : nx1 - left]
    return _Boxed(grad, (ny0, ny1, nx0, nx1), None, True)


def _cat_dim(step: Step) -> int:
    node = step.node
    return node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)


def _cat_boxed(step: Step, rec: Record, sig: _Boxed) -> list:
    """A channel concatenation: each part of the signal goes back to its input."""
    sizes = [_input_shape(rec, i)[1] for i in step.inputs]
    if sig.channel is not None:
        out, start = [], 0
        for size in sizes:
            inside = start <= sig.channel < start + size
            out.append(_Boxed(sig.t, sig.box, sig.channel - start) if inside else None)
            start += size
        return out
    return [_Boxed(t, sig.box, None) for t in torch.split(sig.t, sizes, dim=1)]


def _unit_backward(
    steps: list[Step],
    weights: list[dict[str, Tensor]],
    rec: Record,
    row: int,
    start: int,
    unit: tuple[int, int, int],
    value: Tensor,
    method: str,
) -> Tensor | None:
    """The projection of one unit, computed only inside its receptive field.

    The signal is held as a box of each step's plane: a strided layer's box grows by its
    window on the way down, and everything outside stays exactly zero, so the result equals
    the full backward pass. Where a tensor has several readers (a residual connection) their
    boxes are joined. While only one channel can be nonzero (down to the first conv) we carry
    that channel alone and use that channel's slice of the filters. Returns None when a step
    on the way cannot be cropped (the caller then runs the full pass).
    """
    channel, y, x = unit
    signals: dict[int, _Boxed] = {
        start: _Boxed(value.reshape(1, 1, 1, 1), (y, y + 1, x, x + 1), channel)
    }
    for step in reversed(steps[: start + 1]):
        sig = signals.pop(step.index, None)
        if sig is None:
            continue
        parts = _boxed_step(step, weights[step.index], rec, row, sig, method)
        if parts is None:
            return None
        for index, part in zip(step.inputs, parts, strict=True):
            if part is not None:
                channels = _input_shape(rec, index)[1]
                signals[index] = _join(signals.get(index), part, channels)
    sig = signals.get(-1)
    h, w_ = rec.image_shape[-2:]
    full = value.new_zeros(1, rec.image_shape[1], h, w_)
    if sig is not None:
        sig = sig.full_channels(rec.image_shape[1])
        full[..., sig.box[0] : sig.box[1], sig.box[2] : sig.box[3]] = sig.t
    return full


def _transposed_crop(
    grad: Tensor, weight: Tensor, stride, dilation, groups: int, trim=(0, 0), transposed=None
) -> Tensor:
    """``conv_transpose2d`` over the full extent every output reaches, less ``trim`` rows
    and columns at both ends.

    For one signal, three routes, each the fastest on the CPU where it is used: 1x1 filters
    (most of a ResNet's) are one matrix product; a small plane (a cropped unit near the top)
    and large strided filters (AlexNet's 11x11/4, a ResNet stem's 7x7/2) go through one matrix
    product and ``fold`` (col2im), 1.4-2x faster than ``conv_transpose2d`` there; the rest
    (3x3 filters on large planes) is ``conv_transpose2d``.
    """
    c_out, h, w = grad.shape[1:]
    kh, kw = weight.shape[-2:]
    if groups != 1 or grad.shape[0] != 1:
        return F.conv_transpose2d(grad, weight, None, stride, trim, 0, groups, dilation)
    if (kh, kw) == (1, 1) and stride == (1, 1) and trim == (0, 0):
        cols = _filters_times(weight, grad.reshape(1, c_out, h * w), transposed)
        return cols.reshape(1, -1, h, w)
    small = h * w <= _SMALL_PLANE
    if not (small or (stride != (1, 1) and (kh * kw == 1 or kh * kw >= 25))):
        return F.conv_transpose2d(grad, weight, None, stride, trim, 0, groups, dilation)
    rows = max(1, _BAND_VALUES // (weight[0].numel() * w))
    if rows >= h:
        cols = _filters_times(weight, grad.reshape(1, c_out, h * w), transposed)
        size = (_extent(h, kh, stride[0], dilation[0]) - 2 * trim[0],)
        size += (_extent(w, kw, stride[1], dilation[1]) - 2 * trim[1],)
        return F.fold(cols, size, (kh, kw), dilation=dilation, padding=trim, stride=stride)
    return _banded_fold(grad, weight, stride, dilation, trim, rows, transposed)


def _extent(n: int, k: int, stride: int, dilation: int) -> int:
    """The rows (or columns) that ``n`` signal rows reach through a transposed filter."""
    return (n - 1) * stride + dilation * (k - 1) + 1


_BAND_VALUES = 1 << 18  # column-matrix values per band: 1 MB, within the L2 cache


def _banded_fold(
    grad: Tensor, weight: Tensor, stride, dilation, trim, rows: int, transposed=None
) -> Tensor:
    """The matmul + ``fold`` route, a band of ``rows`` signal rows at a time.

    A whole-plane column matrix (7.4 MB for a ResNet stem) is a fresh block of memory on each
    call; bands of 1 MB stay in the cache and are reused. Overlapping bands add up.
    """
    c_out, h, w = grad.shape[1:]
    kh, kw = weight.shape[-2:]
    width = _extent(w, kw, stride[1], dilation[1])
    full = grad.new_zeros(1, weight.shape[1], _extent(h, kh, stride[0], dilation[0]), width)
    for r0 in range(0, h, rows):
        band = grad[:, :, r0 : r0 + rows]
        cols = _filters_times(weight, band.reshape(1, c_out, -1), transposed)
        height = _extent(band.shape[2], kh, stride[0], dilation[0])
        part = F.fold(cols, (height, width), (kh, kw), dilation=dilation, stride=stride)
        full[:, :, r0 * stride[0] : r0 * stride[0] + height] += part
    return full[:, :, trim[0] : full.shape[2] - trim[0], trim[1] : width - trim[1]]


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
    off = rec.switches[step.index][row : row + 1, ch, y0:y1, x0:x1]
    width, dev = ix1 - ix0, off.device
    oy = torch.arange(y0, y1, device=dev).view(-1, 1) * g.stride[0] - g.padding[0] - iy0
    ox = torch.arange(x0, x1, device=dev).view(1, -1) * g.stride[1] - g.padding[1] - ix0
    flat = torch.take(window_steps(g, width, dev), off.long()) + (oy * width + ox)
    return unpool(grad, flat, (iy1 - iy0, width)), (iy0, iy1, ix0, ix1)


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
    n = rec.batch
    outs: list[Tensor | None] = []
    prepared = _prepared(chain, weights, start, -1)
    with torch.no_grad():
        for k in range(top.shape[0]):
            unit = _unit_of(top[k])
            row = k if n == top.shape[0] and n > 1 else 0
            outs.append(
                None
                if unit is None
                else _unit_backward(chain, prepared, rec, row, start, unit, top[k][unit], method)
            )
    rest = [k for k, o in enumerate(outs) if o is None]
    if rest:
        if len(rest) == top.shape[0]:
            return backward(chain, weights, rec, top, start, method)
        sub = rec if n == 1 else rec.rows(rest)
        full = backward(chain, weights, sub, top[rest], start, method)
        for j, k in enumerate(rest):
            outs[k] = full[j : j + 1]
    return torch.cat(outs)
