"""Projector mode (issue 32, item 4): one switch for every widget, shown and built.

The browser test (tests/ui/test_projector_ui.py) measures the text sizes; here: the switch
reaches widgets already built and widgets built later, the colour-bar numbers are drawn in the
larger font (the bar picture grows by exactly the font's growth), and bad input is refused."""

from __future__ import annotations

import io
import warnings

import pytest
from PIL import Image

import zfwidgets
from zfwidgets import LayerBrowser, demo
from zfwidgets.core import render
from zfwidgets.widgets.parts import PROJECTOR_FONT_PX


@pytest.fixture
def d():
    return demo.load()


@pytest.fixture(autouse=True)
def projector_off():
    yield
    zfwidgets.projector(False)  # never leak the mode into other tests


def _height(png: bytes) -> int:
    return Image.open(io.BytesIO(png)).size[1]


def test_one_switch_reaches_built_and_new_widgets(d):
    before = LayerBrowser(d.model, dataset=d.dataset, mean=d.mean)
    assert "zfw-projector" not in before._dom_classes
    normal_bar = _height(before._grid_bar.value)
    assert zfwidgets.projector(True) is True and zfwidgets.projector() is True
    assert "zfw-projector" in before._dom_classes  # switched at once
    after = LayerBrowser(d.model, dataset=d.dataset, mean=d.mean)
    assert "zfw-projector" in after._dom_classes
    # render.colour_bar: the text row is font + 6 px, so the picture grows by the font's growth
    grown = _height(after._grid_bar.value) - normal_bar
    assert grown == PROJECTOR_FONT_PX - 13
    reference = render.colour_bar(0.0, 1.0, 100, font_size=PROJECTOR_FONT_PX)
    assert _height(after._heat_bar.value) == reference.shape[0]
    zfwidgets.projector(False)
    assert "zfw-projector" not in set(before._dom_classes) | set(after._dom_classes)
    before.close()
    after.close()


def test_the_curves_get_room_for_larger_ticks():
    from zfwidgets import EvolutionScrubber
    from zfwidgets.widgets.evolution_scrubber import CURVE_MARGINS, PROJECTOR_MARGINS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # bqscales' own
        scrubber = EvolutionScrubber(demo.snapshots(), device="cpu")
    assert scrubber._figure.fig_margin == CURVE_MARGINS
    zfwidgets.projector(True)
    assert scrubber._figure.fig_margin == PROJECTOR_MARGINS
    scrubber.close()


@pytest.mark.parametrize("bad", ["yes", 1, None.__class__])
def test_a_bad_switch_is_refused_and_says_how(bad):
    with pytest.raises(TypeError, match=r"projector\(\) takes True .* got .*zfwidgets\.projector"):
        zfwidgets.projector(bad)
    assert zfwidgets.projector() is False


def test_the_occlusion_sliders_colour_bars_switch_at_once():
    """The OcclusionSlider's three colour bars redraw with the mode (text row font + 6 px)."""
    from zfwidgets import OcclusionSlider
    from zfwidgets.widgets.parts import NORMAL_BAR_FONT_PX

    d = demo.load()
    slider = OcclusionSlider(d.model, d.dataset.images[0], mean=d.mean, layer="conv2")
    try:
        assert slider.wait(120), slider.status

        def heights():
            return [_png_height(slider._map_bars[n].value) for n in sorted(slider._map_bars)]

        before = heights()
        zfwidgets.projector(True)
        grown = PROJECTOR_FONT_PX - NORMAL_BAR_FONT_PX
        assert heights() == [h + grown for h in before]
        zfwidgets.projector(False)
        assert heights() == before
    finally:
        zfwidgets.projector(False)
        slider.close()


def _png_height(png: bytes) -> int:
    return Image.open(io.BytesIO(png)).height
