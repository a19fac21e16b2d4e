"""Panels that carry something or say why not: render.shown_projection and the captions built on it.

Expected values are worked out here from the raw numbers (percentiles, the grey-level formula),
never through the code under test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from zfwidgets import Inspector, LayerBrowser
from zfwidgets.core import render
from zfwidgets.widgets.top_nine import switch_note, tiles_note, unit_view


def faint_projection() -> torch.Tensor:
    """A 3x32x32 projection: a wide weak pattern (|v| <= 0.02) and one strong pixel (1.0)."""
    gen = torch.Generator().manual_seed(0)
    p = 0.02 * (2 * torch.rand(3, 32, 32, generator=gen) - 1)
    p[1, 16, 16] = 1.0
    return p


def test_faint_projection_is_stretched_by_the_factor_its_caption_states():
    p = faint_projection()
    a = p.double().numpy()
    peak = np.abs(a).max()
    level = np.percentile(np.abs(a)[a != 0], 99)  # over the pixels that carry a signal
    raw_gain = peak / level
    assert raw_gain > render.FAINT_GAIN  # the pattern is a speck at the peak's contrast
    digits = 10 ** (math.floor(math.log10(raw_gain)) - 1)
    gain = math.floor(raw_gain / digits) * digits  # two significant digits, rounded down
    shown = render.shown_projection(p)
    assert shown.gain == pytest.approx(gain)
    assert shown.note.startswith(f"x{gain:g} contrast")
    # grey levels by hand: zero at 127.5, +-peak/gain at the ends, the strong pixel clipped
    expected = np.clip(np.round(127.5 + 127.5 * a.transpose(1, 2, 0) * gain / peak + 0.25), 0, 255)
    np.testing.assert_array_equal(shown.picture, expected.astype(np.uint8))
    assert shown.picture[16, 16, 1] == 255
    # the pattern now spans most of the scale instead of a few grey levels around 128
    plain = render.projection_image(p).astype(int)
    weak = np.ones((32, 32), bool)
    weak[16, 16] = False
    assert np.ptp(plain[weak]) < 8 and np.ptp(shown.picture.astype(int)[weak]) > 150


def test_a_projection_with_visible_contrast_is_drawn_as_before():
    p = torch.linspace(-1, 1, 64).reshape(1, 8, 8)
    shown = render.shown_projection(p)
    assert (shown.gain, shown.note) == (1.0, "")
    np.testing.assert_array_equal(shown.picture, render.projection_image(p))


def test_a_compact_projection_on_zero_is_small_not_faint():
    """A unit's projection is zero outside its receptive field: a strong 6x6 patch on a zero
    224x224 picture (0.07% of it) is drawn as it is, not stretched."""
    p = torch.zeros(3, 224, 224)
    p[:, 100:106, 50:56] = torch.linspace(-1, 1, 108).reshape(3, 6, 6)
    shown = render.shown_projection(p)
    assert (shown.gain, shown.note) == (1.0, "")
    np.testing.assert_array_equal(shown.picture, render.projection_image(p))


def test_faint_saliency_is_stretched_on_its_own_scale():
    p = faint_projection()
    shown = render.shown_projection(p, saliency=True)
    plane = p.abs().max(0).values.double().numpy()
    gain = shown.gain
    assert gain > 1
    expected = np.round(np.clip(255 * plane * gain / plane.max(), 0, 255)).astype(np.uint8)
    np.testing.assert_array_equal(shown.picture, expected)


def test_all_zero_and_not_finite_projections_say_why():
    zero = render.shown_projection(torch.zeros(1, 5, 5), empty="no unit of this map fired")
    assert zero.note == "all zero: no unit of this map fired"
    assert (zero.picture == 128).all()  # mid grey: zero, as the colour bar says
    bad = torch.zeros(1, 5, 5)
    bad[0, 1, 1] = float("nan")
    assert "NaN" in render.shown_projection(bad).note


def test_tiles_note_names_the_stretched_and_empty_tiles():
    views = [unit_view(torch.linspace(-1, 1, 16).reshape(1, 4, 4), "deconvnet")] * 2
    views += [unit_view(faint_projection(), "deconvnet"), unit_view(torch.zeros(1, 4, 4), "guided")]
    gain = views[2].gain
    assert tiles_note(views) == (
        f"tile 3: more contrast (x{gain:g}), values near the peak clipped; tile 4: all zero"
    )


def dead_map_model() -> nn.Module:
    """conv (2 maps) -> ReLU -> pool -> linear, for 12x12 pictures: map 0 has bias -100, so
    it never fires on pictures in [0, 1]; map 1 has bias +100, so it always does."""
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 2, 3)
    with torch.no_grad():
        conv.bias[0] = -100.0
        conv.bias[1] = 100.0
    return nn.Sequential(conv, nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(50, 3))


def test_an_all_zero_map_gets_the_explanatory_caption():
    model = dead_map_model()
    images = torch.rand(4, 1, 12, 12)
    browser = LayerBrowser(model, images=images, layer="1", method="deconvnet")
    try:
        browser.channel = 0
        assert float(Inspector(model).activations(images[0], "1")[0].abs().max()) == 0
        assert "all zero: no unit of this map fired" in browser._projection_caption.text
        browser.channel = 1  # a live map: no such note
        assert "all zero" not in browser._projection_caption.text
    finally:
        browser.close()


def test_a_deconvnet_without_max_pooling_says_it_has_no_switches():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Conv2d(2, 2, 3), nn.ReLU())
    insp = Inspector(net)
    assert switch_note(insp, "3", "deconvnet").startswith("no max pooling")
    assert switch_note(insp, "3", "guided") == ""  # guided backprop needs no switches
    pooled = Inspector(dead_map_model())
    assert (
        switch_note(pooled, "1", "deconvnet") != "" and switch_note(pooled, "2", "deconvnet") == ""
    )


def test_the_projection_bar_ends_at_the_values_drawn_at_full_contrast():
    from zfwidgets.core.methods import REGISTRY

    model = dead_map_model()
    images = torch.rand(4, 1, 12, 12)
    browser = LayerBrowser(model, images=images, layer="1", method="deconvnet")
    try:
        browser.channel = 1
        p = Inspector(model).project(images[0], "1", 1, position="max", method="deconvnet")
        shown = render.shown_projection(p)
        top = float(p.abs().max()) / shown.gain
        expected = render.colour_bar(-top, top, 168, kind="signed")
        assert browser._projection_bar.value == render.to_png(expected)
        stretched = browser._projection_scale(p, REGISTRY["deconvnet"], 40.0)
        ends = render.colour_bar(
            -float(p.abs().max()) / 40, float(p.abs().max()) / 40, 168, "signed"
        )
        np.testing.assert_array_equal(stretched, ends)
    finally:
        browser.close()
