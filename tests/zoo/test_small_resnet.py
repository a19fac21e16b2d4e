"""The small residual net: a graph with readable blocks, and every method inverts it exactly."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from torch import nn

from zfwidgets import Inspector
from zfwidgets.zoo import SmallResNet
from zfwidgets.zoo.registry import MODEL_NAMES, get_model

STAGES = ("stem", "layer1", "layer2", "layer3")


def _reference():
    """tests/core/reference.py (the independent autograd reference), loaded by path."""
    path = Path(__file__).parents[1] / "core" / "reference.py"
    spec = importlib.util.spec_from_file_location("resnet_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Reference


def _trained_looking(seed: int = 0) -> SmallResNet:
    """A SmallResNet in eval mode whose batch norms are not the identity (as after training)."""
    torch.manual_seed(seed)
    model = SmallResNet()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.fixture(scope="module")
def model():
    return _trained_looking()


@pytest.fixture(scope="module")
def insp(model):
    return Inspector(model, device="cpu")


def test_traces_as_a_graph_with_the_stages_as_blocks(insp):
    assert not insp.graph.is_chain
    assert insp.blocks == [*STAGES, "avgpool", "fc"]
    assert insp.aliases == {}
    # A stage's output is its last block's second call of the shared ReLU, after the addition.
    assert [insp.layer_name(s) for s in STAGES] == [
        "stem.relu",
        "layer1.0.relu#2",
        "layer2.0.relu#2",
        "layer3.0.relu#2",
    ]
    kinds = [s.kind for s in insp.steps]
    assert kinds.count("add") == 3 and kinds.count("conv") == 9 and kinds[-1] == "linear"
    shapes = insp.shapes((1, 28, 28))
    sides = {s: tuple(shapes[insp.layer_index(s)][1:]) for s in STAGES}
    assert sides == {
        "stem": (16, 28, 28),
        "layer1": (16, 28, 28),
        "layer2": (32, 14, 14),
        "layer3": (64, 7, 7),
    }
    # Evolution's default layers: every block with feature maps (the global pool's are 1x1).
    assert insp.map_layers((1, 28, 28)) == [*STAGES, "avgpool"]
    assert insp.default_layer((1, 28, 28)) == "layer3"
    assert set(insp.methods) >= {"deconvnet", "guided", "saliency"}


@pytest.mark.parametrize("method", ["deconvnet", "guided", "saliency"])
def test_projections_equal_the_autograd_reference(model, insp, method):
    reference = _reference()(model, method)
    x = torch.randn(1, 28, 28, generator=torch.Generator().manual_seed(1))
    for layer in STAGES:
        acts = insp.activations(x, layer)
        strongest = int(acts.amax((1, 2)).argmax())
        fmap = acts[strongest]
        weakest = int(torch.where(fmap > 0, fmap, torch.inf).argmin())
        # The strongest map at its maximum, and at its weakest active unit.
        for position in ("max", divmod(weakest, fmap.shape[-1])):
            got = insp.project(x, layer, strongest, position=position, method=method)
            want, _ = reference.project(x, insp.layer_name(layer), strongest, position)
            assert got.shape == x.shape
            scale = float(want.abs().max())
            assert scale > 0, (layer, position)
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * scale)


def test_identity_and_downsampling_shortcuts():
    model = SmallResNet(widths=(8, 8, 16), blocks=(2, 1, 1))
    assert model.layer1[0].downsample is None and model.layer1[1].downsample is None
    assert model.layer2[0].downsample is not None  # same width, but stride 2: a 1x1 conv
    assert model.layer3[0].downsample[0].stride == (2, 2)
    blocks = Inspector(model, device="cpu", cache_bytes=0).blocks
    assert blocks[:4] == ["stem", "layer1.0", "layer1", "layer2"]


@pytest.mark.parametrize("size", [28, 32])
def test_channels_classes_and_sizes_are_configurable(size):
    model = SmallResNet(in_channels=3, num_classes=7).eval()
    assert model(torch.zeros(2, 3, size, size)).shape == (2, 7)
    insp = Inspector(model, device="cpu", cache_bytes=0)
    assert insp.in_channels == 3 and insp.shapes((3, size, size))[-1][1:] == (7,)
    with pytest.raises(ValueError, match="3 entries"):
        SmallResNet(widths=(8, 16))
    with pytest.raises(ValueError, match="at least one block"):
        SmallResNet(blocks=(1, 0, 1))


def test_registry_builds_it():
    assert "small_resnet" in MODEL_NAMES
    model, shape = get_model("small_resnet")
    assert type(model) is SmallResNet and shape == (1, 28, 28) and not model.training
