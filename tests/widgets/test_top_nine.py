"""The top-9 pair fits the notebook on every model: small patches enlarge, big ones shrink."""

from __future__ import annotations

import io

import pytest
import torch
from PIL import Image

from zfwidgets import LayerBrowser, demo
from zfwidgets.core.receptive import Box
from zfwidgets.core.top_views import TopEntry
from zfwidgets.widgets.top_nine import MAX_TILE, TOP_TILE, tile_pixels, top_nine_pictures


def _png_size(data: bytes) -> tuple[int, int]:
    return Image.open(io.BytesIO(data)).size  # (width, height)


def _entries(side: int, count: int = 9) -> list[TopEntry]:
    image = torch.rand(3, side, side)
    box = Box(0, 0, side, side)
    return [
        TopEntry(1.0 - k / 10, k, (0, 0), image, image - 0.5, box, image, image - 0.5)
        for k in range(count)
    ]


@pytest.mark.parametrize("side", [5, 11, 23, 28, 57, 113, 224])
def test_tiles_are_whole_enlargements_or_shrink_to_the_cap(side):
    h, w = tile_pixels((side, side))
    assert h == w <= max(MAX_TILE, side)
    if side * round(TOP_TILE / side) <= MAX_TILE and side <= TOP_TILE:
        assert h % side == 0  # crisp pixels: a whole-number zoom
    assert w <= MAX_TILE


@pytest.mark.parametrize("side", [11, 224])
def test_the_drawn_grid_has_the_announced_tile_size(side):
    pictures = top_nine_pictures(_entries(side), "deconvnet", None, (side, side))
    tile = tile_pixels((side, side))
    for png in (pictures.projections, pictures.patches):
        assert _png_size(png) == (3 * tile[1] + 4 * 2, 3 * tile[0] + 4 * 2)


def test_photos_browser_right_column_fits_a_notebook():
    """EfficientNet-Lite0's deep layers see all 224 px: the pair used to need 1,380 px. In the
    840 px a browser is arranged for by default, grid (240 + 12) and right column fit side by
    side (pictures at 1/2, tiles of 92 px); with room for them, the three 224-px pictures."""
    p = demo.photos()
    browser = LayerBrowser(p.model, images=p.dataset, classes=p.classes)
    wide = LayerBrowser(p.model, images=p.dataset, classes=p.classes, fit_width=1200)
    try:
        width = browser._right_column_width()
        assert 3 * (168 + 18) <= width <= 840 - 240 - 12
        assert 3 * (224 + 18) <= wide._right_column_width() <= 760
    finally:
        browser.close()
        wide.close()


def test_tile_labels_wrap_instead_of_cutting_long_class_names():
    from zfwidgets.widgets.top_nine import tile_labels_html

    page = tile_labels_html(["#12 · spider monkey · 3.41"], 84)
    assert ">#12 · spider monkey · 3.41</div>" in page  # the whole name, as text on screen
    assert "ellipsis" not in page and "nowrap" not in page
    assert "white-space: normal" in page
