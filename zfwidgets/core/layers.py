"""Running each step forwards, on weights we hold ourselves.

We never call the user's modules: that could run their hooks, change their BatchNorm
statistics, or write through an in-place ReLU. Instead each step is computed with the
functional form of its layer on a private copy of the weights (on the inspector's device),
always with inference semantics (dropout off, batch norm on running statistics). A module we
have no functional form for (a ``generic`` step: LayerNorm, attention, SiLU...) runs as a
hook-free deep copy of it, in eval mode, owned by us.

Example:
    >>> import torch, torch.nn as nn
    >>> from zfwidgets.core.graph import build_graph
    >>> model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())
    >>> graph = build_graph(model)
    >>> weights = graph_weights(graph, model, torch.device("cpu"))
    >>> run_graph(graph, weights, torch.ones(1, 1, 5, 5))[1].shape  # the last step's output
    torch.Size([1, 2, 3, 3])
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.fx
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.utils import _pair

from zfwidgets.core.graph import Graph, Step, out_of_place

__all__ = [
    "PoolGeometry",
    "Weights",
    "Window",
    "evaluate",
    "evaluate_in_place",
    "graph_weights",
    "max_pool",
    "pool_geometry",
    "run_graph",
    "step_forward",
    "step_weights",
    "window",
]


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


class Window(NamedTuple):
    """A sliding-window step's kernel, stride, padding and dilation, each (height, width)."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]


def window(step: Step) -> Window | None:
    """The window of a conv, max-pool or average-pool step; None for every other step.

    Example:
        >>> from zfwidgets.core.graph import build_graph
        >>> graph = build_graph(nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(3, 2)))
        >>> window(graph.steps[1])
        Window(kernel=(3, 3), stride=(2, 2), padding=(0, 0), dilation=(1, 1))
    """
    m = step.module
    if step.kind == "conv":
        return Window(_pair(m.kernel_size), _pair(m.stride), _pair(m.padding), _pair(m.dilation))
    if step.kind == "maxpool":
        g = pool_geometry(m)
        return Window(g.kernel, g.stride, g.padding, g.dilation)
    if isinstance(m, nn.AvgPool2d):
        stride = m.stride if m.stride is not None else m.kernel_size
        return Window(_pair(m.kernel_size), _pair(stride), _pair(m.padding), (1, 1))
    return None


class Weights(list):
    """Per step, our copies of its tensors; ``attrs`` holds tensors read with ``get_attr``."""

    attrs: dict[str, Any]


def _has_values(t: Tensor) -> Tensor:
    if t.device.type == "meta":
        raise ValueError(
            "the model's weights are on the meta device (shapes, no values): give it real "
            "weights (model.to_empty(device='cpu'), then load_state_dict) before asking for "
            "pictures"
        )
    return t


def _ours(t: Tensor, device: torch.device) -> Tensor:
    """Our copy of a weight: on ``device``, float32 when floating (a half or double model is
    computed in float32, like every image); a view when it is already that."""
    dtype = torch.float32 if t.is_floating_point() else t.dtype
    return _has_values(t).detach().to(device, dtype)


def _private_copy(module: nn.Module, device: torch.device) -> nn.Module:
    """A deep copy with no hooks, in eval mode, float32, detached from the user's parameters."""
    mine = copy.deepcopy(module)
    for m in mine.modules():
        for hooks in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks"):
            getattr(m, hooks).clear()
        # A forward set on the instance (a wrapper) may call the user's module: run the
        # class's forward, the one torch.fx reads.
        m.__dict__.pop("forward", None)
        if getattr(m, "inplace", False):
            m.inplace = False
    for t in (*module.parameters(), *module.buffers()):
        _has_values(t)
    return mine.to(device).float().eval().requires_grad_(False)


def step_weights(step: Step, device: torch.device) -> dict[str, Any]:
    """Detached copies (or views, when already on ``device``) of a step's tensors."""
    if step.module is None:
        return {}
    if step.kind == "generic" and step.node.op == "call_module":
        return {"module": _private_copy(step.module, device)}
    tensors = dict(step.module.named_parameters(recurse=False))
    tensors.update(dict(step.module.named_buffers(recurse=False)))
    return {k: _ours(v, device) for k, v in tensors.items() if v is not None}


def _attr(model: nn.Module, target: str) -> Any:
    value = model
    for part in target.split("."):
        value = getattr(value, part)
    return value.detach() if isinstance(value, Tensor) else value


def graph_weights(graph: Graph, model: nn.Module, device: torch.device) -> Weights:
    """Our copies of every step's weights and of every tensor the forward reads directly."""
    weights = Weights(step_weights(s, device) for s in graph.steps)
    weights.attrs = {}
    for node in graph.nodes:
        if node.op == "get_attr":
            value = _attr(model, node.target)
            is_tensor = isinstance(value, Tensor)
            weights.attrs[node.target] = _ours(value, device) if is_tensor else value
    return weights


def max_pool(x: Tensor, kernel, stride, padding=0, dilation=1, ceil_mode=False, indices=False):
    """``F.max_pool2d``, run channels-last on the CPU: 5-7x faster there (1 ms instead of 5
    for a ResNet stem), with the same values and the same indices, ties included (the first
    maximum in the window's row-major order either way). Returns plain contiguous tensors.

    Example:
        >>> x = torch.tensor([[[[1.0, 3.0], [3.0, 2.0]]]])
        >>> max_pool(x, 2, 2, indices=True)
        (tensor([[[[3.]]]]), tensor([[[[1]]]]))
    """
    if x.device.type == "cpu" and x.ndim == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    out = F.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode, return_indices=indices)
    if indices:
        return out[0].contiguous(), out[1].contiguous()
    return out.contiguous()


def step_forward(step: Step, w: dict[str, Tensor], x: Tensor) -> Tensor:
    """The output of a one-input ``step`` with a rule of its own (no autograd needed)."""
    m = step.module
    kind = step.kind
    if kind == "conv":
        return F.conv2d(x, w["weight"], w.get("bias"), m.stride, m.padding, m.dilation, m.groups)
    if kind == "relu":
        return torch.relu(x)
    if kind == "relu6":
        return F.hardtanh(x, 0.0, 6.0)
    if kind == "maxpool":
        g = pool_geometry(m)
        return max_pool(x, g.kernel, g.stride, g.padding, g.dilation, g.ceil_mode)
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
    if kind == "avgpool" and isinstance(m, nn.AdaptiveAvgPool2d):
        return F.adaptive_avg_pool2d(x, m.output_size)
    if kind == "avgpool":
        return F.avg_pool2d(
            x,
            m.kernel_size,
            m.stride,
            m.padding,
            m.ceil_mode,
            m.count_include_pad,
            m.divisor_override,
        )
    if kind == "pad":
        return F.pad(x, m.padding, value=m.value)
    if kind == "flatten":
        return x.flatten(m.start_dim, m.end_dim)
    if kind == "linear":
        return F.linear(x, w["weight"], w.get("bias"))
    raise AssertionError(f"step kind {kind} has no one-input rule")


_OWN_FORWARD = {
    "conv", "relu", "relu6", "maxpool", "lrn", "bn", "dropout", "avgpool", "pad", "flatten",
    "linear", "identity",
}  # fmt: skip


_FUNCTIONAL = ("relu", "relu6", "dropout")  # kinds whose functional forms we run ourselves


def _no_inplace(kwargs: dict) -> dict:
    return {**kwargs, "inplace": False} if kwargs.get("inplace") else kwargs


def call_node(step: Step, w: dict[str, Any], args: tuple, kwargs: dict) -> Any:
    """Runs a function step's own operation on evaluated arguments (never in place)."""
    node = step.node
    kwargs = _no_inplace(kwargs)
    if node.op == "call_module":
        return w["module"].forward(*args, **kwargs)  # our copy, without hooks
    if node.op == "call_method":
        name = node.target
        if name.endswith("_") and not name.startswith("_"):
            name = name[:-1]
        return getattr(args[0], name)(*args[1:], **kwargs)
    return out_of_place(node.target)(*args, **kwargs)


def evaluate(step: Step, w: dict[str, Any], env: dict[torch.fx.Node, Any]) -> Any:
    """The output of ``step`` given the values of every node before it in ``env``."""
    if step.kind in _OWN_FORWARD and (step.module is not None or step.kind in _FUNCTIONAL):
        return step_forward(step, w, env[step.node.args[0]])
    args = torch.fx.node.map_arg(step.node.args, env.__getitem__)
    kwargs = torch.fx.node.map_arg(step.node.kwargs, env.__getitem__)
    return call_node(step, w, args, kwargs)


def evaluate_in_place(
    step: Step, w: dict[str, Any], env: dict[torch.fx.Node, Any], kept: frozenset[torch.fx.Node]
) -> Any:
    """:func:`evaluate`, but a ReLU or an addition writes into its first input where only this
    step reads it and it is not the model's input, not in ``kept`` (values someone holds) and
    not a view.

    Out of place, those two allocate and write a fresh copy of the largest tensors of a
    ResNet: a fifth of a batched forward pass on the CPU.
    """
    node = step.node
    first = node.args[0] if node.args else None
    sole = (
        isinstance(first, torch.fx.Node)
        and len(first.users) == 1
        and first.op != "placeholder"
        and first not in kept
    )
    # A view shares its storage with a tensor someone may still hold.
    sole = sole and isinstance(env[first], Tensor) and env[first]._base is None
    if sole and step.kind == "relu":
        return env[first].relu_()
    if sole and step.kind == "add" and len(node.args) == 2 and not node.kwargs:
        a, b = env[first], torch.fx.node.map_arg(node.args[1], env.__getitem__)
        if isinstance(b, Tensor) and torch.broadcast_shapes(a.shape, b.shape) == a.shape:
            return a.add_(b)
    return evaluate(step, w, env)


def narrow_after(graph: Graph, index: int) -> bool:
    """Whether no node after step ``index`` reads a node before it: the rest of the network
    can be run from that step's output alone (``run_graph(..., resume=(index, value))``).

    Example:
        >>> from zfwidgets.core.graph import build_graph
        >>> graph = build_graph(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten()))
        >>> narrow_after(graph, 1)
        True
    """
    start = graph.nodes.index(graph.steps[index].node)
    positions = {node: p for p, node in enumerate(graph.nodes)}
    return all(
        positions.get(arg, -1) >= start
        for node in graph.nodes[start + 1 :]
        for arg in node.all_input_nodes
    )


def _side_value(node: torch.fx.Node, weights: Weights, env: dict) -> Any:
    if node.op == "get_attr":
        return weights.attrs[node.target]
    args = torch.fx.node.map_arg(node.args, env.__getitem__)
    kwargs = torch.fx.node.map_arg(node.kwargs, env.__getitem__)
    if node.op == "call_method":
        return getattr(args[0], node.target)(*args[1:], **kwargs)
    if node.op == "call_function":
        return node.target(*args, **kwargs)
    raise AssertionError(f"side node {node.op} {node.target}")


def run_graph(
    graph: Graph,
    weights: Weights,
    x: Tensor,
    last: int | None = None,
    keep: set[int] = frozenset(),
    compute=None,
    side: dict | None = None,
    resume: tuple[int, Any] | None = None,
) -> dict[int, Any]:
    """Runs ``x`` through steps ``0..last``; returns the outputs of ``keep`` and of ``last``.

    ``compute(step, w, env)``, when given, runs each step instead of :func:`evaluate` (to
    record what its backward will need); ``env`` holds the value of every fx node the step
    reads. Other values are dropped as soon as no later step reads them, so a pass holds
    little more than the widest point of the network. ``side``, when given, receives the
    values computed beside the image path (shapes read, parameters), by fx node.
    ``resume=(k, value)`` starts after step ``k`` with ``value`` as its output (``x`` unused);
    only valid where :func:`narrow_after` says nothing later reads an earlier node.
    """
    compute = compute or evaluate
    last = len(graph.steps) - 1 if last is None else last
    env: dict[torch.fx.Node, Any] = {}
    kept: dict[int, Any] = {}
    skip = -1
    if resume is not None:
        node = graph.steps[resume[0]].node
        skip, env[node] = graph.nodes.index(node), resume[1]
    for position, node in enumerate(graph.nodes):
        if position <= skip:
            continue
        index = graph.step_of.get(node)
        if index is not None and index > last:
            break
        if index == -1:
            env[node] = x
        elif node.op == "placeholder":
            env[node] = node.args[0] if node.args else None  # a default argument
            if side is not None:
                side[node] = env[node]
        elif index is None:
            env[node] = _side_value(node, weights, env)
            if side is not None:
                side[node] = env[node]
        else:
            env[node] = compute(graph.steps[index], weights[index], env)
            if index in keep or index == last:
                kept[index] = env[node]
        for done in graph.frees[position]:
            env.pop(done, None)
    return kept
