"""Receptive fields: which input pixels can influence a unit.

Two views: the nominal size and stride of a layer's units (the textbook recurrence, ignoring
image borders), and the exact box of one unit in one image, found by walking the unit's
interval back through every layer and clipping at the borders, so a unit maps to its patch.

Example:
    >>> import torch.nn as nn
    >>> from zfwidgets.core.graph import build_graph
    >>> graph = build_graph(nn.Sequential(nn.Conv2d(1, 1, 3), nn.MaxPool2d(3, 2)))
    >>> [(r.size, r.stride) for r in nominal_fields(graph.steps)]
    [(3, 1), (5, 2)]
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch.nn.functional as F
from torch import nn

from zfwidgets.core.graph import Step
from zfwidgets.core.layers import window

__all__ = ["Box", "Field", "nominal_fields", "unit_box"]


@dataclass(frozen=True)
class Box:
    """Input rows ``top..bottom-1`` and columns ``left..right-1`` (end exclusive)."""

    top: int
    left: int
    bottom: int
    right: int

    @property
    def slices(self) -> tuple[slice, slice]:
        """``(rows, cols)`` slices, to cut the patch out of an image."""
        return slice(self.top, self.bottom), slice(self.left, self.right)


@dataclass(frozen=True)
class Field:
    """Nominal receptive field of a layer's units: size and stride in input pixels."""

    size: int
    stride: int


_POINTWISE = ("relu", "relu6", "bn", "lrn", "dropout", "identity", "add", "cat")
_WHOLE = ("flatten", "linear")


def _keeps_plane(shape_in, shape_out) -> bool:
    """A reshape or generic step that leaves the (H, W) plane as it is (channel shuffle)."""
    return (
        isinstance(shape_in, tuple)
        and isinstance(shape_out, tuple)
        and len(shape_in) >= 3
        and len(shape_out) >= 3
        and tuple(shape_in[-2:]) == tuple(shape_out[-2:])
    )


def nominal_fields(steps: list[Step], io_shapes: list[tuple] | None = None) -> list[Field]:
    """Receptive-field size and stride (heights; equal for square layers) after each step.

    Fully connected steps and adaptive pools see the whole image: their size is reported as 0.
    Where branches meet, the field is the largest of theirs. ``io_shapes`` (the input shape,
    then every step's output shape) tells which other steps keep the plane; without it they
    are assumed to.
    """
    fields: list[Field] = []
    whole: list[bool] = []

    def at(i: int) -> tuple[int, int, bool]:
        return (1, 1, False) if i < 0 else (fields[i].size, fields[i].stride, whole[i])

    for step in steps:
        ins = [at(i) for i in step.inputs] or [(1, 1, False)]
        size, stride = max(f[0] for f in ins), max(f[1] for f in ins)
        is_whole = any(f[2] for f in ins)
        win = window(step)
        if win is not None:
            k, s, _, d = win
            size += d[0] * (k[0] - 1) * stride
            stride *= s[0]
        elif step.kind in _WHOLE or isinstance(step.module, nn.AdaptiveAvgPool2d):
            is_whole = True
        elif step.kind not in _POINTWISE and io_shapes is not None:
            first = step.inputs[0] if step.inputs else -1
            if not _keeps_plane(io_shapes[first + 1], io_shapes[step.index + 1]):
                is_whole = True
        fields.append(Field(0 if is_whole else size, stride))
        whole.append(is_whole)
    return fields


def _back_interval(step: Step, lo: int, hi: int, in_len: int, out_len: int, axis: int):
    """Input interval [lo, hi] (inclusive) that output interval [lo, hi] of ``step`` reads."""
    win = window(step)
    if win is not None:
        k, s, p, d = win
        lo = lo * s[axis] - p[axis]
        hi = hi * s[axis] - p[axis] + d[axis] * (k[axis] - 1)
    elif isinstance(step.module, nn.AdaptiveAvgPool2d):
        lo = math.floor(lo * in_len / out_len)
        hi = math.ceil((hi + 1) * in_len / out_len) - 1
    elif step.kind == "pad" or (step.kind == "linear_op" and in_len != out_len):
        before = _pad_before(step, axis)
        if before is None:
            return None
        lo, hi = lo - before, hi - before
    return max(lo, 0), min(hi, in_len - 1)


def _pad_before(step: Step, axis: int) -> int | None:
    """Rows (axis 0) or columns (axis 1) a zero pad adds before the plane, or None."""
    if step.module is not None:
        pads = step.module.padding
    elif step.node.target is F.pad:
        pads = step.node.args[1] if len(step.node.args) > 1 else step.node.kwargs.get("pad")
    else:
        return None
    if (
        not isinstance(pads, tuple | list)
        or len(pads) < 4
        or not all(isinstance(p, int) for p in pads)
    ):
        return None
    return pads[2] if axis == 0 else pads[0]


def _union(a, b):
    if a is None:
        return b
    return (min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3]))


def unit_box(steps: list[Step], io_shapes: list[tuple], index: int, y: int, x: int) -> Box:
    """Exact input box of unit ``(y, x)`` in the output of step ``index``.

    ``io_shapes`` has one more entry than ``steps``: the input shape (C, H, W) then the output
    shape of every step. The unit's rows and columns are walked back through every step to
    the input; where branches meet the boxes are joined. A unit at or after a step that mixes
    the whole plane (flatten, linear) reads the whole image.
    """
    h, w = io_shapes[0][-2:]
    whole = Box(0, 0, h, w)
    boxes = {index: (y, y, x, x)}
    for step in reversed(steps[: index + 1]):
        box = boxes.pop(step.index, None)
        if box is None:
            continue
        out_shape = io_shapes[step.index + 1]
        for i in step.inputs:
            in_shape = io_shapes[i + 1]
            back = _back_box(step, box, in_shape, out_shape)
            if back is None:
                return whole
            boxes[i] = _union(boxes.get(i), back)
    box = boxes.get(-1)
    if box is None:
        return whole
    return Box(box[0], box[2], box[1] + 1, box[3] + 1)


def _back_box(step: Step, box, in_shape, out_shape):
    """The box of one input that a box of ``step``'s output reads, or None for all of it."""
    if step.kind in _WHOLE or len(in_shape) < 3 or len(out_shape) < 3:
        return None
    plain = step.kind in _POINTWISE or _keeps_plane(tuple(in_shape), tuple(out_shape))
    if not plain and window(step) is None and step.kind not in ("pad", "linear_op"):
        if not isinstance(step.module, nn.AdaptiveAvgPool2d):
            return None
    ys = _back_interval(step, box[0], box[1], in_shape[-2], out_shape[-2], 0)
    xs = _back_interval(step, box[2], box[3], in_shape[-1], out_shape[-1], 1)
    if ys is None or xs is None:
        return None
    return (*ys, *xs)
