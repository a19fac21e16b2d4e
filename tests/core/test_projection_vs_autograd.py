"""Every projection method against the independent autograd reference (tests/core/reference.py).

deconvnet = backprop where each ReLU passes relu(grad); guided = relu(grad) where the forward
input was positive; saliency = the plain gradient. Tolerance: 1e-5 of the reference's max.
"""

from __future__ import annotations

import pytest
import torch
import torchvision
from models import zf_like
from reference import Reference

from zfwidgets import Inspector

METHODS = ("deconvnet", "guided", "saliency")
TOL = 1e-5


def _case_positions(act: torch.Tensor, channel: int):
    """Whole map, strongest unit, and the last non-zero unit (not the strongest)."""
    if act.ndim == 1:
        return [None, "max"]
    live = act[channel].flatten().nonzero()
    assert len(live) > 1, "channel has too few live units for a meaningful test"
    return [None, "max", divmod(int(live[-1]), act.shape[2])]


def _check(insp, refs, x, layer, channel):
    name = insp.layer_name(layer)
    act = insp.activations(x, layer)
    if act.ndim == 1:  # a fully connected unit: take the most active one, so it is not dead
        channel = int(act.argmax())
    elif channel is None:  # the map with most live units, so every position case means something
        channel = int((act != 0).flatten(1).sum(1).argmax())
    for method in METHODS:
        for position in _case_positions(act, channel):
            ours = insp.project(x, layer, channel, position=position, method=method)
            ref, ref_act = refs[method].project(x, name, channel, position)
            scale = ref.abs().max().item()
            assert scale > 0, f"trivial reference for {layer} {method} {position}"
            err = (ours - ref).abs().max().item() / scale
            assert err <= TOL, f"{layer} ch{channel} {method} {position}: rel err {err:.2e}"
            assert torch.allclose(act, ref_act[0], rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def zf():
    model = zf_like()
    return model, Inspector(model, device="cpu"), {m: Reference(model, m) for m in METHODS}


@pytest.mark.parametrize("layer", ["0", "1", "conv1", "3", "4", "5", "conv2", "7", "8", "fc3"])
def test_all_layer_kinds_match_autograd(zf, layer):
    model, insp, refs = zf
    x = torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(1))
    act = insp.activations(x, layer)
    channel = int(act.flatten(1).amax(1).argmax()) if act.ndim == 3 else int(act.argmax())
    _check(insp, refs, x, layer, channel)


@pytest.fixture(scope="module")
def alexnet():
    torch.manual_seed(0)
    model = torchvision.models.alexnet().eval()
    return model, Inspector(model, device="cpu"), {m: Reference(model, m) for m in METHODS}


@pytest.mark.parametrize("layer", ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6"])
def test_alexnet_matches_autograd(alexnet, layer):
    model, insp, refs = alexnet
    x = torch.randn(3, 224, 224, generator=torch.Generator().manual_seed(2))
    _check(insp, refs, x, layer, channel=7)


@pytest.fixture(scope="module")
def vgg16():
    torch.manual_seed(0)
    model = torchvision.models.vgg16().eval()
    return model, Inspector(model, device="cpu"), {m: Reference(model, m) for m in METHODS}


@pytest.mark.parametrize("layer", [f"conv{i}" for i in range(1, 14)] + ["fc14"])
def test_vgg16_matches_autograd(vgg16, layer):
    model, insp, refs = vgg16
    x = torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(3))
    _check(insp, refs, x, layer, channel=None)


def test_vgg11_bn_matches_autograd():
    torch.manual_seed(0)
    model = torchvision.models.vgg11_bn().eval()
    for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        bn.running_var.uniform_(0.5, 2.0)
        bn.running_mean.uniform_(-0.1, 0.1)
    insp = Inspector(model, device="cpu")
    refs = {m: Reference(model, m) for m in METHODS}
    x = torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(4))
    for layer in ("conv1", "conv4", "conv8"):
        _check(insp, refs, x, layer, channel=None)


@pytest.fixture(scope="module")
def demo_model():
    from zfwidgets import demo

    d = demo.load()
    refs = {m: Reference(d.model, m) for m in METHODS}
    return d, Inspector(d.model, device="cpu"), refs


@pytest.mark.parametrize("layer", ["features.0", "conv1", "conv2", "conv3", "fc4"])
def test_demo_model_matches_autograd(demo_model, layer):
    d, insp, refs = demo_model
    x, _ = d.dataset[11]
    _check(insp, refs, x, layer, channel=None)


def test_trace_projection_ends_at_the_projection(demo_model):
    d, insp, _ = demo_model
    x, _ = d.dataset[4]
    for method in METHODS:
        trace = insp.trace_projection(x, "conv3", 2, method=method)
        kinds = [step.kind for step, _ in trace[1:]]
        assert kinds == [s.kind for s in reversed(insp.chain[: insp.layer_index("conv3") + 1])]
        assert torch.allclose(trace[-1][1], insp.project(x, "conv3", 2, method=method))
        assert trace[0][1].shape == insp.activations(x, "conv3").shape
