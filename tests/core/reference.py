"""An independent autograd reference for the three projection methods.

Built from a deep copy of the model in which every ReLU is replaced by an autograd function
with the method's backward rule, so it shares no code with zfwidgets.core:

* deconvnet: backprop where each ReLU passes relu(grad); no contrast normalisation on the way
  down (LRN's gradient replaced by the identity),
* guided: relu(grad) where the forward input was positive,
* saliency: the plain gradient.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class _RuleReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, method):
        ctx.save_for_backward(x)
        ctx.method = method
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        if ctx.method == "deconvnet":
            return g.clamp(min=0), None
        if ctx.method == "guided":
            return g.clamp(min=0) * (x > 0), None
        return g * (x > 0), None


class _ReLU(nn.Module):
    def __init__(self, method):
        super().__init__()
        self.method = method

    def forward(self, x):
        return _RuleReLU.apply(x, self.method)


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
        _replace(self.model, method)
        self.modules = dict(self.model.named_modules())

    def project(self, x, layer, channel, position):
        """Projection of ``layer``/``channel`` at ``position`` (None, 'max' or (y, x))."""
        captured = {}

        def grab(module, inputs, output):
            captured["act"] = output
            raise _Stop

        handle = self.modules[layer].register_forward_hook(grab)
        xi = x.detach().clone().reshape(1, *x.shape[-3:]).requires_grad_(True)
        try:
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
