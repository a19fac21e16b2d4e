"""Receptive fields: which input pixels can influence a unit.

Two views: the nominal size and stride of a layer's units (the textbook recurrence, ignoring
image borders), and the exact box of one unit in one image, found by walking the unit's
interval back through every layer and clipping at the borders, so a unit maps to its patch.

Example:
    >>> import torch.nn as nn
    >>> from zfwidgets.core.chain import build_chain
    >>> chain = build_chain(nn.Sequential(nn.Conv2d(1, 1, 3), nn.MaxPool2d(3, 2)))
    >>> [(r.size, r.stride) for r in nominal_fields(chain)]
    [(3, 1), (5, 2)]
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn
from torch.nn.modules.utils import _pair

from zfwidgets.core.chain import Step

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


def _window(step: Step):
    """(kernel, stride, padding, dilation) pairs of a sliding-window step, or None."""
    m = step.module
    if step.kind == "conv":
        return m.kernel_size, m.stride, m.padding, m.dilation
    if step.kind == "maxpool" or isinstance(m, nn.AvgPool2d):
        stride = m.stride if m.stride is not None else m.kernel_size
        dilation = getattr(m, "dilation", 1)
        return _pair(m.kernel_size), _pair(stride), _pair(m.padding), _pair(dilation)
    return None


def nominal_fields(chain: list[Step]) -> list[Field]:
    """Receptive-field size and stride (heights; equal for square layers) after each step.

    Fully connected steps and adaptive pools see the whole image: their size is reported as 0.
    """
    size, stride, whole = 1, 1, False
    fields = []
    for step in chain:
        win = _window(step)
        if win is not None:
            k, s, _, d = win
            size += d[0] * (k[0] - 1) * stride
            stride *= s[0]
        elif step.kind in ("flatten", "linear") or isinstance(step.module, nn.AdaptiveAvgPool2d):
            whole = True
        fields.append(Field(0 if whole else size, stride))
    return fields


def _back_interval(step: Step, lo: int, hi: int, in_len: int, out_len: int, axis: int):
    """Input interval [lo, hi] (inclusive) that output interval [lo, hi] of ``step`` reads."""
    win = _window(step)
    if win is not None:
        k, s, p, d = win
        lo = lo * s[axis] - p[axis]
        hi = hi * s[axis] - p[axis] + d[axis] * (k[axis] - 1)
    elif isinstance(step.module, nn.AdaptiveAvgPool2d):
        lo = math.floor(lo * in_len / out_len)
        hi = math.ceil((hi + 1) * in_len / out_len) - 1
    return max(lo, 0), min(hi, in_len - 1)


def unit_box(chain: list[Step], io_shapes: list[tuple], index: int, y: int, x: int) -> Box:
    """Exact input box of unit ``(y, x)`` in the output of step ``index``.

    ``io_shapes`` has one more entry than ``chain``: the input shape (C, H, W) then the output
    shape of every step. A unit at or after a flatten reads the whole image.
    """
    h, w = io_shapes[0][-2:]
    if any(s.kind in ("flatten", "linear") for s in chain[: index + 1]):
        return Box(0, 0, h, w)
    ys, xs = (y, y), (x, x)
    for step in reversed(chain[: index + 1]):
        in_h, in_w = io_shapes[step.index][-2:]
        out_h, out_w = io_shapes[step.index + 1][-2:]
        ys = _back_interval(step, *ys, in_h, out_h, 0)
        xs = _back_interval(step, *xs, in_w, out_w, 1)
    return Box(ys[0], xs[0], ys[1] + 1, xs[1] + 1)
