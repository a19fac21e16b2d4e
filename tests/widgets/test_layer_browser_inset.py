"""The enlarged inset under a grid of small tiles (issue 32, item 4: ResNet's 256 maps of 16 px).

Checked against a crop cut by hand from the grid picture the canvas shows, enlarged by
np.kron (an independent nearest-neighbour enlargement)."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image
from torch import nn

from zfwidgets import LayerBrowser, demo
from zfwidgets.widgets.layer_browser import GRID_WIDTH, HIGHLIGHT_RGB


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def test_small_tiles_get_an_enlarged_inset_of_the_selected_neighbourhood():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 256, 3, padding=1), nn.ReLU()).eval()
    browser = LayerBrowser(model, torch.rand(2, 3, 16, 16))  # 256 maps of 16x16, like ResNet's
    g = browser.grid
    assert g.count == 256 and max(g.tile) == 16  # zoom 1: tiles too small to see well
    assert browser._inset_box.layout.display == "flex"
    grid = browser._grid_rgba[..., :3]
    pitch = 16 + g.pad
    for channel in (0, 40, 255):  # a corner, the inside, the last map
        browser.channel = channel
        row, col = divmod(channel, g.cols)
        r0 = min(max(row - 1, 0), g.rows - 3)
        c0 = min(max(col - 1, 0), g.cols - 3)
        by_hand = grid[r0 * pitch : r0 * pitch + 3 * pitch + g.pad,
                       c0 * pitch : c0 * pitch + 3 * pitch + g.pad].copy()  # fmt: skip
        y, x = (row - r0) * pitch, (col - c0) * pitch
        for ys, xs in [
            (slice(y, y + g.pad), slice(x, x + pitch + g.pad)),
            (slice(y + pitch, y + pitch + g.pad), slice(x, x + pitch + g.pad)),
            (slice(y, y + pitch + g.pad), slice(x, x + g.pad)),
            (slice(y, y + pitch + g.pad), slice(x + pitch, x + pitch + g.pad)),
        ]:
            by_hand[ys, xs] = HIGHLIGHT_RGB
        zoom = GRID_WIDTH // by_hand.shape[1]
        expected = np.kron(by_hand, np.ones((zoom, zoom, 1), np.uint8))
        shown = _pixels(browser._inset.value)
        assert zoom >= 3 and shown.shape[1] <= GRID_WIDTH
        assert np.array_equal(shown, expected), channel
        # the selected map itself, unframed, at the centre of its ring
        inside = (
            slice((y + g.pad) * zoom, (y + pitch) * zoom),
            slice((x + g.pad) * zoom, (x + pitch) * zoom),
        )
        tile = shown[inside]
        ox, oy = g.origin(channel)
        assert np.array_equal(tile[::zoom, ::zoom], grid[oy : oy + 16, ox : ox + 16])
    browser.close()


def test_big_tiles_need_no_inset():
    d = demo.load()
    browser = LayerBrowser(d.model, d.dataset.images[:2], mean=d.mean)  # conv1: 28 px maps, x2
    assert max(browser.grid.tile) > 20
    assert browser._inset_box.layout.display == "none"
    browser.close()


def test_a_feature_extractor_opens_and_says_it_predicts_nothing():
    """A model whose output is maps (no class head) opens: no class menu, no softmax over the
    wrong axis, the caption says why nothing is predicted; the maps still project."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)).eval()
    browser = LayerBrowser(model, torch.rand(2, 3, 16, 16))
    assert browser.classes is None
    assert "no class scores (the model's output is feature maps)" in browser._input_caption.text
    browser.channel = 5
    assert browser.status_line.level != "error", browser.status
