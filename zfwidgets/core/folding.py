"""Batch norms folded into the convolution before them.

In inference mode a batch norm multiplies each channel by ``s = weight / sqrt(var + eps)``
and shifts it; right after a convolution that is the same as the convolution with filters
``W * s`` and bias ``s * (b - mean) + shift``. Folding saves one pass over a large tensor at
every batch norm of a ResNet, in the occlusion sweeps' forward passes and in every backward
pass (where only ``s`` matters). The folded filters are made once per set of weights and kept
with them: the inspector replaces its weights on an update, it never changes them in place.

Only pairs whose convolution output nothing else reads are folded, so no one ever sees the
convolution's own output change.

Example:
    >>> import torch.nn as nn
    >>> from zfwidgets.core.graph import build_graph
    >>> from zfwidgets.core.layers import graph_weights
    >>> model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU()).eval()
    >>> graph = build_graph(model)
    >>> folds = folded_norms(graph.steps, graph_weights(graph, model, torch.device("cpu")))
    >>> folds.pairs, tuple(folds.weight[0].shape)
    ({1: 0}, (2, 1, 3, 3))
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from zfwidgets.core.graph import Step
from zfwidgets.core.layers import Weights

__all__ = ["Folds", "folded_norms", "forward_weights", "norm_scale"]


def norm_scale(step: Step, w: dict[str, Tensor]) -> Tensor:
    """What a batch norm in inference mode multiplies each channel by."""
    scale = torch.rsqrt(w["running_var"] + step.module.eps)
    return scale * w["weight"] if "weight" in w else scale


@dataclass(frozen=True)
class Folds:
    """``pairs``: batch norm index -> the conv index it reads; per such conv, the folded
    ``weight`` and ``bias``; ``transposed``: per (conv index, folded), filters laid out for
    the backward pass's products, made on first use (see ``backward``)."""

    pairs: dict[int, int]
    weight: dict[int, Tensor]
    bias: dict[int, Tensor]
    transposed: dict[tuple[int, bool], Tensor] = field(default_factory=dict)


def _pairs(steps: list[Step]) -> dict[int, int]:
    pairs = {}
    for s in steps:
        if s.kind != "bn" or len(s.inputs) != 1 or s.inputs[0] < 0:
            continue
        conv = steps[s.inputs[0]]
        if conv.kind == "conv" and list(conv.node.users) == [s.node]:
            pairs[s.index] = conv.index
    return pairs


def folded_norms(steps: list[Step], weights: list[dict]) -> Folds:
    """The folds of ``weights``, made on first use and kept with them."""
    cached = getattr(weights, "folded_norms", None)
    if cached is not None:
        return cached
    pairs = _pairs(steps)
    weight, bias = {}, {}
    for norm, conv in pairs.items():
        w, n = weights[conv], weights[norm]
        scale = norm_scale(steps[norm], n)
        weight[conv] = w["weight"] * scale.view(-1, 1, 1, 1)
        shift = n["bias"] if "bias" in n else torch.zeros_like(scale)
        before = w["bias"] if "bias" in w else torch.zeros_like(scale)
        bias[conv] = scale * (before - n["running_mean"]) + shift
    folds = Folds(pairs, weight, bias)
    if hasattr(weights, "__dict__"):
        weights.folded_norms = folds
    return folds


def forward_weights(steps: list[Step], weights: Weights, keep: set[int] = frozenset()):
    """``weights`` with every foldable batch norm folded into its conv, for a forward pass.

    Returns the new weights and the indices of the batch norms now folded: the forward must
    pass their input through unchanged. Convs in ``keep`` (whose own output someone reads,
    such as a watched map) stay as they are.
    """
    folds = folded_norms(steps, weights)
    out = Weights(weights)
    out.attrs = weights.attrs
    skipped = set()
    for norm, conv in folds.pairs.items():
        if conv not in keep:
            out[conv] = {**weights[conv], "weight": folds.weight[conv], "bias": folds.bias[conv]}
            skipped.add(norm)
    return out, skipped
