"""One forward pass that records everything later projections need.

For each image we keep, per step (one per call: a module used twice has two records):

* max pool: the switches, one byte per pooled unit: the offset of the max inside its window
  (0..8 for a 3x3 window). This is all the deconvnet's unpooling needs.
* ReLU: ``input > 0``, bit-packed (8 units per byte), for guided backprop and saliency;
  ReLU6: ``0 < input < 6``, the same way.
* local response norm and generic steps (no rule of their own): their inputs, because their
  exact gradient depends on them. The deconvnet skips contrast normalisation on the way down.
* the shape of every step's output, and the side values the forward read (``x.size(0)``...).
* the activations of the requested layers, and the output of the last step run: the class
  scores after a full pass; a pass for a projection stops at the projected layer.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from zfwidgets.core.graph import Graph, Step
from zfwidgets.core.layers import (
    PoolGeometry,
    Weights,
    evaluate_in_place,
    max_pool,
    pool_geometry,
    run_graph,
)

__all__ = [
    "Record",
    "record_forward",
    "pack_bits",
    "unpack_bits",
    "encode_switches",
    "in_one_block",
    "window_steps",
]

_BIT_WEIGHTS = torch.tensor([1, 2, 4, 8, 16, 32, 64, 128], dtype=torch.uint8)
_GATHER_BITS = 0x0102040810204080  # sum of 2 ** (56 - 7 * j), j = 0..7


def pack_bits(mask: Tensor) -> Tensor:
    """Packs a bool tensor (N, ...) into uint8 (N, bytes), eight values per byte.

    Each sample is packed (and zero padded) on its own, so records of several images can be
    concatenated along the batch. Bit ``j`` of byte ``i`` holds value ``8 * i + j``.

    Example:
        >>> pack_bits(torch.tensor([[True, False, True, True, False, False, False, False, True]]))
        tensor([[13,  1]], dtype=torch.uint8)
    """
    flat = mask.reshape(mask.shape[0], -1)
    if flat.dtype != torch.bool:
        flat = flat != 0
    u8 = flat.view(torch.uint8)
    if flat.shape[1] % 8:
        u8 = torch.nn.functional.pad(u8, (0, -flat.shape[1] % 8))
    if sys.byteorder != "little":  # the one-multiply trick below reads bytes little-endian
        weights = _BIT_WEIGHTS.to(u8.device)
        return (u8.view(u8.shape[0], -1, 8) * weights).sum(2, dtype=torch.uint8)
    # Eight 0/1 bytes read as one int64: one multiply gathers bit j of byte j into the top
    # byte (the products never overlap), ten times faster than weighting and summing bytes.
    return ((u8.contiguous().view(torch.int64) * _GATHER_BITS) >> 56).to(torch.uint8)


def unpack_bits(packed: Tensor, shape: torch.Size) -> Tensor:
    """Inverse of :func:`pack_bits`: a bool tensor of ``shape`` (N, ...)."""
    bits = (packed.unsqueeze(2) & _BIT_WEIGHTS.to(packed.device)) != 0
    per_sample = 1
    for d in shape[1:]:
        per_sample *= d
    return bits.reshape(shape[0], -1)[:, :per_sample].reshape(shape)


def _window_origins(g: PoolGeometry, out_hw: tuple[int, int], device) -> tuple[Tensor, Tensor]:
    """Input coordinates of the top-left corner of every pooling window."""
    oy = torch.arange(out_hw[0], device=device) * g.stride[0] - g.padding[0]
    ox = torch.arange(out_hw[1], device=device) * g.stride[1] - g.padding[1]
    return oy.view(-1, 1), ox.view(1, -1)


def encode_switches(indices: Tensor, g: PoolGeometry, in_width: int) -> Tensor:
    """Flat max-pool indices into offsets inside each window (uint8 when the window allows)."""
    oy, ox = _window_origins(g, indices.shape[-2:], indices.device)
    # int32 arithmetic and one division: 3x faster than int64 // and % (planes < 2**31).
    flat = indices.to(torch.int32)
    row = flat // in_width
    dy, dx = row - oy.to(torch.int32), flat - row * in_width - ox.to(torch.int32)
    if g.dilation != (1, 1):
        dy = torch.div(dy, g.dilation[0], rounding_mode="floor")
        dx = torch.div(dx, g.dilation[1], rounding_mode="floor")
    offsets = dy * g.kernel[1] + dx
    small = g.kernel[0] * g.kernel[1] <= 256
    return offsets.to(torch.uint8 if small else torch.int32)


def window_steps(g: PoolGeometry, width: int, device=None) -> Tensor:
    """For each window offset (0..k*k-1), its flat step from the window's corner in a plane
    ``width`` wide. Looking switches up in it (``torch.take``, 2x faster than indexing) turns
    them into positions without a division per pooled unit.

    Example:
        >>> window_steps(PoolGeometry((3, 3), (2, 2), (0, 0), (1, 1), False), width=10)
        tensor([ 0,  1,  2, 10, 11, 12, 20, 21, 22])
    """
    k = torch.arange(g.kernel[0] * g.kernel[1], device=device)
    return (k // g.kernel[1]) * (g.dilation[0] * width) + (k % g.kernel[1]) * g.dilation[1]


def decode_switches(offsets: Tensor, g: PoolGeometry, in_width: int) -> Tensor:
    """Offsets back to flat input indices (int64), as ``max_pool2d`` would return them."""
    oy, ox = _window_origins(g, offsets.shape[-2:], offsets.device)
    steps = torch.take(window_steps(g, in_width, offsets.device), offsets.long())
    return steps + (oy * in_width + ox)


_GROUPS = ("outputs", "switches", "masks", "saved")


@dataclass
class Record:
    """What one forward pass left behind for later projections (batch of N images).

    Attributes:
        image_shape: the input's shape (batch included).
        input_shapes: per step, the shape of its first image-path input.
        shapes: per step, the shape of its output (a list of shapes for a tuple output).
        outputs: the kept activations, by step index (the output of that step).
        switches: max-pool switches by step index (offsets inside the window).
        masks: bit-packed rectifier masks by step index (``x > 0``; ``0 < x < 6`` for ReLU6).
        saved: the image-path inputs of steps whose backward needs them (LRN, generic).
        side: values the forward computed beside the image path (shapes, parameters), by fx
            node; they belong to one batch size.
        depth: the index of the last step the forward pass ran (steps 0..depth are recorded).
    """

    image_shape: torch.Size
    input_shapes: list[torch.Size] = field(default_factory=list)
    shapes: list[Any] = field(default_factory=list)
    depth: int = -1
    outputs: dict[int, Tensor] = field(default_factory=dict)
    switches: dict[int, Tensor] = field(default_factory=dict)
    masks: dict[int, Tensor] = field(default_factory=dict)
    saved: dict[int, tuple[Tensor, ...]] = field(default_factory=dict)
    side: dict[Any, Any] = field(default_factory=dict)

    @property
    def batch(self) -> int:
        """Images in this record."""
        return self.image_shape[0]

    @property
    def nbytes(self) -> int:
        """Bytes held by the recorded tensors."""
        total = 0
        for group in _GROUPS:
            for value in getattr(self, group).values():
                for t in value if isinstance(value, tuple) else (value,):
                    total += t.numel() * t.element_size()
        return total

    def _with(self, n: int, fn) -> Record:
        """A record of ``n`` images whose every recorded tensor is ``fn(group, index, t)``."""

        def mapped(group: str) -> dict:
            out = {}
            for i, v in getattr(self, group).items():
                out[i] = tuple(fn(t) for t in v) if isinstance(v, tuple) else fn(v)
            return out

        return Record(
            image_shape=torch.Size((n, *self.image_shape[1:])),
            input_shapes=[_rebatch(s, n) for s in self.input_shapes],
            shapes=[_rebatch(s, n) for s in self.shapes],
            depth=self.depth,
            **{g: mapped(g) for g in _GROUPS},
            side=self.side,
        )

    @classmethod
    def cat(cls, records: list[Record]) -> Record:
        """One record holding several images' records along the batch (for batched projections).

        Only activations that every record kept are carried over. Side values are those of
        the first record (one image): graphs whose steps read them are projected one image
        at a time.
        """
        depth = min(r.depth for r in records)
        n = sum(r.batch for r in records)
        first = records[0]
        out = Record(
            image_shape=torch.Size((n, *first.image_shape[1:])),
            input_shapes=[_rebatch(s, n) for s in first.input_shapes[: depth + 1]],
            shapes=[_rebatch(s, n) for s in first.shapes[: depth + 1]],
            depth=depth,
            side=first.side,
        )
        for group in _GROUPS:
            keys = set.intersection(*(set(getattr(r, group)) for r in records))
            joined = getattr(out, group)
            for i in sorted(k for k in keys if k <= depth):
                values = [getattr(r, group)[i] for r in records]
                if isinstance(values[0], tuple):
                    joined[i] = tuple(torch.cat(parts) for parts in zip(*values, strict=True))
                else:
                    joined[i] = torch.cat(values)
        return out

    def split(self) -> list[Record]:
        """One record per image of the batch (copies, so each can be cached on its own)."""
        return [self.rows([k], copy=True) for k in range(self.batch)]

    def rows(self, rows: list[int], copy: bool = False) -> Record:
        """The records of some images of a batched record."""
        if copy and len(rows) == 1:
            k = rows[0]
            return in_one_block(self._with(1, lambda t: t[k : k + 1].clone()))
        pick = torch.tensor(rows)
        return self._with(len(rows), lambda t: t[pick.to(t.device)])

    def relu_mask(self, index: int) -> Tensor:
        """The rectifier mask of the step at ``index`` as a bool tensor."""
        return unpack_bits(self.masks[index], self.input_shapes[index])

    def pool_indices(self, step: Step) -> Tensor:
        """Flat input indices of every pooled unit's max, shape (N, C, Ho, Wo)."""
        width = self.input_shapes[step.index][-1]
        return decode_switches(self.switches[step.index], pool_geometry(step.module), width)


def _rebatch(shape: Any, n: int) -> Any:
    if isinstance(shape, torch.Size):
        return torch.Size((n, *shape[1:])) if len(shape) else shape
    return [_rebatch(s, n) for s in shape] if isinstance(shape, list) else shape


def _shape_of(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.shape
    if isinstance(value, tuple | list):
        return [_shape_of(v) for v in value]
    return None


def record_forward(
    graph: Graph,
    weights: Weights,
    x: Tensor,
    keep: set[int],
    depth: int | None = None,
) -> Record:
    """Runs ``x`` (N, C, H, W) through ``graph`` and records switches, masks and ``keep``.

    ``depth``: the last step to run (default the end of the graph); its output is always kept.
    A projection from a layer needs nothing above it, so the forward pass can stop there.
    """
    steps = graph.steps
    last = len(steps) - 1 if depth is None else depth
    rec = Record(image_shape=x.shape, depth=last)
    rec.input_shapes = [None] * (last + 1)
    rec.shapes = [None] * (last + 1)

    kept = frozenset(steps[i].node for i in (*keep, last) if 0 <= i <= last)

    def compute(step: Step, w: Weights, env: dict) -> Any:
        inputs = [env[n] for n in step.node.all_input_nodes if graph.step_of.get(n) is not None]
        first = inputs[0] if inputs else None
        rec.input_shapes[step.index] = first.shape if isinstance(first, Tensor) else None
        if step.kind == "maxpool":
            g = pool_geometry(step.module)
            y, idx = max_pool(
                first, g.kernel, g.stride, g.padding, g.dilation, g.ceil_mode, indices=True
            )
            rec.switches[step.index] = encode_switches(idx, g, first.shape[-1])
        else:
            if step.kind == "relu6":
                rec.masks[step.index] = pack_bits((first > 0) & (first < 6))
            elif step.kind in ("lrn", "generic"):
                rec.saved[step.index] = tuple(inputs)
            y = evaluate_in_place(step, w, env, kept)
            if step.kind == "relu":  # relu(x) != 0 exactly where x > 0; bool() is 5x faster
                rec.masks[step.index] = pack_bits(y.bool())
        rec.shapes[step.index] = _shape_of(y)
        return y

    with torch.no_grad():
        rec.outputs = run_graph(graph, weights, x, last, keep, compute, rec.side)
    return in_one_block(rec)


def in_one_block(rec: Record) -> Record:
    """Moves a CPU record's byte tensors (switches and masks) into one block of memory.

    Dozens of small blocks kept alive between a forward pass's large temporary ones pin
    the allocator's heap, so the next image's pass runs on fresh pages: 1,000-4,000 page
    faults and 10-30 ms of a 150 ms ResNet-50 first projection. One block made after the pass does
    not. Returns ``rec``, whose values are now views of the block (the same values).

    Example:
        >>> rec = Record(torch.Size((1, 3, 8, 8)), depth=4)
        >>> rec.masks = {1: torch.ones(1, 8, dtype=torch.uint8), 4: torch.ones(1, 2).byte()}
        >>> block = in_one_block(rec).masks
        >>> block[1].untyped_storage().data_ptr() == block[4].untyped_storage().data_ptr()
        True
    """
    parts = [
        (group, index, t)
        for group in ("switches", "masks")
        for index, t in getattr(rec, group).items()
        if t.dtype == torch.uint8 and t.device.type == "cpu"
    ]
    if len(parts) < 2:
        return rec
    block = torch.cat([t.reshape(-1) for *_, t in parts])
    start = 0
    for group, index, t in parts:
        getattr(rec, group)[index] = block[start : start + t.numel()].view(t.shape)
        start += t.numel()
    return rec
