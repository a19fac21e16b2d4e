"""Running each step of the chain forwards, on weights we hold ourselves.

We never call the user's modules: that could run their hooks, change their BatchNorm
statistics, or write through an in-place ReLU. Instead each step is computed with the
functional form of its layer on a private copy of the weights (on the inspector's device),
always with inference semantics (dropout off, batch norm on running statistics).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.utils import _pair

from zfwidgets.core.chain import Step

__all__ = ["PoolGeometry", "pool_geometry", "step_forward", "step_weights"]


@dataclass(frozen=True)
class PoolGeometry:
    """Kernel, stride, padding and dilation of a max pool, each as (height, width)."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    ceil_mode: bool


def pool_geometry(module: nn.MaxPool2d) -> PoolGeometry:
    """The geometry of ``module`` with every field as a (height, width) pair."""
    stride = module.stride if module.stride is not None else module.kernel_size
    return PoolGeometry(
        _pair(module.kernel_size),
        _pair(stride),
        _pair(module.padding),
        _pair(module.dilation),
        bool(module.ceil_mode),
    )


def step_weights(step: Step, device: torch.device) -> dict[str, Tensor]:
    """Detached copies (or views, when already on ``device``) of a step's tensors."""
    if step.module is None:
        return {}
    tensors = dict(step.module.named_parameters(recurse=False))
    tensors.update(dict(step.module.named_buffers(recurse=False)))
    return {k: v.detach().to(device) for k, v in tensors.items() if v is not None}


def step_forward(step: Step, w: dict[str, Tensor], x: Tensor) -> Tensor:
    """The output of ``step`` for input ``x`` (inference semantics, no autograd needed)."""
    m = step.module
    kind = step.kind
    if kind == "conv":
        return F.conv2d(x, w["weight"], w.get("bias"), m.stride, m.padding, m.dilation, m.groups)
    if kind == "relu":
        return torch.relu(x)
    if kind == "maxpool":
        g = pool_geometry(m)
        return F.max_pool2d(x, g.kernel, g.stride, g.padding, g.dilation, g.ceil_mode)
    if kind == "lrn":
        return F.local_response_norm(x, m.size, m.alpha, m.beta, m.k)
    if kind == "bn":
        return F.batch_norm(
            x,
            w["running_mean"],
            w["running_var"],
            w.get("weight"),
            w.get("bias"),
            False,
            0.0,
            m.eps,
        )
    if kind in ("dropout", "identity"):
        return x
    if kind == "avgpool":
        return m(x)  # parameter-free and side-effect free
    if kind == "flatten":
        start = m.start_dim if isinstance(m, nn.Flatten) else 1
        return x.flatten(start)
    if kind == "linear":
        return F.linear(x, w["weight"], w.get("bias"))
    raise AssertionError(f"unknown step kind {kind}")
