"""The image path of a model as a flat chain of invertible steps.

A deconvnet can only be attached to a network whose every operation it knows how to run
backwards. We read the model's forward code with ``torch.fx`` (no data runs, no hooks) and
accept it only if it is a single chain of known layers. Anything else (a residual addition, an
unknown function, a module called twice) is refused with an error naming the culprit, because
a silently wrong picture is worse than no picture.

Example:
    >>> import torch.nn as nn
    >>> chain = build_chain(nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten()))
    >>> [(s.name, s.kind) for s in chain]
    [('0', 'conv'), ('1', 'relu'), ('2', 'flatten')]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

__all__ = ["Step", "UnsupportedModelError", "build_chain", "friendly_aliases", "SUPPORTED"]


class UnsupportedModelError(ValueError):
    """The model's image path is not a chain of layers the deconvnet can invert."""


# Module types we can run forwards and invert, and the step kind each becomes.
_MODULE_KINDS: dict[type, str] = {
    nn.Conv2d: "conv",
    nn.ReLU: "relu",
    nn.MaxPool2d: "maxpool",
    nn.LocalResponseNorm: "lrn",
    nn.BatchNorm2d: "bn",
    nn.Dropout: "dropout",
    nn.Dropout2d: "dropout",
    nn.AvgPool2d: "avgpool",
    nn.AdaptiveAvgPool2d: "avgpool",
    nn.Flatten: "flatten",
    nn.Linear: "linear",
    nn.Identity: "identity",
}

SUPPORTED = ", ".join(sorted({t.__name__ for t in _MODULE_KINDS}))

_RELU_FUNCTIONS = {F.relu, torch.relu}
_FLATTEN_FUNCTIONS = {torch.flatten, torch.reshape}
_DROPOUT_FUNCTIONS = {F.dropout}
_FLATTEN_METHODS = {"flatten", "view", "reshape"}
_SHAPE_QUERIES = {"size", "dim"}


@dataclass(frozen=True)
class Step:
    """One layer of the chain.

    Attributes:
        index: position in the chain, input side first.
        name: the module's ``named_modules()`` name, or the fx node name for a function
            such as ``torch.flatten``.
        kind: one of conv, relu, maxpool, lrn, bn, dropout, avgpool, flatten, linear, identity.
        module: the user's module (never modified), or None for a function.
    """

    index: int
    name: str
    kind: str
    module: nn.Module | None


class _LeafTracer(torch.fx.Tracer):
    """Keeps every module we know how to invert as one call; traces through the rest."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return type(m) in _MODULE_KINDS or super().is_leaf_module(m, qualname)


def _trace(model: nn.Module) -> torch.fx.Graph:
    try:
        return _LeafTracer().trace(model)
    except Exception as err:  # fx raises many types; we re-raise with what it means for users
        raise UnsupportedModelError(
            f"could not read the forward pass of {type(model).__name__} with torch.fx "
            f"({type(err).__name__}: {err}). zfwidgets needs a forward that is a plain chain "
            f"of layers ({SUPPORTED})."
        ) from err


def _where(node: torch.fx.Node) -> str:
    """A human description of where a graph node comes from."""
    if node.op == "call_module":
        return f"module '{node.target}'"
    if node.op == "placeholder":
        return "the model's input"
    stack = node.meta.get("nn_module_stack") or {}
    owners = [path for path, _ in stack.values() if path]
    inside = f" inside module '{owners[-1]}'" if owners else ""
    return f"'{node.name}'{inside}"


def _kind_of(node: torch.fx.Node, modules: dict[str, nn.Module]) -> str:
    if node.op == "call_module":
        module = modules[node.target]
        kind = _MODULE_KINDS.get(type(module))
        if kind is None:
            raise UnsupportedModelError(
                f"module '{node.target}' is a {type(module).__name__}, which the deconvnet "
                f"cannot invert. Supported layers: {SUPPORTED}."
            )
        return kind
    if node.op == "call_function":
        if node.target in _RELU_FUNCTIONS:
            return "relu"
        if node.target in _FLATTEN_FUNCTIONS:
            return "flatten"
        if node.target in _DROPOUT_FUNCTIONS:
            return "dropout"
    if node.op == "call_method":
        if node.target in _FLATTEN_METHODS:
            return "flatten"
        if node.target in ("relu", "relu_"):
            return "relu"
    what = getattr(node.target, "__name__", str(node.target))
    raise UnsupportedModelError(
        f"the operation {what} at {_where(node)} cannot be inverted by the deconvnet. "
        f"Supported: the layers {SUPPORTED}, and torch.flatten / F.relu between them."
    )


def _check_layer_options(name: str, module: nn.Module | None) -> None:
    """Refuses layer settings whose inverse we do not implement."""
    if isinstance(module, nn.Conv2d) and module.padding_mode != "zeros":
        raise UnsupportedModelError(
            f"conv '{name}' uses padding_mode='{module.padding_mode}'; only 'zeros' is supported."
        )
    if isinstance(module, nn.Conv2d) and isinstance(module.padding, str):
        raise UnsupportedModelError(
            f"conv '{name}' uses padding='{module.padding}'; give the padding as numbers."
        )
    if isinstance(module, nn.BatchNorm2d) and module.running_mean is None:
        raise UnsupportedModelError(
            f"batch norm '{name}' has track_running_stats=False: its output depends on the "
            "whole batch, so one image has no well-defined projection."
        )


def build_chain(model: nn.Module) -> list[Step]:
    """Reads ``model``'s forward pass into a list of :class:`Step`, input first.

    Raises:
        UnsupportedModelError: the forward is not a single chain of supported layers; the
            message names the module or operation at fault.
    """
    graph = _trace(model)
    modules = dict(model.named_modules())
    steps: list[Step] = []
    main: torch.fx.Node | None = None  # the node holding the image's current tensor
    seen_main: set[torch.fx.Node] = set()
    used_modules: set[str] = set()
    for node in graph.nodes:
        if node.op == "placeholder":
            if main is None:
                main = node
                seen_main.add(node)
            elif not node.args:  # a second argument without a default value
                raise UnsupportedModelError(
                    f"{type(model).__name__}.forward takes more than one input tensor."
                )
            continue
        if node.op == "get_attr":
            continue
        inputs = set(node.all_input_nodes)
        if node.op == "output":
            if node.args[0] is not main:
                raise UnsupportedModelError(
                    f"{type(model).__name__}.forward does not return the result of its last "
                    "layer (several outputs or a value computed beside the chain)."
                )
            break
        if not inputs & seen_main:
            continue  # shape arithmetic and constants beside the chain
        if node.op == "call_method" and node.target in _SHAPE_QUERIES:
            continue  # x.size(0) in x.view(x.size(0), -1) reads the shape only
        if node.op == "call_function" and node.target is getattr:
            continue  # x.shape

        stale = (inputs & seen_main) - {main}
        first = node.args[0] if node.args else None
        if stale or first is not main:
            earlier = next(iter(stale), main)
            raise UnsupportedModelError(
                f"{_where(node)} combines the output of {_where(earlier)} with a later tensor "
                "(a residual connection or a branch). The deconvnet inverts plain chains only; "
                "for such models use method='saliency' with a gradient tool such as Captum."
            )
        kind = _kind_of(node, modules)
        name = node.target if node.op == "call_module" else node.name
        module = modules[node.target] if node.op == "call_module" else None
        if node.op == "call_module":
            if name in used_modules:
                raise UnsupportedModelError(
                    f"module '{name}' is called more than once in forward; a reused module "
                    "has one set of recorded switches per call, which we cannot tell apart. "
                    "Give each use its own module."
                )
            used_modules.add(name)
        _check_layer_options(name, module)
        steps.append(Step(len(steps), name, kind, module))
        main = node
        seen_main.add(node)
    if not any(s.kind in ("conv", "linear") for s in steps):
        raise UnsupportedModelError(f"{type(model).__name__} has no Conv2d or Linear layer.")
    return steps


def friendly_aliases(chain: list[Step]) -> dict[str, str]:
    """Paper-style names: ``conv1``.. for each conv, then ``fc<k>`` for each linear layer.

    Numbering runs on across conv and linear layers as in the paper (AlexNet: conv1-conv5,
    fc6-fc8). An alias points at the rectified output of its layer (the ReLU after it, past
    any batch norm), or at the layer itself when no ReLU follows.
    """
    aliases: dict[str, str] = {}
    number = 0
    for i, step in enumerate(chain):
        if step.kind not in ("conv", "linear"):
            continue
        number += 1
        target = step.name
        for later in chain[i + 1 :]:
            if later.kind == "relu":
                target = later.name
                break
            if later.kind not in ("bn", "dropout", "identity"):
                break
        prefix = "conv" if step.kind == "conv" else "fc"
        aliases[f"{prefix}{number}"] = target
    return aliases
