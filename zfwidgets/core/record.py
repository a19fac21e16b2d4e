"""One forward pass that records everything later projections need.

For each image we keep, per layer kind:

* max pool: the switches, one byte per pooled unit: the offset of the max inside its window
  (0..8 for a 3x3 window). This is all the deconvnet's unpooling needs.
* ReLU: the sign of its input, bit-packed (8 units per byte), for guided backprop and saliency.
* local response norm: its input, because the exact gradient of LRN (saliency, guided) depends
  on it. The deconvnet itself skips contrast normalisation on the way down.
* the activations of the requested layers, and the output of the last step run: the class
  scores after a full pass; a pass for a projection stops at the projected layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from zfwidgets.core.chain import Step
from zfwidgets.core.layers import PoolGeometry, pool_geometry, step_forward

__all__ = ["Record", "record_forward", "pack_bits", "unpack_bits", "encode_switches"]

_BIT_WEIGHTS = torch.tensor([1, 2, 4, 8, 16, 32, 64, 128], dtype=torch.uint8)


def pack_bits(mask: Tensor) -> Tensor:
    """Packs a bool tensor (N, ...) into uint8 (N, bytes), eight values per byte.

    Each sample is packed (and zero padded) on its own, so records of several images can be
    concatenated along the batch.
    """
    flat = mask.reshape(mask.shape[0], -1).to(torch.uint8)
    flat = torch.nn.functional.pad(flat, (0, (-flat.shape[1]) % 8))
    weights = _BIT_WEIGHTS.to(flat.device)
    return (flat.view(flat.shape[0], -1, 8) * weights).sum(2, dtype=torch.uint8)


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
    dy = torch.div(indices // in_width - oy, g.dilation[0], rounding_mode="floor")
    dx = torch.div(indices % in_width - ox, g.dilation[1], rounding_mode="floor")
    offsets = dy * g.kernel[1] + dx
    small = g.kernel[0] * g.kernel[1] <= 256
    return offsets.to(torch.uint8 if small else torch.int32)


def decode_switches(offsets: Tensor, g: PoolGeometry, in_width: int) -> Tensor:
    """Offsets back to flat input indices (int64), as ``max_pool2d`` would return them."""
    oy, ox = _window_origins(g, offsets.shape[-2:], offsets.device)
    off = offsets.long()
    iy = oy + (off // g.kernel[1]) * g.dilation[0]
    ix = ox + (off % g.kernel[1]) * g.dilation[1]
    return iy * in_width + ix


@dataclass
class Record:
    """What one forward pass left behind for later projections (batch of N images).

    Attributes:
        input_shapes: the input shape of every step (batch included).
        outputs: the kept activations, by step index (the output of that step).
        switches: max-pool switches by step index (offsets inside the window).
        masks: bit-packed ``input > 0`` of every ReLU, by step index.
        lrn_inputs: inputs of local response norm layers, by step index.
        depth: the index of the last step the forward pass ran (steps 0..depth are recorded).
    """

    input_shapes: list[torch.Size]
    depth: int = -1
    outputs: dict[int, Tensor] = field(default_factory=dict)
    switches: dict[int, Tensor] = field(default_factory=dict)
    masks: dict[int, Tensor] = field(default_factory=dict)
    lrn_inputs: dict[int, Tensor] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        """Bytes held by the recorded tensors."""
        groups = (self.outputs, self.switches, self.masks, self.lrn_inputs)
        return sum(t.numel() * t.element_size() for g in groups for t in g.values())

    @classmethod
    def cat(cls, records: list[Record]) -> Record:
        """One record holding several images' records along the batch (for batched projections).

        Only activations that every record kept are carried over.
        """
        depth = min(r.depth for r in records)
        n = sum(r.input_shapes[0][0] for r in records)

        def joined(group: str) -> dict[int, Tensor]:
            keys = set.intersection(*(set(getattr(r, group)) for r in records))
            keys = {i for i in keys if i <= depth}  # the deeper records' extra steps are dropped
            return {i: torch.cat([getattr(r, group)[i] for r in records]) for i in keys}

        return cls(
            input_shapes=[torch.Size((n, *s[1:])) for s in records[0].input_shapes[: depth + 1]],
            depth=depth,
            outputs=joined("outputs"),
            switches=joined("switches"),
            masks=joined("masks"),
            lrn_inputs=joined("lrn_inputs"),
        )

    def split(self) -> list[Record]:
        """One record per image of the batch (copies, so each can be cached on its own)."""
        n = self.input_shapes[0][0]

        def one(group: dict[int, Tensor], k: int) -> dict[int, Tensor]:
            return {i: t[k : k + 1].clone() for i, t in group.items()}

        return [
            Record(
                input_shapes=[torch.Size((1, *s[1:])) for s in self.input_shapes],
                depth=self.depth,
                outputs=one(self.outputs, k),
                switches=one(self.switches, k),
                masks=one(self.masks, k),
                lrn_inputs=one(self.lrn_inputs, k),
            )
            for k in range(n)
        ]

    def relu_mask(self, index: int) -> Tensor:
        """``input > 0`` of the ReLU at ``index`` as a bool tensor."""
        return unpack_bits(self.masks[index], self.input_shapes[index])

    def pool_indices(self, step: Step) -> Tensor:
        """Flat input indices of every pooled unit's max, shape (N, C, Ho, Wo)."""
        width = self.input_shapes[step.index][-1]
        return decode_switches(self.switches[step.index], pool_geometry(step.module), width)


def record_forward(
    chain: list[Step],
    weights: list[dict[str, Tensor]],
    x: Tensor,
    keep: set[int],
    depth: int | None = None,
) -> Record:
    """Runs ``x`` (N, C, H, W) through ``chain`` and records switches, masks and ``keep``.

    ``depth``: the last step to run (default the end of the chain); its output is always kept.
    A projection from a layer needs nothing above it, so the forward pass can stop there.
    """
    last = len(chain) - 1 if depth is None else depth
    rec = Record(input_shapes=[], depth=last)
    with torch.no_grad():
        for step in chain[: last + 1]:
            rec.input_shapes.append(x.shape)
            if step.kind == "maxpool":
                g = pool_geometry(step.module)
                y, idx = torch.nn.functional.max_pool2d(
                    x, g.kernel, g.stride, g.padding, g.dilation, g.ceil_mode, return_indices=True
                )
                rec.switches[step.index] = encode_switches(idx, g, x.shape[-1])
            else:
                if step.kind == "relu":
                    rec.masks[step.index] = pack_bits(x > 0)
                elif step.kind == "lrn":
                    rec.lrn_inputs[step.index] = x
                y = step_forward(step, weights[step.index], x)
            if step.index in keep or step.index == last:
                rec.outputs[step.index] = y
            x = y
    return rec
