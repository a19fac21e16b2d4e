"""The small ZF- and Krizhevsky-style nets: map sizes, options, and the deconvnet inverts them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from zfwidgets import Inspector
from zfwidgets.core.graph import build_graph
from zfwidgets.zoo import SmallKrizhevskyNet, SmallZFNet
from zfwidgets.zoo.registry import MODEL_NAMES, get_model


def _reference():
    """tests/core/reference.py (the independent autograd deconvnet), loaded by path."""
    path = Path(__file__).parents[1] / "core" / "reference.py"
    spec = importlib.util.spec_from_file_location("zoo_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Reference


def _conv_side(size: int, kernel: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - kernel) // stride + 1


def _expected_maps(size: int, kernel: int, stride: int) -> dict[str, int]:
    """Hand arithmetic for the shared body: conv1, pool 3/2, conv2 (same), pool 3/2, conv3."""
    c1 = _conv_side(size, kernel, stride, kernel // 2)
    p1 = _conv_side(c1, 3, 2, 0)
    p2 = _conv_side(p1, 3, 2, 0)
    return {"conv1": c1, "conv2": p1, "conv3": p2}


@pytest.mark.parametrize("size", [28, 32])
@pytest.mark.parametrize(
    ("net", "kernel", "stride"), [(SmallZFNet, 5, 1), (SmallKrizhevskyNet, 9, 2)]
)
def test_map_sizes_follow_the_first_layer(net, kernel, stride, size):
    model = net(image_size=size)
    conv1 = model.features[0]
    assert conv1.kernel_size == (kernel, kernel) and conv1.stride == (stride, stride)
    shapes = {
        row["alias"]: row["shape"]
        for row in Inspector(model, device="cpu", cache_bytes=0).describe((1, size, size))
    }
    want = _expected_maps(size, kernel, stride)
    assert shapes["conv1"] == (32, want["conv1"], want["conv1"])
    assert shapes["conv2"] == (64, want["conv2"], want["conv2"])
    assert shapes["conv3"] == (64, want["conv3"], want["conv3"])
    assert net.feature_size(size) == want["conv3"]
    assert model(torch.zeros(2, 1, size, size)).shape == (2, 10)


def test_krizhevsky_variant_halves_the_input_and_keeps_a_spatial_top_map():
    # The docstring's numbers: 28 -> 14 -> 2x2 top map, 32 -> 16 -> 3x3.
    assert _expected_maps(28, 9, 2) == {"conv1": 14, "conv2": 6, "conv3": 2}
    assert _expected_maps(32, 9, 2) == {"conv1": 16, "conv2": 7, "conv3": 3}
    assert SmallKrizhevskyNet.feature_size(28) == 2 and SmallKrizhevskyNet.feature_size(32) == 3
    # The demo net keeps its own defaults (its shipped weights depend on them).
    assert SmallZFNet.feature_size(28) == 6
    demo_like = SmallZFNet()
    assert demo_like.features[0].kernel_size == (5, 5) and demo_like.features[0].stride == (1, 1)


@pytest.mark.parametrize("net", [SmallZFNet, SmallKrizhevskyNet])
@pytest.mark.parametrize("size", [28, 32])
def test_channels_and_classes_are_configurable(net, size):
    model = net(in_channels=3, num_classes=7, image_size=size)
    assert model.features[0].in_channels == 3
    assert model(torch.zeros(1, 3, size, size)).shape == (1, 7)
    insp = Inspector(model, device="cpu", cache_bytes=0)
    assert insp.in_channels == 3 and insp.shapes((3, size, size))[-1][1:] == (7,)


@pytest.mark.parametrize("net", [SmallZFNet, SmallKrizhevskyNet])
def test_wrong_image_size_is_refused_clearly(net):
    model = net(image_size=28)
    with pytest.raises(ValueError, match=r"\(1, 32, 32\)"):
        Inspector(model, device="cpu", cache_bytes=0).shapes((1, 32, 32))
    with pytest.raises(ValueError, match="image_size=4"):
        net(image_size=4)


@pytest.mark.parametrize("net", [SmallZFNet, SmallKrizhevskyNet])
@pytest.mark.parametrize("size", [28, 32])
def test_the_deconvnet_inverts_them(net, size):
    """Chain read by build_chain; conv2/conv3 projections equal the autograd reference."""
    torch.manual_seed(0)
    model = net(in_channels=3, image_size=size).eval()
    chain = build_graph(model).steps
    kinds = [s.kind for s in chain]
    assert kinds[:4] == ["conv", "relu", "maxpool", "lrn"] and kinds[-1] == "linear"
    insp = Inspector(model, device="cpu")
    reference = _reference()(model, "deconvnet")
    x = torch.randn(3, size, size)
    for layer, channel in (("conv2", 5), ("conv3", 11)):
        got = insp.project(x, layer, channel)
        want, _ = reference.project(x, insp.layer_name(layer), channel, "max")
        assert got.shape == x.shape
        assert want.abs().max() > 0
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_registry_builds_our_architectures():
    for name, cls, shape in (
        ("small_zfnet", SmallZFNet, (1, 28, 28)),
        ("small_krizhevsky", SmallKrizhevskyNet, (1, 28, 28)),
    ):
        assert name in MODEL_NAMES
        model, input_shape = get_model(name)
        assert type(model) is cls and input_shape == shape and not model.training
        assert model(torch.zeros(1, *shape)).shape == (1, 10)
    with pytest.raises(ValueError, match="no pretrained weights"):
        get_model("small_krizhevsky", pretrained=True)
