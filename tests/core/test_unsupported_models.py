"""What the engine refuses, and what it accepts but refuses a method for, with the reason named."""

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


class DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3)

    def forward(self, x):
        if x.sum() > 0:  # control flow on the data: fx cannot read it
            return self.conv(x)
        return -self.conv(x)


@pytest.mark.parametrize(
    "model, words",
    [
        (DataDependent(), ["torch.fx", "depends on the data", "same sequence"]),
        (torch.jit.script(nn.Sequential(nn.Conv2d(3, 3, 3))), ["TorchScript", "original"]),
        (
            nn.Sequential(nn.Conv2d(3, 3, 3), nn.BatchNorm2d(3, track_running_stats=False)),
            ["whole batch"],
        ),
        (nn.Sequential(nn.ReLU()), ["no Conv2d or Linear"]),
    ],
)
def test_refused_with_the_reason_named(model, words):
    with pytest.raises(UnsupportedModelError) as info:
        Inspector(model, device="cpu")
    for word in words:
        assert word in str(info.value), str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "model, words",
    [
        (LeakyFunctional(), ["leaky_relu", "no rectifier rule"]),
        (nn.Sequential(nn.Conv2d(3, 3, 3), Swish()), ["sigmoid", "1.sigmoid"]),
        (nn.Sequential(nn.Conv2d(3, 3, 3), nn.Tanh()), ["'1'", "Tanh"]),
        (nn.Sequential(nn.Conv2d(3, 3, 3, padding_mode="reflect")), ["'0'", "Conv2d"]),
    ],
)
def test_no_rectifier_rule_refuses_deconvnet_and_guided_only(model, words):
    """Accepted; gradients stay exact; deconvnet and guided are refused naming the step."""
    torch.manual_seed(0)
    insp = Inspector(model, device="cpu")
    x = torch.randn(3, 12, 12)
    for method in ("deconvnet", "guided"):
        with pytest.raises(UnsupportedModelError) as info:
            insp.project(x, insp.layers[-1], 0, method=method)
        for word in [method, *words]:
            assert word in str(info.value), str(info.value)
    xi = x[None].clone().requires_grad_(True)
    out = model(xi)
    (grad,) = torch.autograd.grad((out[0, 0] * out[0, 0].detach()).sum(), xi)
    ours = insp.project(x, insp.layers[-1], 0, position=None, method="saliency")
    torch.testing.assert_close(ours, grad[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("model", [torchvision.models.resnet18(), Residual()])
def test_residual_models_are_graphs_now(model):
    insp = Inspector(model.eval(), device="cpu")
    assert not insp.graph.is_chain
    assert insp.no_rule_reason() is None


def test_a_reused_module_is_one_step_per_call():
    insp = Inspector(Reused(), device="cpu")
    assert insp.layers == ["conv", "relu", "conv#2"]
    assert insp.layer_index("conv") == 0  # the module's name is its first call


def test_functional_relu_and_view_flatten_are_supported():
    torch.manual_seed(0)
    model = FunctionalReLUNet()
    insp = Inspector(model, device="cpu")
    assert [s.kind for s in insp.steps] == ["conv", "relu", "reshape", "linear"]
    x = torch.randn(3, 32, 32)
    xi = x[None].clone().requires_grad_(True)
    out = model(xi)
    (grad,) = torch.autograd.grad(out[0, 1], xi)
    ours = insp.project(x, "fc", 1, method="saliency") / insp.activations(x, "fc")[1]
    assert torch.allclose(ours, grad[0], atol=1e-6)
