"""Models the deconvnet cannot invert faithfully are refused with the culprit named."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from zfwidgets import Inspector, UnsupportedModelError


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 3, 3, padding=1)
        self.conv2 = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        return self.conv2(torch.relu(self.conv1(x))) + x


class Reused(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.conv(self.relu(self.conv(x)))


class LeakyFunctional(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3)

    def forward(self, x):
        return F.leaky_relu(self.conv(x))


class Swish(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(x)


class FunctionalReLUNet(nn.Module):
    """F.relu is visible to torch.fx, so this one is supported."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4 * 30 * 30, 2)

    def forward(self, x):
        x = F.relu(self.conv(x))
        return self.fc(x.view(x.size(0), -1))


@pytest.mark.parametrize(
    "model, words",
    [
        (torchvision.models.resnet18(), ["'add'", "layer1.0", "residual"]),
        (Residual(), ["'add'", "residual"]),
        (Reused(), ["'conv'", "more than once"]),
        (LeakyFunctional(), ["leaky_relu", "cannot be inverted"]),
        (nn.Sequential(nn.Conv2d(3, 3, 3), Swish()), ["sigmoid", "inside module '1'"]),
        (nn.Sequential(nn.Conv2d(3, 3, 3), nn.Tanh()), ["'1'", "Tanh", "Supported layers"]),
        (nn.Sequential(nn.Conv2d(3, 3, 3, padding_mode="reflect")), ["'reflect'"]),
        (
            nn.Sequential(nn.Conv2d(3, 3, 3), nn.BatchNorm2d(3, track_running_stats=False)),
            ["whole batch"],
        ),
        (nn.Sequential(nn.ReLU()), ["no Conv2d or Linear"]),
    ],
)
def test_refused_with_the_culprit_named(model, words):
    with pytest.raises(UnsupportedModelError) as info:
        Inspector(model, device="cpu")
    for word in words:
        assert word in str(info.value), str(info.value)
    assert isinstance(info.value, ValueError)


def test_functional_relu_and_view_flatten_are_supported():
    torch.manual_seed(0)
    model = FunctionalReLUNet()
    insp = Inspector(model, device="cpu")
    assert [s.kind for s in insp.chain] == ["conv", "relu", "flatten", "linear"]
    x = torch.randn(3, 32, 32)
    xi = x[None].clone().requires_grad_(True)
    out = model(xi)
    (grad,) = torch.autograd.grad(out[0, 1], xi)
    ours = insp.project(x, "fc", 1, method="saliency") / insp.activations(x, "fc")[1]
    assert torch.allclose(ours, grad[0], atol=1e-6)
