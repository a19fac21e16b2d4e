"""An independent autograd reference for the three projection methods.

Built from a deep copy of the model in which every ReLU and ReLU6 (modules, and the functional
forms while the reference runs) is replaced by an autograd function with the method's backward
rule, so it shares no code with zfwidgets.core:

* deconvnet: backprop where each ReLU passes relu(grad); no contrast normalisation on the way
  down (LRN's gradient replaced by the identity),
* guided: relu(grad) where the forward input was positive,
* saliency: the plain gradient.
"""

from __future__ import annotations

import contextlib
import copy

import torch
import torch.nn.functional as F
from torch import nn


class _RuleReLU(torch.autograd.Function):
    """ReLU (top=inf) or ReLU6 (top=6) with the method's backward rule."""

    @staticmethod
    def forward(ctx, x, method, top):
        ctx.save_for_backward(x)
        ctx.method = method
        ctx.top = top
        return x.clamp(min=0, max=top)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        passing = (x > 0) & (x < ctx.top)
        if ctx.method == "deconvnet":
            return g.clamp(min=0), None, None
        if ctx.method == "guided":
            return g.clamp(min=0) * passing, None, None
        return g * passing, None, None


class _ReLU(nn.Module):
    def __init__(self, method, top=float("inf")):
        super().__init__()
        self.method = method
        self.top = top

    def forward(self, x):
        return _RuleReLU.apply(x, self.method, self.top)


@contextlib.contextmanager
def _functional_rules(method):
    """F.relu, torch.relu and F.relu6 carry the method's rule while the reference runs."""
    saved = (F.relu, torch.relu, F.relu6)

    def relu(x, inplace=False):
        return _RuleReLU.apply(x, method, float("inf"))

    def relu6(x, inplace=False):
        return _RuleReLU.apply(x, method, 6.0)

    F.relu, torch.relu, F.relu6 = relu, relu, relu6
    try:
        yield
    finally:
        F.relu, torch.relu, F.relu6 = saved


class _StraightLRN(nn.Module):
    """LRN forward, identity backward (the deconvnet skips contrast normalisation)."""

    def __init__(self, lrn):
        super().__init__()
        self.lrn = lrn

    def forward(self, x):
        return x + (self.lrn(x) - x).detach()


def _replace(module: nn.Module, method: str) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.ReLU):
            setattr(module, name, _ReLU(method))
        elif isinstance(child, nn.ReLU6):
            setattr(module, name, _ReLU(method, 6.0))
        elif isinstance(child, nn.LocalResponseNorm) and method == "deconvnet":
            setattr(module, name, _StraightLRN(child))
        else:
            _replace(child, method)


class _Stop(Exception):
    """Ends the forward pass once the layer of interest has run."""


class Reference:
    """A rule-modified deep copy of ``model`` for one method; projects with autograd."""

    def __init__(self, model: nn.Module, method: str) -> None:
        self.model = copy.deepcopy(model).eval()
        self.method = method
        _replace(self.model, method)
        self.modules = dict(self.model.named_modules())

    def project(self, x, layer, channel, position):
        """Projection of ``layer``/``channel`` at ``position`` (None, 'max' or (y, x)).

        ``layer`` is a module name; ``"name#k"`` is the k-th call of a reused module.
        """
        captured = {}
        name, _, call = layer.partition("#")
        calls = {"left": int(call or 1)}

        def grab(module, inputs, output):
            calls["left"] -= 1
            if calls["left"] == 0:
                captured["act"] = output
                raise _Stop

        handle = self.modules[name].register_forward_hook(grab)
        xi = x.detach().clone().reshape(1, *x.shape[-3:]).requires_grad_(True)
        try:
            with _functional_rules(self.method):
                self.model(xi)
        except _Stop:
            pass
        finally:
            handle.remove()
        act = captured["act"]
        top = torch.zeros_like(act)
        fmap = act[0, channel].detach()
        if position is None or act.ndim == 2:
            top[0, channel] = fmap
        else:
            if position == "max":
                position = divmod(int(torch.argmax(fmap)), fmap.shape[-1])
            top[0, channel][position] = fmap[position]
        (grad,) = torch.autograd.grad(act, xi, top)
        return grad.reshape(x.shape), act.detach()


def plain_autograd(model: nn.Module, x: torch.Tensor, layers):
    """One forward pass of the unmodified model: (input leaf, logits, {layer: output})."""
    modules = dict(model.named_modules())
    outputs = {}
    handles = [
        modules[n].register_forward_hook(lambda m, i, o, n=n: outputs.__setitem__(n, o))
        for n in layers
    ]
    xi = x[None].clone().requires_grad_(True)
    try:
        logits = model(xi)
    finally:
        for handle in handles:
            handle.remove()
    return xi, logits, outputs
