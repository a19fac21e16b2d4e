"""The public Fig. 2 panel: tiles checked against projections made here, seeded map choice."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from zfwidgets import Inspector, demo
from zfwidgets.core import panels, render
from zfwidgets.core.mining import mine
from zfwidgets.core.preprocess import as_preprocessing

PAD, GAP, OUTER, TEXT = 2, 10, 16, panels.SLIDE_TEXT  # render.grid pads around tiles too


@pytest.fixture(scope="module")
def mined():
    d = demo.load()
    insp = Inspector(d.model, device="cpu")
    data = torch.utils.data.Subset(d.dataset, range(120))
    top = mine(insp, data, layers=["conv1", "conv2"], k=9, progress=False)
    return d, insp, data, top


def _band(size: int = TEXT) -> int:
    return size + 8  # a title band: panels.titled's height above the picture


def test_top_left_tile_is_the_first_entrys_projection(mined):
    d, insp, data, top = mined
    panel = panels.fig2_panel(insp, top, data, "conv2", maps=[7], tile=44)
    t = top.layers[insp.layer_name("conv2")]
    index = int(t.images[7, 0])
    y, x = (int(v) for v in t.positions[7, 0])
    image = data[index][0]
    # Independent: the unit projected through Inspector.project, cut to its receptive field.
    projection = insp.project(image, "conv2", 7, position=(y, x))
    rows, cols = insp.receptive_field("conv2", y, x, tuple(image.shape)).slices
    expected = panels.fit(render.projection_image(projection[:, rows, cols].cpu()), 44)
    # the pairs' pad, the map's title, the halves' pad, "projections", the tiles' pad
    top_left = OUTER + _band() + GAP + _band() + PAD
    left = OUTER + GAP + PAD
    tile = panel[top_left : top_left + 44, left : left + 44]
    np.testing.assert_array_equal(tile, expected)


def test_patches_in_true_colours_with_preprocessing(mined):
    d, insp, data, top = mined
    prep = as_preprocessing(mean=d.mean)
    panel = panels.fig2_panel(insp, top, data, "conv1", maps=3, tile=40, preprocessing=prep)
    t = top.layers[insp.layer_name("conv1")]
    index = int(t.images[3, 0])
    y, x = (int(v) for v in t.positions[3, 0])
    image = data[index][0]
    rows, cols = insp.receptive_field("conv1", y, x, tuple(image.shape)).slices
    expected = panels.fit(render.input_image(image, d.mean)[rows, cols], 40)
    half = 3 * (40 + PAD) + PAD  # one 3x3 grid's width
    top_left = OUTER + _band() + GAP + _band() + PAD
    left = OUTER + GAP + half + GAP + PAD  # past the projections and the gap between the halves
    np.testing.assert_array_equal(panel[top_left : top_left + 40, left : left + 40], expected)


def test_seeded_random_maps(mined):
    d, insp, data, top = mined
    a = panels.fig2_panel(insp, top, data, "conv1", seed=1, count=2)
    again = panels.fig2_panel(insp, top, data, "conv1", seed=1, count=2)
    other = panels.fig2_panel(insp, top, data, "conv1", seed=2, count=2)
    np.testing.assert_array_equal(a, again)
    assert a.shape == other.shape and not np.array_equal(a, other)
    assert panels._fig2_maps(32, "conv1", None, 1, 2) != panels._fig2_maps(32, "conv1", None, 2, 2)


def test_out_of_range_maps_name_the_range(mined):
    d, insp, data, top = mined
    with pytest.raises(ValueError, match=r"map 40 is out of range for layer 'conv1': 0\.\.31"):
        panels.fig2_panel(insp, top, data, "conv1", maps=[0, 40])
    with pytest.raises(ValueError, match="0..31"):
        panels.fig2_panel(insp, top, data, "conv1", maps=-1)
    with pytest.raises(ValueError, match="was not mined"):
        panels.fig2_panel(insp, top, data, "conv3", maps=[0])


def test_titles_legible_and_saved(mined, tmp_path):
    d, insp, data, top = mined
    panel = panels.fig2_panel(insp, top, data, "conv1", maps=[0, 1, 2])
    assert panel.dtype == np.uint8 and panel.ndim == 3 and panel.shape[2] == 3
    # the title band holds text at least 20 px high: light pixels spread over >= 14 rows
    band = panel[OUTER : OUTER + _band(), : panel.shape[1] // 2]
    lit = np.nonzero((band > 150).any(axis=(1, 2)))[0]
    assert lit.max() - lit.min() >= 14
    path = panels.save_png(panel, tmp_path / "fig2.png")
    with Image.open(path) as saved:
        assert saved.size == (panel.shape[1], panel.shape[0])
