"""Receptive fields checked by perturbing one pixel; rendering checked on hand-made inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from models import zf_like
from PIL import Image

from zfwidgets import Inspector
from zfwidgets.core import render
from zfwidgets.core.receptive import nominal_fields


def _changed_units(insp, x, layer, pixel):
    """Which units of ``layer`` change when one input pixel (all channels) changes."""
    a = insp.activations(x, layer)
    y = x.clone()
    y[:, pixel[0], pixel[1]] += 50.0
    b = insp.activations(y, layer)
    return ((a - b).abs() > 0).any(0)


@pytest.mark.parametrize("layer", ["0", "2", "4", "7", "8"])
def test_unit_boxes_match_pixel_perturbation(layer):
    """A unit changes only if the pixel is in its box (exact for the units that do change);
    with pre-activation layers and random weights, every unit whose box holds it changes."""
    model = zf_like()
    insp = Inspector(model, device="cpu", keep=[layer])
    x = torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(0))
    for pixel in [(0, 0), (13, 20), (31, 31), (5, 30)]:
        changed = _changed_units(insp, x, layer, pixel)
        h, w = changed.shape
        inside = torch.zeros(h, w, dtype=torch.bool)
        for uy in range(h):
            for ux in range(w):
                box = insp.receptive_field(layer, uy, ux, (3, 32, 32))
                inside[uy, ux] = (
                    box.top <= pixel[0] < box.bottom and box.left <= pixel[1] < box.right
                )
        assert not (changed & ~inside).any(), f"unit changed outside its box at {pixel}"
        if layer == "0":  # pre-activation conv: everything in the box must react
            assert torch.equal(changed, inside)


def test_alexnet_nominal_fields():
    """Textbook values: AlexNet conv1 11/4, pool1 19/8, conv2 51/8, conv5 163/16, pool5 195/32."""
    insp = Inspector(torchvision.models.alexnet(), device="cpu")
    fields = nominal_fields(insp.chain)
    by_name = dict(zip(insp.layers, fields, strict=True))
    assert (by_name["features.0"].size, by_name["features.0"].stride) == (11, 4)
    assert (by_name["features.2"].size, by_name["features.2"].stride) == (19, 8)
    assert (by_name["features.3"].size, by_name["features.3"].stride) == (51, 8)
    assert (by_name["features.10"].size, by_name["features.10"].stride) == (163, 16)
    assert (by_name["features.12"].size, by_name["features.12"].stride) == (195, 32)
    assert by_name["classifier.1"].size == 0  # fully connected: the whole image


def test_receptive_box_of_alexnet_corner_and_centre():
    insp = Inspector(torchvision.models.alexnet(), device="cpu")
    corner = insp.receptive_field("features.0", 0, 0, (3, 224, 224))
    assert (corner.top, corner.left, corner.bottom, corner.right) == (0, 0, 9, 9)  # 11 - pad 2
    centre = insp.receptive_field("features.0", 10, 20, (3, 224, 224))
    assert (centre.top, centre.left, centre.bottom - centre.top) == (38, 78, 11)
    whole = insp.receptive_field("fc6", 0, 0, (3, 224, 224))
    assert whole.slices == (slice(0, 224), slice(0, 224))


def test_projection_image_zero_is_grey_and_stretch_is_symmetric():
    p = torch.tensor([[[-2.0, 0.0, 1.0, 2.0]]])
    assert render.projection_image(p)[0].tolist() == [0, 128, 192, 255]
    rgb = torch.zeros(3, 2, 2)
    rgb[0, 0, 0] = 4.0
    rgb[1, 1, 1] = -1.0
    out = render.projection_image(rgb)
    assert out.shape == (2, 2, 3) and out[0, 0, 0] == 255 and out[1, 1, 1] == 96
    per = render.projection_image(rgb, per_channel=True)
    assert per[1, 1, 1] == 0  # each channel stretched on its own
    assert render.projection_image(torch.zeros(1, 3, 3)).tolist() == [[128] * 3] * 3


def test_saliency_heatmap_grid_and_png():
    s = render.saliency_image(torch.tensor([[[1.0, -4.0]], [[2.0, 0.0]]]))
    assert s.tolist() == [[128, 255]]
    h = render.heatmap(np.array([[0.0, 1.0]]))
    assert h.shape == (1, 2, 3) and h[0, 0].sum() < h[0, 1].sum()
    tiles = [np.full((4, 5), v, np.uint8) for v in (10, 200, 90)]
    g = render.grid(tiles, cols=2, pad=1, background=0)
    assert g.shape == (2 * 5 + 1, 2 * 6 + 1, 3)
    assert g[1, 1, 0] == 10 and g[1, 7, 0] == 200 and g[6, 1, 0] == 90 and g[6, 7, 0] == 0
    png = render.to_png(render.upscale(g, 3))
    back = np.asarray(Image.open(__import__("io").BytesIO(png)))
    assert back.shape == (33, 39, 3) and back[3, 3, 0] == 10


def test_input_image_adds_the_mean_back():
    mean = torch.full((1, 2, 2), 0.5)
    x = torch.tensor([[[0.5, -0.5], [0.0, 0.25]]])
    assert render.input_image(x, mean).tolist() == [[255, 0], [128, 191]]
