"""Does our reading of a model compute what the model computes? One probe per input size.

torch.fx reads a forward's code, not what it does: an operation it cannot see (an in-place
write into a view, an assignment into a tensor, a random draw) would make every picture come
from another network. So once per model (weights and module tree) and input shape, the
:class:`~zfwidgets.core.inspector.Inspector` runs a seeded random probe image through a
hook-free deep copy of the model, in eval mode and float32 (the user's model is never called,
its hooks never run, its mode never changes), and through our own steps, and compares every
module step's output and the final output. A difference beyond the tolerance is refused,
naming the first step that differs.

Example:
    >>> import torch, torch.nn as nn
    >>> from zfwidgets.core.graph import build_graph
    >>> from zfwidgets.core.layers import graph_weights
    >>> model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(18, 3))
    >>> graph = build_graph(model)
    >>> weights = graph_weights(graph, model, torch.device("cpu"))
    >>> check_reading(graph, weights, model, (1, 5, 5), torch.device("cpu"))  # agrees: None
"""

from __future__ import annotations

import contextlib
import copy
import math
import threading
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.modules.module as torch_module
from torch import Tensor, nn

from zfwidgets.core.graph import FX_LOCK, Graph, Step, UnsupportedModelError
from zfwidgets.core.layers import Weights, evaluate, run_graph

__all__ = ["check_reading", "probe_input", "tolerance"]

_SEED = 20140912  # the paper's ECCV date: any fixed seed gives the same probe every time
_GLOBAL_HOOKS = (
    "_global_forward_hooks",
    "_global_forward_pre_hooks",
    "_global_forward_hooks_always_called",
    "_global_forward_hooks_with_kwargs",
    "_global_backward_hooks",
    "_global_backward_pre_hooks",
)
_HOOKS_LOCK = threading.Lock()


def probe_input(input_shape: tuple[int, ...], device: torch.device) -> Tensor:
    """The probe image: seeded standard normal values, (1, *input_shape), on ``device``.

    Example:
        >>> a = probe_input((1, 4, 4), torch.device("cpu"))
        >>> a.shape, bool((a == probe_input((1, 4, 4), torch.device("cpu"))).all())
        (torch.Size([1, 1, 4, 4]), True)
    """
    generator = torch.Generator().manual_seed(_SEED)
    return torch.randn((1, *input_shape), generator=generator).to(device)


def tolerance(reference: Tensor) -> float:
    """How far our output may be from the model's: ``1e-4 * max|reference| + 1e-5`` (both are
    computed in float32; non-finite values do not set the scale).

    Example:
        >>> round(tolerance(torch.tensor([2.0, -10.0, float("nan")])), 6)
        0.00101
    """
    finite = reference[torch.isfinite(reference)]
    scale = float(finite.abs().max()) if finite.numel() else 0.0
    return 1e-4 * scale + 1e-5


def _tensors(value: Any) -> list[Tensor]:
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, tuple | list):
        return [t for v in value for t in _tensors(v)]
    return []


def _gap(ours: Any, theirs: Any) -> tuple[float, float] | None:
    """(largest difference, tolerance) when ``ours`` and ``theirs`` differ; None if they agree."""
    mine, model = _tensors(ours), _tensors(theirs)
    if len(mine) != len(model):
        return float("inf"), 0.0
    for a, b in zip(mine, model, strict=True):
        if a.shape != b.shape:
            return float("inf"), 0.0
        a, b = a.detach().float(), b.detach().to(a.device, torch.float32)
        if a.numel() == 0 or torch.equal(a, b):
            continue
        worst, scale = float((a - b).abs().max()), float(b.abs().max())
        if math.isfinite(worst) and math.isfinite(scale):  # the usual case: two reductions
            if worst <= 1e-4 * scale + 1e-5:
                continue
            return worst, 1e-4 * scale + 1e-5
        same_nan = torch.isnan(a) & torch.isnan(b)
        diff = torch.where(same_nan | (a == b), torch.zeros_like(a), (a - b).abs())
        worst, allowed = float(diff.max()) if diff.numel() else 0.0, tolerance(b)
        if not worst <= allowed:  # NaN on one side only counts as a difference
            return worst, allowed
    return None


@contextlib.contextmanager
def _no_global_hooks() -> Iterator[None]:
    """torch's global module hooks (the user's) set aside while our copy runs."""
    saved = {}
    with _HOOKS_LOCK:
        try:
            for name in _GLOBAL_HOOKS:
                hooks = getattr(torch_module, name, None)
                if hooks:
                    saved[name] = dict(hooks)
                    hooks.clear()
            yield
        finally:
            for name, items in saved.items():
                getattr(torch_module, name).update(items)


def _hook_free_copy(model: nn.Module, device: torch.device) -> nn.Module:
    """A deep copy of ``model`` on ``device``, float32, eval mode, every module hook and
    instance-level forward removed.

    Every tensor is copied too (AlexNet: about as long as one forward pass), not shared: a
    forward may write into its own weights through ``.data``, which nothing would notice.
    """
    try:
        mine = copy.deepcopy(model)
    except Exception as err:  # deepcopy raises whatever the model's objects raise
        raise UnsupportedModelError(
            f"{type(model).__name__} cannot be deep-copied ({type(err).__name__}: {err}); "
            "zfwidgets checks its reading of a model on a copy, never on the model itself: "
            "pass a model that copy.deepcopy accepts"
        ) from err
    for m in mine.modules():
        for attr in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks"):
            getattr(m, attr).clear()
        for attr in ("_backward_pre_hooks", "_forward_hooks_with_kwargs"):
            getattr(m, attr, {}).clear()
        for attr in ("_forward_pre_hooks_with_kwargs", "_forward_hooks_always_called"):
            getattr(m, attr, {}).clear()
        # A forward set on the instance (a wrapper) may call the user's module: run the
        # class's forward, the one torch.fx reads.
        m.__dict__.pop("forward", None)
    return mine.to(device).float().eval().requires_grad_(False)


def _model_outputs(graph: Graph, mine: nn.Module, x: Tensor) -> tuple[Any, dict[str, list]]:
    """The copy's output for ``x`` and, per module step's target, its output at each call."""
    modules = dict(mine.named_modules())
    seen: dict[str, list] = {}
    handles = []
    hooked: set[int] = set()
    for step in graph.steps:
        target = str(step.node.target)
        if step.node.op != "call_module" or id(modules[target]) in hooked:
            continue
        hooked.add(id(modules[target]))
        module = modules[target]
        pool = isinstance(module, nn.MaxPool2d) and module.return_indices

        def keep(_m, _args, out, target=target, pool=pool) -> None:
            out = out[0] if pool else out  # y of `y, idx = pool(x)`
            seen.setdefault(target, []).append([t.detach().clone() for t in _tensors(out)])

        handles.append(module.register_forward_hook(keep))
    devices = [x.device] if x.device.type == "cuda" else []
    try:  # a random draw in the forward must not move the user's random state
        with _no_global_hooks(), torch.no_grad(), torch.random.fork_rng(devices):
            out = mine(x.clone())  # the forward may write into its input
    finally:
        for handle in handles:
            handle.remove()
    return out, seen


def _describe(step: Step) -> str:
    return f"step '{step.name}' ({step.source})"


def check_reading(
    graph: Graph,
    weights: Weights,
    model: nn.Module,
    input_shape: tuple[int, ...],
    device: torch.device,
) -> None:
    """Refuses when our steps do not compute what ``model`` computes on a probe input.

    Runs :func:`probe_input` through a hook-free float32 deep copy of ``model`` in eval mode
    (freed afterwards) and through ``graph`` on ``weights``, comparing each module step's
    output at each of its calls and the final output within :func:`tolerance`.

    Raises:
        UnsupportedModelError: the first step whose output differs (or, when every module step
            agrees, the output), and what to do; or the model's own forward fails at this size.
    """
    x = probe_input(input_shape, device)
    name = type(model).__name__
    mine = _hook_free_copy(model, device)
    try:
        try:
            with FX_LOCK:  # no trace may patch module calls meanwhile
                theirs, seen = _model_outputs(graph, mine, x)
        except Exception as err:  # the model's own code: any type
            raise UnsupportedModelError(
                f"{name}'s own forward fails on an image of shape {tuple(input_shape)} "
                f"({type(err).__name__}: {err}); zfwidgets answers only for inputs the model "
                "itself can run: use the image size the model was built for"
            ) from err
    finally:
        del mine
    calls: dict[str, int] = {}
    agreed: list[Step] = []

    def compute(step: Step, w: dict, env: dict) -> Any:
        try:
            y = evaluate(step, w, env)
        except Exception as err:  # our run of the user's function, any type
            raise UnsupportedModelError(
                f"zfwidgets cannot run {_describe(step)} of {name} as read by torch.fx "
                f"({type(err).__name__}: {err}); rewrite that operation out of place"
            ) from err
        if step.node.op == "call_module":
            target = str(step.node.target)
            k = calls[target] = calls.get(target, 0) + 1
            outputs = seen.get(target, [])
            gap = (float("inf"), 0.0) if k > len(outputs) else _gap(y, outputs[k - 1])
            if gap is not None:
                raise _refusal(name, step, agreed, gap, input_shape)
            agreed.append(step)
        return y

    with torch.no_grad():
        ours = run_graph(graph, weights, x, None, (), compute)[len(graph.steps) - 1]
    gap = _gap(ours, theirs)
    if gap is not None:
        raise _refusal(name, graph.steps[-1], agreed, gap, input_shape, output=True)


def _refusal(
    name: str,
    step: Step,
    agreed: list[Step],
    gap: tuple[float, float],
    input_shape: tuple[int, ...],
    output: bool = False,
) -> UnsupportedModelError:
    worst, allowed = gap
    how = (
        "a different number of calls or outputs"
        if worst == float("inf")
        else f"outputs up to {worst:.3g} away (tolerance {allowed:.2g})"
    )
    where = f"the model's output (after {_describe(step)})" if output else _describe(step)
    before = f"; every module step up to '{agreed[-1].name}' agrees" if agreed else ""
    return UnsupportedModelError(
        f"zfwidgets reads {name}'s forward differently from what it computes: on a probe image "
        f"of shape {tuple(input_shape)}, {where} gives {how} compared with the model's own "
        f"forward{before}. Something there is not read as the model runs it (an in-place write "
        "into a view or slice, a random or data-dependent operation, a module changed inside "
        "forward): compute it out of place in the forward, or pass a wrapper module whose "
        "forward zfwidgets can read. No picture is shown rather than one from another network."
    )
