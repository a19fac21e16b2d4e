"""The image path of a model as a graph of steps, read with ``torch.fx``.

We read the model's forward code with ``torch.fx`` (no data runs, no hooks, never a call of
the user's modules) into a list of :class:`Step` in the order the forward computes them. Each
step names the steps whose outputs it reads, so residual additions, concatenations, splits and
branches are graphs like any other. A module called several times (ResNet's ``self.relu``)
gives one step per call, each with its own name and record.

Every step has a kind. Kinds the deconvnet has a rule for (conv, relu, relu6, maxpool, bn,
lrn, linear, and the linear wiring: add, cat, reshapes, pools, ...) run on our own copies of the
weights; anything else becomes a ``generic`` step: computed exactly (on a hook-free copy for
modules), differentiated exactly by autograd, but with no rectifier rule, so deconvnet and
guided backprop are refused for such a model and the gradient methods keep working.

Example:
    >>> import torch.nn as nn
    >>> graph = build_graph(nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten()))
    >>> [(s.name, s.kind, s.inputs) for s in graph.steps]
    [('0', 'conv', (-1,)), ('1', 'relu', (0,)), ('2', 'flatten', (1,))]
"""

from __future__ import annotations

import inspect
import operator
import threading
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx
import torch.nn.functional as F
import torch.nn.modules.module as torch_module  # where torch keeps its global hooks
from torch import nn

__all__ = [
    "Graph",
    "Step",
    "UnsupportedModelError",
    "build_graph",
    "out_of_place",
    "SUPPORTED",
    "user_hooks",
]


class UnsupportedModelError(ValueError):
    """The model cannot be read into a graph of steps (or a method has no rule for it)."""


# Module types with a rule of their own, and the step kind each becomes.
_MODULE_KINDS: dict[type, str] = {
    nn.Conv2d: "conv",
    nn.ReLU: "relu",
    nn.ReLU6: "relu6",
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
    nn.ZeroPad2d: "pad",
    nn.ConstantPad2d: "pad",
}

SUPPORTED = ", ".join(sorted({t.__name__ for t in _MODULE_KINDS}))

# torch.fx patches nn.Module.__call__ for the whole process while it traces: a forward pass
# in another thread at that moment goes through the tracer and fails ("not installed as a
# submodule"). Tracing and our runs of a model's own forward (the probe) take this lock.
FX_LOCK = threading.RLock()

# Functions and tensor methods that are linear (affine) in the image path's tensors: their
# backward is the exact vector-Jacobian product, which does not depend on the input values.
_LINEAR_FUNCTIONS = {
    operator.add,
    operator.sub,
    operator.neg,
    operator.getitem,
    torch.add,
    torch.sub,
    torch.cat,
    torch.concat,
    torch.stack,
    torch.flatten,
    torch.reshape,
    torch.transpose,
    torch.permute,
    torch.squeeze,
    torch.unsqueeze,
    torch.narrow,
    torch.split,
    torch.chunk,
    torch.unbind,
    torch.mean,
    torch.sum,
    F.adaptive_avg_pool2d,
    F.avg_pool2d,
    F.pad,
}
_LINEAR_METHODS = {
    "add",
    "sub",
    "neg",
    "view",
    "reshape",
    "flatten",
    "transpose",
    "permute",
    "contiguous",
    "squeeze",
    "unsqueeze",
    "narrow",
    "split",
    "chunk",
    "unbind",
    "mean",
    "sum",
    "expand",
    "clone",
}
# Multiplication and division are linear when only one operand is on the image path.
_SCALING_FUNCTIONS = {operator.mul, operator.truediv, torch.mul, torch.div}
_SCALING_METHODS = {"mul", "div"}
_RELU_FUNCTIONS = {F.relu, torch.relu}
_DROPOUT_FUNCTIONS = {F.dropout, F.dropout2d}
_RESHAPES = {torch.flatten, torch.reshape, "view", "reshape", "flatten"}
# Reads of a tensor's shape: their results do not depend on the image's values.
_SHAPE_METHODS = {"size", "dim"}
_SHAPE_ATTRS = {"shape", "dtype", "device", "ndim"}
# In-place operators and their out-of-place forms (we never write into recorded tensors).
_OUT_OF_PLACE = {
    operator.iadd: operator.add,
    operator.isub: operator.sub,
    operator.imul: operator.mul,
    operator.itruediv: operator.truediv,
    torch.relu_: torch.relu,
}


def out_of_place(target: Any) -> Any:
    """The out-of-place form of an in-place function (``torch.sigmoid_`` -> ``torch.sigmoid``,
    ``operator.iadd`` -> ``operator.add``); any other target unchanged.

    Example:
        >>> out_of_place(torch.relu_) is torch.relu, out_of_place(F.relu) is F.relu
        (True, True)
    """
    if target in _OUT_OF_PLACE:
        return _OUT_OF_PLACE[target]
    name = getattr(target, "__name__", "")
    if name.endswith("_") and not name.startswith("_"):
        for namespace in (torch, F, torch.special):
            if getattr(namespace, name, None) is target and hasattr(namespace, name[:-1]):
                return getattr(namespace, name[:-1])
    return target


@dataclass(frozen=True, eq=False)
class Step:
    """One node of the image path.

    Attributes:
        index: position in forward order (every input of a step comes before it).
        name: the module's ``named_modules()`` name (``"layer1.0.relu#2"`` for its second
            call), or, for a function, the innermost module's name plus the fx node name
            (``"layer1.0.add"``).
        kind: conv, relu, relu6, maxpool, lrn, bn, dropout, avgpool, flatten, linear, identity,
            pad, add, cat, reshape, item, linear_op (other linear wiring), or generic.
        module: the user's module (read, never called or changed), a pool we built for a
            functional max pool, or None.
        inputs: indices of the steps whose outputs this step reads (-1: the model's input),
            in argument order.
        node: the fx node, to evaluate a function's arguments.
    """

    index: int
    name: str
    kind: str
    module: nn.Module | None
    inputs: tuple[int, ...]
    node: torch.fx.Node = field(repr=False)

    @property
    def source(self) -> str:
        """What the user wrote: the module type or the function's name."""
        if self.module is not None:
            return type(self.module).__name__
        target = self.node.target
        return target if isinstance(target, str) else getattr(target, "__name__", str(target))


@dataclass
class Graph:
    """A model's image path: steps in forward order plus the side values they read.

    Attributes:
        steps: the steps; the last one is the model's output.
        nodes: every fx node the forward needs, in order (steps and side computations such
            as ``x.size(0)`` or parameters read with ``get_attr``).
        step_of: the step index of each step node.
        containers: module names (containers included) mapped to the step giving their output.
        is_chain: every step reads the one before it (a plain chain such as AlexNet or VGG).
        frees: for each position in ``nodes``, the nodes no later node reads.
    """

    steps: list[Step]
    nodes: list[torch.fx.Node]
    step_of: dict[torch.fx.Node, int]
    containers: dict[str, int]
    is_chain: bool
    frees: list[list[torch.fx.Node]] = field(default_factory=list)

    def no_rule_step(self) -> Step | None:
        """The first step that has no rectifier rule (deconvnet and guided are refused)."""
        return next((s for s in self.steps if s.kind == "generic"), None)

    def live_sets(self) -> list[list[int]]:
        """Per step, the steps (-1: the input) whose outputs are held while it runs."""
        alive: set[int] = set()
        out: list[list[int]] = []
        for position, node in enumerate(self.nodes):
            index = self.step_of.get(node)
            if index is not None:
                alive.add(index)
                if index >= 0:
                    out.append(sorted(alive))
            for done in self.frees[position]:
                alive.discard(self.step_of.get(done, -2))
        return out


class _Tracer(torch.fx.Tracer):
    """Keeps every module we have a rule for, and every torch.nn module, as one call."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return type(m) in _MODULE_KINDS or super().is_leaf_module(m, qualname)

    def call_module(self, m: nn.Module, forward, args, kwargs):
        # fx enters a container through Module.__call__, which runs the user's hooks (on
        # proxies); reading its forward itself keeps the rule: the user's hooks never run.
        if not self.is_leaf_module(m, self.path_of_module(m)):
            forward = m.forward
        return super().call_module(m, forward, args, kwargs)


_HOOK_KINDS = {
    "_forward_pre_hooks": "forward pre-hook",
    "_forward_hooks": "forward hook",
    "_backward_pre_hooks": "backward pre-hook",
    "_backward_hooks": "backward hook",
}


def user_hooks(model: nn.Module) -> list[str]:
    """Where ``model`` (or torch, globally) has hooks, as ``"forward hook on 'layer1.0'"``.

    zfwidgets never runs them: a model whose outputs depend on a hook is read without it.

    Example:
        >>> m = nn.Sequential(nn.Conv2d(1, 2, 3))
        >>> _ = m[0].register_forward_hook(lambda *args: None)
        >>> user_hooks(m)
        ["forward hook on '0'"]
    """
    found = [
        f"{label} on '{name or type(model).__name__}'"
        for name, module in model.named_modules()
        for attr, label in _HOOK_KINDS.items()
        if getattr(module, attr, None)
    ]
    for attr, label in _HOOK_KINDS.items():
        if getattr(torch_module, "_global" + attr, None):
            found.append(f"a global {label} (torch.nn.modules.module.register_module_...)")
    return found


def _trace(model: nn.Module) -> torch.fx.Graph:
    if isinstance(model, torch.jit.ScriptModule):
        raise UnsupportedModelError(
            f"{type(model).__name__} is a TorchScript module: torch.fx cannot read its forward. "
            "Pass the original Python nn.Module instead."
        )
    if hasattr(model, "_orig_mod") and type(model).__name__ == "OptimizedModule":
        raise UnsupportedModelError(
            "this model was wrapped by torch.compile; pass the original module "
            "(model._orig_mod) instead."
        )
    # Trace in inference mode: forwards that branch on self.training (auxiliary heads,
    # stochastic depth) must give their inference path. Every flag is restored at once.
    modes = [(m, m.training) for m in model.modules()]
    try:
        for m, _ in modes:
            m.training = False
        with FX_LOCK:
            return _Tracer().trace(model)
    except Exception as err:  # fx raises many types; we re-raise with what it means for users
        raise UnsupportedModelError(
            f"could not read the forward pass of {type(model).__name__} with torch.fx "
            f"({type(err).__name__}: {err}). Forwards whose control flow depends on the data "
            "cannot be read; pass a model (or a wrapper module) whose forward is the same "
            "sequence of operations for every image."
        ) from err
    finally:
        for m, mode in modes:
            m.training = mode


def where(node: torch.fx.Node) -> str:
    """A human description of where a graph node comes from."""
    if node.op == "call_module":
        return f"module '{node.target}'"
    if node.op == "placeholder":
        return "the model's input"
    owner = _owner(node)
    inside = f" inside module '{owner}'" if owner else ""
    return f"'{node.name}'{inside}"


def _owner(node: torch.fx.Node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    owners = [v[0] for v in stack.values() if v and v[0]]
    return owners[-1] if owners else ""


def _is_shape_read(node: torch.fx.Node) -> bool:
    if node.op == "call_method" and node.target in _SHAPE_METHODS:
        return True
    if node.op == "call_function" and node.target is getattr:
        return node.args[1] in _SHAPE_ATTRS
    return node.op == "call_function" and node.target is len


def _relu6_module(m: nn.Module) -> bool:
    return isinstance(m, nn.Hardtanh) and m.min_val == 0.0 and m.max_val == 6.0


def _path_operands(node: torch.fx.Node, path: set[torch.fx.Node]) -> int:
    """How many arguments of ``node`` are image-path tensors, counting a repeated one each
    time (``x * x`` has two: a product of two image tensors, not a scaling)."""
    count = 0

    def visit(arg):
        nonlocal count
        if isinstance(arg, torch.fx.Node) and arg in path:
            count += 1
        return arg

    torch.fx.node.map_arg((node.args, node.kwargs), visit)
    return count


def _function_kind(node: torch.fx.Node, path: set[torch.fx.Node]) -> str:
    target = node.target
    on_path = [n for n in node.all_input_nodes if n in path]
    operands = _path_operands(node, path)
    if node.op == "call_method":
        name = target.rstrip("_") if target.endswith("_") else target
        if name == "relu":
            return "relu"
        if name in ("view", "reshape", "flatten"):
            return "reshape"
        if name in ("add",) and len(on_path) == 2 and node.args[0] is not node.args[1]:
            return "add" if "alpha" not in node.kwargs else "linear_op"
        if name in _LINEAR_METHODS:
            return "linear_op"
        if name in _SCALING_METHODS and operands == 1 and node.args[0] in path:
            return "linear_op"
        return "generic"
    target = out_of_place(target)
    if target in _RELU_FUNCTIONS:
        return "relu"
    if target is F.relu6:
        return "relu6"
    if target is F.hardtanh and _hardtanh_bounds(node) == (0.0, 6.0):
        return "relu6"
    if target in _DROPOUT_FUNCTIONS:
        return "dropout"
    if target in (F.max_pool2d, torch.max_pool2d):
        return "maxpool"
    if target in (torch.flatten, torch.reshape):
        return "reshape"
    if target in (torch.cat, torch.concat) and _plain_cat(node, path):
        return "cat"
    if target in (operator.add, torch.add) and len(on_path) == 2:
        distinct = node.args[0] is not node.args[1] and "alpha" not in node.kwargs
        return "add" if distinct else "linear_op"
    if target is F.pad and node.kwargs.get("mode", "constant") != "constant":
        return "generic"
    if target in _LINEAR_FUNCTIONS:
        return "linear_op"
    if target in _SCALING_FUNCTIONS and operands == 1:
        numerator = node.args[0] in path
        return "linear_op" if numerator or target in (operator.mul, torch.mul) else "generic"
    return "generic"


def _plain_cat(node: torch.fx.Node, path: set[torch.fx.Node]) -> bool:
    """A concatenation of distinct image-path tensors along a fixed non-batch dimension."""
    parts = node.args[0]
    if not isinstance(parts, list | tuple):
        return False
    dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
    distinct = len(set(parts)) == len(parts) and all(p in path for p in parts)
    return distinct and isinstance(dim, int) and dim != 0


def _hardtanh_bounds(node: torch.fx.Node) -> tuple[float, float]:
    args = list(node.args[1:3]) + [None] * 2
    low = node.kwargs.get("min_val", args[0] if args[0] is not None else -1.0)
    high = node.kwargs.get("max_val", args[1] if args[1] is not None else 1.0)
    return float(low), float(high)


def _pool_from_call(node: torch.fx.Node) -> nn.MaxPool2d:
    """Our own ``nn.MaxPool2d`` with the geometry of a ``F.max_pool2d(...)`` call."""
    names = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
    given = dict(zip(names, node.args[1:], strict=False))
    given.update(node.kwargs)
    for name, value in given.items():
        if isinstance(value, torch.fx.Node):
            raise refusal(
                f"max pool {where(node)} computes its {name} from the data",
                f"its {name} must be the same for every image",
                "give it as a number",
            )
    if given.get("return_indices"):
        raise refusal(
            f"max pool {where(node)} is called with return_indices=True",
            "zfwidgets reads only the pooled values",
            "call it without return_indices, or use nn.MaxPool2d(return_indices=True) and "
            "read only y of `y, idx = pool(x)`",
        )
    given.pop("return_indices", None)
    return nn.MaxPool2d(**given)


def _refuse_unreadable(name: str, module: nn.Module) -> None:
    """Modules whose weights we cannot copy and compute in float32 as they are."""
    if ".quantized" in type(module).__module__:
        raise UnsupportedModelError(
            f"'{name}' is a quantized {type(module).__name__} ({type(module).__module__}): "
            "zfwidgets computes in float32 on its own copy of the weights; pass the float model "
            "(the one before quantize_dynamic or convert)"
        )
    _refuse_old_norm(name, module, "WeightNorm", "weight_norm")


def _refuse_old_norm(name: str, module: nn.Module, hook: str, norm: str) -> None:
    """The old ``torch.nn.utils.<norm>`` sets the weight in a forward pre-hook (class ``hook``),
    which zfwidgets never runs: refused, naming the parametrization to use instead."""
    if any(type(h).__name__ == hook for h in module._forward_pre_hooks.values()):
        raise UnsupportedModelError(
            f"'{name}' uses the old torch.nn.utils.{norm}, which sets its weight in a "
            "forward pre-hook, and zfwidgets never runs hooks: use "
            f"torch.nn.utils.parametrizations.{norm}, or call "
            f"torch.nn.utils.remove_{norm} on the module first"
        )


def _refuse_unready(name: str, module: nn.Module) -> None:
    """Modules that cannot be read as they are, refused before tracing (whose own error
    would name torch.fx internals): each message says what to pass or do instead."""
    from torch.nn.modules.lazy import LazyModuleMixin

    if isinstance(module, nn.DataParallel | nn.parallel.DistributedDataParallel):
        wrapper = type(module).__name__
        if name == wrapper:  # the model itself
            raise UnsupportedModelError(
                f"model is a {wrapper} wrapper (it splits batches over devices) and zfwidgets "
                "reads the network itself: pass model.module, the network inside it with the "
                "same weights, e.g. Inspector(model.module)"
            )
        raise UnsupportedModelError(
            f"'{name}' is a {wrapper} wrapper (it splits batches over devices) and zfwidgets "
            f"reads the network itself: pass a model whose '{name}' is the network inside it "
            f"(its .module, the same weights)"
        )
    _refuse_old_norm(name, module, "SpectralNorm", "spectral_norm")
    if isinstance(module, LazyModuleMixin) and module.has_uninitialized_params():
        raise UnsupportedModelError(
            f"'{name}' is a {type(module).__name__} whose parameters are not initialised yet "
            "(their shapes come from the first input): run the model once on an input, "
            "model(x), then build the Inspector"
        )


def _module_kind(name: str, module: nn.Module) -> str:
    _refuse_unreadable(name, module)
    kind = _MODULE_KINDS.get(type(module))
    if kind is None and _relu6_module(module):
        return "relu6"
    if kind == "conv" and (module.padding_mode != "zeros" or isinstance(module.padding, str)):
        return "generic"  # exact through autograd; the transposed filter rule needs zeros
    if kind == "bn" and module.running_mean is None:
        raise UnsupportedModelError(
            f"batch norm '{name}' has track_running_stats=False: its output depends on the "
            "whole batch, so one image has no well-defined projection."
        )
    if kind == "flatten" and module.start_dim in (0, -4):
        raise UnsupportedModelError(
            f"'{name}' is nn.Flatten(start_dim={module.start_dim}): it merges the batch axis into "
            "the features, so a batch of images gives one vector; use nn.Flatten() (start_dim=1)"
        )
    return kind or "generic"


def _inplace_flag(node: torch.fx.Node) -> tuple[bool, int | None]:
    """Whether a function call passes ``inplace=True``, and the position of a positional
    ``inplace`` argument (None when given by keyword or not at all)."""
    if node.kwargs.get("inplace") is True:
        return True, None
    try:
        params = list(inspect.signature(node.target).parameters)
    except (TypeError, ValueError):  # builtins without a signature take no inplace argument
        return False, None
    if "inplace" in params and params.index("inplace") < len(node.args):
        at = params.index("inplace")
        return node.args[at] is True, at
    return False, None


def _writes_into(node: torch.fx.Node, modules: dict[str, nn.Module]) -> bool:
    """``node`` overwrites its first argument and returns it (``x.relu_()``, ``x += y``,
    ``torch.sigmoid_(x)``, ``F.relu(x, inplace=True)``, an ``nn.ReLU(inplace=True)`` call)."""
    if not node.args or not isinstance(node.args[0], torch.fx.Node):
        return False
    if node.op == "call_method":
        name = str(node.target)
        return name.endswith("_") and not name.startswith("_") and name != "requires_grad_"
    if node.op == "call_module":
        module = modules.get(str(node.target))
        return bool(getattr(module, "inplace", False)) and not list(module.children())
    if node.op == "call_function":
        return out_of_place(node.target) is not node.target or _inplace_flag(node)[0]
    return False


def _read_in_place(graph: torch.fx.Graph, modules: dict[str, nn.Module]) -> None:
    """Rewrites in-place operations as the value they produce.

    ``x.relu_()`` written as a statement changes ``x`` for every later reader, though its
    result is never assigned: each later reader of ``x`` is made to read the in-place node
    instead, so the graph keeps it. Positional ``inplace=True`` becomes a keyword (our runs
    are never in place). Assignments into a tensor (``x[..., 0] = 0``) are refused: they
    return nothing a later reader could be pointed at.
    """
    order = {n: i for i, n in enumerate(graph.nodes)}
    for node in list(graph.nodes):
        if node.op == "call_function" and node.target is operator.setitem:
            raise UnsupportedModelError(
                f"{where(node)} assigns into a tensor (x[...] = value), which zfwidgets cannot "
                "read; compute the value out of place (torch.where, torch.cat) in the forward"
            )
        if not _writes_into(node, modules):
            continue
        written = node.args[0]
        written.replace_all_uses_with(
            node, delete_user_cb=lambda user, at=order[node]: order.get(user, -1) > at
        )
        if node.op == "call_function":
            inplace, at = _inplace_flag(node)
            if inplace and at is not None:
                node.args = node.args[:at]
                node.kwargs = {**node.kwargs, "inplace": False}


def _read_pool_values(graph: torch.fx.Graph, modules: dict[str, nn.Module]) -> None:
    """``y, idx = pool(x)`` with ``nn.MaxPool2d(return_indices=True)``: the pool's step gives
    the pooled values ``y``; a model that reads the indices is refused."""
    for node in list(graph.nodes):
        module = modules.get(str(node.target)) if node.op == "call_module" else None
        if not isinstance(module, nn.MaxPool2d) or not module.return_indices:
            continue
        for user in list(node.users):
            part = user.args[1] if user.target is operator.getitem else None
            if part == 0:
                user.replace_all_uses_with(node)
                graph.erase_node(user)
            elif part == 1 and not user.users:
                graph.erase_node(user)
            else:
                what = "its indices" if part == 1 else f"the (values, indices) pair ({where(user)})"
                raise UnsupportedModelError(
                    f"max pool '{node.target}' has return_indices=True and the model reads "
                    f"{what}; zfwidgets reads only the pooled values: pass a model whose "
                    "forward uses only y of `y, idx = pool(x)`"
                )


def refusal(given: str, allowed: str, todo: str) -> UnsupportedModelError:
    """A refusal of the graph reader in one line: what was given, what is allowed, what to do.

    Every refusal of a model's structure goes through here, so each names all three.

    Example:
        >>> str(refusal("'fc' is odd", "only even ones are read", "pass an even one"))
        "'fc' is odd; only even ones are read: pass an even one"
    """
    return UnsupportedModelError(f"{given}; {allowed}: {todo}")


# What deconvnet and guided backprop can pass a signal down through (their rules).
RULE_STEPS = (
    "ReLU and ReLU6 (nn.ReLU, F.relu, nn.ReLU6, F.relu6), 2-D max pooling with fixed windows "
    "(nn.MaxPool2d, F.max_pool2d, torch.max_pool2d) and linear steps (convolutions, linear "
    "layers, batch norm, average pooling, additions, concatenations, reshapes, dropout)"
)


def no_rule_text(step: Step) -> str:
    """``step`` named as the reason deconvnet and guided backprop are refused."""
    return f"step '{step.name}' ({step.source}) has no rectifier rule"


def no_rule_refusal(method: str, model_name: str, step: Step) -> UnsupportedModelError:
    """Why ``method`` (deconvnet or guided) cannot pass a signal down ``step``, in one line."""
    return refusal(
        f"{method} is not available for {model_name}: {no_rule_text(step)}",
        f"{method} passes a signal down only through {RULE_STEPS}",
        "use method='saliency', Grad-CAM, occlusion, top-9 mining or invariance (they work "
        f"through any step), or rewrite '{step.name}' with one of those modules",
    )


def _path_nodes(graph: torch.fx.Graph) -> tuple[torch.fx.Node, set[torch.fx.Node]]:
    """The image placeholder and every node whose value depends on the image's values."""
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    image = placeholders[0]
    for extra in placeholders[1:]:
        if not extra.args:  # a second argument without a default value
            raise refusal(
                f"the model's forward takes a second input '{extra.target}' with no default",
                "zfwidgets reads models of one image tensor",
                "pass a wrapper module whose forward(x) calls your model with the other "
                "inputs fixed",
            )
    path = {image}
    for node in graph.nodes:
        if node.op in ("placeholder", "output", "get_attr") or _is_shape_read(node):
            continue
        if any(n in path for n in node.all_input_nodes):
            path.add(node)
    return image, path


def _needed(graph: torch.fx.Graph) -> tuple[torch.fx.Node, list[torch.fx.Node]]:
    """The node the model returns and every node it depends on, in forward order."""
    output = next(n for n in graph.nodes if n.op == "output")
    result = output.args[0]
    if not isinstance(result, torch.fx.Node):
        raise UnsupportedModelError(
            "the model's forward returns several values (a tuple, list or dict); pass a "
            "module whose forward returns one tensor of class scores."
        )
    keep = {result}
    for node in reversed(list(graph.nodes)):
        if node in keep or node.op == "call_function" and node.target is torch._assert:
            keep.update(node.all_input_nodes)
            keep.add(node)
    return result, [n for n in graph.nodes if n in keep]


def _step_names(nodes: list[torch.fx.Node], path: set[torch.fx.Node]) -> dict:
    """Unique, readable names: module names per call, function nodes under their owner."""
    names: dict[torch.fx.Node, str] = {}
    used: dict[str, int] = {}
    for node in nodes:
        if node not in path or node.op == "placeholder":
            continue
        if node.op == "call_module":
            base = str(node.target)
        else:
            owner = _owner(node)
            what = _function_name(node)
            base = f"{owner}.{what}" if owner else what
        used[base] = used.get(base, 0) + 1
        names[node] = base if used[base] == 1 else f"{base}#{used[base]}"
    return names


def _function_name(node: torch.fx.Node) -> str:
    """``add`` for ``x + y`` or ``torch.add``, ``view`` for ``x.view(...)``: fx's node name
    without the counter it appends (``add_3``)."""
    target = node.target
    name = target if isinstance(target, str) else getattr(target, "__name__", node.name)
    return name.strip("_") or node.name


def _containers(steps: list[Step]) -> dict[str, int]:
    """Each module (containers included) mapped to the last step computed inside it.

    A module's forward returns the value it computed last, so that step is its output.
    """
    out: dict[str, int] = {}
    for step in steps:
        stack = step.node.meta.get("nn_module_stack") or {}
        for entry in stack.values():
            path = entry[0] if entry else ""
            if path:
                out[path] = step.index
    return out


def build_graph(model: nn.Module) -> Graph:
    """Reads ``model``'s forward pass into a :class:`Graph`.

    Raises:
        UnsupportedModelError: fx cannot read the forward, it takes several inputs or
            returns several values, or a layer is set up so that one image has no defined
            output; the message says what to pass instead.
    """
    for name, module in model.named_modules():
        _refuse_unready(name or type(model).__name__, module)
    fx_graph = _trace(model)
    modules = dict(model.named_modules())
    _read_pool_values(fx_graph, modules)
    _read_in_place(fx_graph, modules)
    image, path = _path_nodes(fx_graph)
    result, nodes = _needed(fx_graph)
    if result not in path:
        raise refusal(
            f"the output of {type(model).__name__} does not depend on its input",
            "zfwidgets explains how an image changes the output",
            "pass a model whose forward computes its scores from x",
        )
    names = _step_names(nodes, path)
    step_of: dict[torch.fx.Node, int] = {image: -1}
    steps: list[Step] = []
    for node in nodes:
        if node not in path or node.op == "placeholder":
            continue
        inputs = tuple(step_of[n] for n in node.all_input_nodes if n in path)
        module = None
        if node.op == "call_module":
            module = modules[node.target]
            kind = _module_kind(node.target, module)
        else:
            kind = _function_kind(node, path)
            if kind == "maxpool":
                module = _pool_from_call(node)
        step_of[node] = len(steps)
        steps.append(Step(len(steps), names[node], kind, module, inputs, node))
    if not any(s.kind in ("conv", "linear") for s in steps) and not any(
        isinstance(s.module, nn.Conv2d | nn.Linear) for s in steps
    ):
        raise refusal(
            f"{type(model).__name__} has no Conv2d or Linear layer",
            "zfwidgets shows the features of layers with weights",
            "pass the full network (its convolutions and classifier), not only a part of it",
        )
    _refuse_not_images(steps)
    is_chain = all(s.inputs == (s.index - 1,) for s in steps)
    return Graph(steps, nodes, step_of, _containers(steps), is_chain, _frees(nodes))


def _refuse_not_images(steps: list[Step]) -> None:
    """Signals (Conv1d) and volumes (Conv3d) first: every engine here takes (C, H, W) images."""
    weighted = (
        s for s in steps if s.module is not None and next(s.module.parameters(), None) is not None
    )
    first = next(weighted, None)
    if isinstance(first.module if first else None, nn.Conv1d | nn.Conv3d):
        kind = "1-D signals" if isinstance(first.module, nn.Conv1d) else "3-D volumes"
        raise refusal(
            f"the first layer '{first.name}' is a {first.source}: the model reads {kind}",
            "zfwidgets reads image models, whose inputs are (C, H, W) images",
            "pass a model whose first layer is a Conv2d (or a Linear on flattened images)",
        )


def _frees(nodes: list[torch.fx.Node]) -> list[list[torch.fx.Node]]:
    """For each position, the nodes whose value is read for the last time there."""
    position = {n: i for i, n in enumerate(nodes)}
    last = {n: position[n] for n in nodes}
    for node in nodes:
        for used in node.all_input_nodes:
            if used in last:
                last[used] = max(last[used], position[node])
    out: list[list[torch.fx.Node]] = [[] for _ in nodes]
    for node, at in last.items():
        out[at].append(node)
    return out
