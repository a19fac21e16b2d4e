"""zfwidgets.core.panels against pixel-by-pixel references written with plain loops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zfwidgets.core import panels
from zfwidgets.core.render import BACKGROUND


def _fit_by_hand(picture: np.ndarray, h: int, w: int) -> np.ndarray:
    """Tries every zoom; paints each tile pixel from the picture pixel it lies over."""
    ph, pw = picture.shape[:2]
    zoom = 1
    while (zoom + 1) * ph <= h and (zoom + 1) * pw <= w:
        zoom += 1
    top, left = (h - zoom * ph) // 2, (w - zoom * pw) // 2
    out = np.full((h, w, 3), BACKGROUND, np.uint8)
    for y in range(h):
        for x in range(w):
            py, px = (y - top) // zoom, (x - left) // zoom
            if 0 <= y - top < zoom * ph and 0 <= x - left < zoom * pw:
                out[y, x] = picture[py, px]
    return out


@pytest.mark.parametrize(("shape", "side"), [((5, 5), 64), ((11, 11), 112), ((6, 9), (40, 60))])
def test_fit_is_the_largest_whole_number_enlargement_centred(shape, side):
    rng = np.random.default_rng(0)
    picture = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    h, w = (side, side) if isinstance(side, int) else side
    assert np.array_equal(panels.fit(picture, side), _fit_by_hand(picture, h, w))


def test_fit_shrinks_a_picture_larger_than_its_tile():
    tile = panels.fit(np.full((224, 160), 200, np.uint8), 112)
    assert tile.shape == (112, 112, 3)
    # halved to 112 x 80 and centred: columns 16..95
    assert (tile[:, 16:96] > 150).all()
    assert (tile[:, :16] == BACKGROUND).all() and (tile[:, 96:] == BACKGROUND).all()


def test_fit_refuses_an_empty_tile_and_a_zoom_that_does_not_fit():
    with pytest.raises(ValueError, match="positive size"):
        panels.fit(np.zeros((4, 4), np.uint8), 0)
    with pytest.raises(ValueError, match="enlarged 5 times does not fit 16x16"):
        panels.fit(np.zeros((4, 4), np.uint8), 16, zoom=5)


def test_fit_with_a_fixed_zoom_keeps_that_scale():
    picture = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    tile = panels.fit(picture, (20, 20), zoom=3)  # 9 x 12, centred at rows 5.., cols 4..
    expected = np.full((20, 20, 3), BACKGROUND, np.uint8)
    for y in range(9):
        for x in range(12):
            expected[5 + y, 4 + x] = picture[y // 3, x // 3]
    assert np.array_equal(tile, expected)


def test_titled_keeps_the_picture_below_a_band_with_text():
    picture = np.full((30, 200), 90, np.uint8)
    out = panels.titled(picture, "projections")
    band = out.shape[0] - 30
    assert out.shape[1] == 200 and band == panels.TEXT_SIZE + 8
    assert (out[band:] == 90).all()
    text = out[:band].max(2) > 200  # light text on the dark band
    assert text.sum() > 50 and text[:, 120:].sum() == 0  # written from the left


def test_legend_draws_each_swatch_in_its_colour():
    items = [((0, 0, 4), "not chosen"), ((159, 42, 99), "1 window"), ((252, 255, 164), "2")]
    key = panels.legend(items)
    size = panels.TEXT_SIZE
    assert key.shape[0] == size + 8
    for colour, _ in items:
        hits = np.all(key == np.array(colour, np.uint8), axis=2)
        ys, xs = np.nonzero(hits)
        assert hits.sum() >= size * size  # a full swatch (the text never uses these colours)
        assert ys.max() - ys.min() + 1 == size and xs.max() - xs.min() + 1 == size
    with pytest.raises(ValueError, match="at least one"):
        panels.legend([])


def test_crop_to_support_keeps_every_non_zero_pixel_in_one_common_square():
    p = torch.zeros(3, 2, 28, 28)
    p[0, 0, 3:6, 4:7] = 1.0  # 3x3
    p[1, 1, 20:27, 10:12] = -2.0  # 7 tall: the largest extent
    p[2, 0, 0, 27] = 5.0  # a corner pixel: the square must stay inside the picture
    out = panels.crop_to_support(p, margin=1)
    assert out.shape == (3, 2, 9, 9)  # 7 + 2 margins
    for i in range(3):
        assert float(out[i].abs().sum()) == float(p[i].abs().sum())  # nothing cut off
    # centred on the region by hand: rows 3..5 centre 4 -> rows 0..8; cols 4..6 -> 1..9
    assert torch.equal(out[0], p[0, :, 0:9, 1:10])
    assert torch.equal(out[2], p[2, :, 0:9, 19:28])


def test_crop_to_support_of_blank_pictures_and_bad_shapes():
    out = panels.crop_to_support(torch.zeros(2, 1, 10, 10), margin=2)
    assert out.shape == (2, 1, 5, 5) and not out.any()
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        panels.crop_to_support(torch.zeros(10, 10))
