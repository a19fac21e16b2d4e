"""The paper's architectures have the paper's map sizes, and the deconvnet accepts them."""

from __future__ import annotations

import pytest

from zfwidgets import Inspector
from zfwidgets.zoo import KrizhevskyNet, ZFNet


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
