"""The paper's architectures have the paper's map sizes, and the deconvnet accepts them."""

from __future__ import annotations

import pytest
import torch

from zfwidgets import Inspector
from zfwidgets.core.graph import build_graph
from zfwidgets.zoo import KrizhevskyNet, ZFNet
from zfwidgets.zoo.registry import get_model


def _spatial_sizes(model):
    insp = Inspector(model, device="cpu", cache_bytes=0)
    return insp, {row["alias"]: row["shape"] for row in insp.describe((3, 224, 224))}


def test_zfnet_matches_figure_3():
    insp, shapes = _spatial_sizes(ZFNet(num_classes=10))
    assert shapes["conv1"] == (96, 110, 110)
    assert insp.shapes((3, 224, 224))[2][1:] == (96, 55, 55)  # pool 1
    assert shapes["conv2"] == (256, 26, 26)
    assert shapes["conv3"] == (384, 13, 13)
    assert shapes["conv5"] == (256, 13, 13)
    assert insp.shapes((3, 224, 224))[14][1:] == (256, 6, 6)  # pool 5: 9216 values
    assert shapes["fc6"] == (4096,) and shapes["fc7"] == (4096,) and shapes["fc8"] == (10,)


def test_krizhevsky_first_layer_is_11x11_stride_4():
    insp, shapes = _spatial_sizes(KrizhevskyNet(num_classes=10))
    assert shapes["conv1"] == (96, 55, 55)
    assert shapes["conv2"] == (256, 27, 27)
    assert insp.shapes((3, 224, 224))[14][1:] == (256, 6, 6)


@pytest.mark.parametrize("net", [ZFNet, KrizhevskyNet])
def test_in_channels_and_classes_are_configurable(net):
    model = net(num_classes=7, in_channels=1)
    insp = Inspector(model, device="cpu", cache_bytes=0)
    assert insp.in_channels == 1 and insp.shapes((1, 224, 224))[-1][1:] == (7,)


@pytest.mark.parametrize("net", [ZFNet, KrizhevskyNet])
def test_the_deconvnet_inverts_them_at_224(net):
    """build_graph reads the whole net; a conv2 projection lands exactly on the 224x224 input
    (Krizhevsky's 11x11/4 conv1 is the layer whose transposed filtering would give 223)."""
    torch.manual_seed(0)
    model = net(num_classes=10)
    assert [s.kind for s in build_graph(model).steps].count("conv") == 5
    insp = Inspector(model, device="cpu", cache_bytes=0)
    x = torch.randn(3, 224, 224)
    projection = insp.project(x, "conv2", channel=3)
    assert projection.shape == (3, 224, 224)
    # The projection lies inside the receptive field of the strongest conv2 unit.
    act = insp.activations(x, "conv2")[3]
    y, x_ = divmod(int(torch.argmax(act)), act.shape[-1])
    box = insp.receptive_field("conv2", y, x_, (3, 224, 224))
    inside = torch.zeros(224, 224, dtype=torch.bool)
    inside[box.slices[0], box.slices[1]] = True
    assert projection.abs().sum() > 0
    assert projection[:, ~inside].abs().max() == 0


def test_registry_builds_the_paper_nets():
    model, shape = get_model("zfnet")
    assert type(model) is ZFNet and shape == (3, 224, 224)
    model, shape = get_model("krizhevsky")
    assert type(model) is KrizhevskyNet and shape == (3, 224, 224)
