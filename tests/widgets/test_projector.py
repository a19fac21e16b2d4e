"""Projector mode (issue 32, item 4): one switch for every widget, shown and built.

The browser test (tests/ui/test_projector_ui.py) measures the text sizes; here: the switch
reaches widgets already built and widgets built later, the colour-bar numbers are drawn in the
larger font (the bar picture grows by exactly the font's growth), and bad input is refused."""

from __future__ import annotations

import io
import warnings

import ipywidgets as widgets
import numpy as np
import pytest
from PIL import Image

import zfwidgets
from zfwidgets import LayerBrowser, demo
from zfwidgets.core import render
from zfwidgets.widgets.base import WidgetBase
from zfwidgets.widgets.parts import NORMAL_BAR_FONT_PX, PROJECTOR_FONT_PX


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


# ----- one mechanism for every widget (WidgetBase._redraw_for_projector) ----------------------
def _png(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def _layer_browser(d):
    return LayerBrowser(d.model, dataset=d.dataset, mean=d.mean)


def _occlusion_slider(d):
    from zfwidgets import OcclusionSlider

    return OcclusionSlider(d.model, d.dataset.images[0], mean=d.mean, layer="conv2")


def _evolution_scrubber(d):
    from zfwidgets import EvolutionScrubber

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # bqscales' own
        return EvolutionScrubber(demo.snapshots(), device="cpu")


def _feature_space(d):
    from torch.utils.data import Subset

    from zfwidgets import FeatureSpace

    w = FeatureSpace(d.model, Subset(d.dataset, range(60)), classes=d.classes, mean=d.mean)
    assert w.wait(60), w.status
    w.selected = 7
    return w


def _invariance_explorer(d):
    from zfwidgets import InvarianceExplorer

    return InvarianceExplorer(d.model, d.dataset.images[:3], mean=d.mean, classes=d.classes)


def _trust_explorer(d):
    from zfwidgets import TrustExplorer

    return TrustExplorer(d.model, d.dataset, classes=d.classes, mean=d.mean, steps=2)


def _synthesis(d):
    from zfwidgets import Synthesis

    w = Synthesis(d.model, images=d.dataset.images[:2], classes=d.classes, mean=d.mean, steps=3)
    w.start()
    return w


# What each widget redraws when the mode switches (the call WidgetBase makes it do):
DRAWING = {
    _layer_browser: "_redraw_bars",
    _occlusion_slider: "_relabel_maps",
    _evolution_scrubber: "_tick_figures",
    _feature_space: "_draw_grids",
}


def test_the_feature_space_labels_its_neighbours_at_the_projector_size_at_once(d):
    """The neighbour grids' tile labels are drawn into the pictures: switching the mode redraws
    them at once in the 18 px font (as render.grid draws them at that size: taller letters on
    the same tiles), and switching back gives the very pictures shown before."""
    w = _feature_space(d)
    try:
        pictures = (w._query, w._feature_grid, w._pixel_grid)
        before = [p.value for p in pictures]
        neighbours = (w.feature_neighbours, w.pixel_neighbours)
        zfwidgets.projector(True)
        assert (w.feature_neighbours, w.pixel_neighbours) == neighbours  # not searched again
        for picture, indices in zip(pictures, ([7], *neighbours), strict=True):
            tiles, names = _tiles_and_names(w, indices)
            plain = render.grid(tiles, cols=len(tiles), pad=3)
            normal = render.grid(tiles, cols=len(tiles), pad=3, labels=names)
            large = render.grid(tiles, cols=len(tiles), pad=3, labels=names, label_px=18)
            shown = _png(picture.value)
            np.testing.assert_array_equal(shown, large)
            assert shown.shape == normal.shape  # the same tiles, only the letters grow
            assert _ink_rows(large, plain) > _ink_rows(normal, plain)
        zfwidgets.projector(False)
        assert [p.value for p in pictures] == before
    finally:
        w.close()


def _tiles_and_names(w, indices):
    from zfwidgets.widgets.top_nine import tile_pixels

    side = tile_pixels(tuple(w.image_shape[-2:]))
    tiles = [
        render.resize(render.input_image(w._source[i][0], preprocessing=w.preprocessing), side)
        for i in indices
    ]
    return tiles, [f"#{i} · {w._label_text(i)}" for i in indices]


def _ink_rows(labelled: np.ndarray, plain: np.ndarray) -> int:
    """How many pixel rows the label writing changed: the height of the letters and band."""
    return int(np.any(labelled != plain, axis=(1, 2)).sum())


def test_the_layer_browsers_shown_bars_grow_and_return(d):
    """A LayerBrowser already drawn: its three colour bars grow by the font's growth at once,
    and come back to their size, their pixels those of render.colour_bar at each font."""
    w = _layer_browser(d)
    try:
        bars = (w._grid_bar, w._heat_bar, w._projection_bar)
        before = [b.value for b in bars]
        zfwidgets.projector(True)
        grown = PROJECTOR_FONT_PX - NORMAL_BAR_FONT_PX
        assert [_height(b.value) for b in bars] == [_height(p) + grown for p in before]
        for bar in bars:
            lo, hi, width, kw = w._bars[bar]
            reference = render.colour_bar(lo, hi, width, font_size=PROJECTOR_FONT_PX, **kw)
            np.testing.assert_array_equal(_png(bar.value), reference)
        zfwidgets.projector(False)
        assert [b.value for b in bars] == before
    finally:
        w.close()


def test_the_curves_room_follows_the_switch_both_ways():
    """The EvolutionScrubber's curves get their room from the shared fit_ticks: margins on the
    axes' sides (left, right, bottom) and the right axis title's offset 1.4x, then back."""
    from zfwidgets.widgets.evolution_scrubber import CURVE_MARGINS
    from zfwidgets.widgets.parts import PROJECTOR_ROOM

    w = _evolution_scrubber(None)
    try:
        assert w._figure.fig_margin == CURVE_MARGINS and w._axes["acc"].label_offset == "40px"
        zfwidgets.projector(True)
        grown = {k: round(v * PROJECTOR_ROOM) for k, v in CURVE_MARGINS.items()}
        assert w._figure.fig_margin == {**grown, "top": CURVE_MARGINS["top"]}
        assert w._axes["acc"].label_offset == f"{round(40 * PROJECTOR_ROOM)}px"
        zfwidgets.projector(False)
        assert w._figure.fig_margin == CURVE_MARGINS and w._axes["acc"].label_offset == "40px"
    finally:
        zfwidgets.projector(False)
        w.close()


def test_a_widget_not_drawn_yet_switches_without_failing(d):
    """Built but with nothing drawn yet (the sweep still running, no image selected, no
    features computed): the switch changes the class, draws nothing, says nothing; what is
    drawn afterwards is at the mode's size."""
    from zfwidgets import FeatureSpace, OcclusionSlider

    space = FeatureSpace(d.model, d.dataset.images[:40], mean=d.mean)  # no labels, no click
    assert space.wait(60), space.status  # one worker at a time (see the test below)
    slider = OcclusionSlider(d.model, d.dataset.images[1], mean=d.mean, layer="conv2")
    try:
        with slider._lock:  # the sweep's end waits for the lock: no maps drawn meanwhile
            assert slider.maps is None
            for on in (True, False, True):
                zfwidgets.projector(on)
                for w in (slider, space):
                    assert ("zfw-projector" in w._dom_classes) is on
                    assert w.status_line.level != "error", w.status
        assert slider.wait(120), slider.status
        font = render.colour_bar(0.0, 1.0, 100, font_size=PROJECTOR_FONT_PX).shape[0]
        assert _height(slider._map_bars["target_prob"].value) == font  # drawn at 18 px
        assert space.status_line.level != "error", space.status
    finally:
        slider.close()
        space.close()


def test_a_widget_whose_build_failed_is_skipped(d):
    """A widget whose build raised stays registered until collected: the switch leaves it."""
    with pytest.raises(ValueError):
        LayerBrowser(d.model, dataset=d.dataset, mean=d.mean, layer="no such layer")
    built = _layer_browser(d)
    try:
        assert zfwidgets.projector(True) is True
        assert "zfw-projector" in built._dom_classes
    finally:
        built.close()


@pytest.mark.parametrize("make", list(DRAWING), ids=lambda f: f.__name__.strip("_"))
def test_an_error_while_redrawing_goes_to_the_status_line(d, make, monkeypatch):
    """The widget's drawing fails: the status line says so, the other widgets still switch,
    and once the drawing works again the widget switches and redraws as before."""
    w = make(d)
    assert w.wait(120), w.status
    # built once w's worker is done: a forward pass while another thread traces a model
    # (torch.fx patches nn.Module.__call__ for every thread) fails, and would be another test
    other = _layer_browser(d)
    try:
        assert other.wait(120) and w.status_line.level != "error", w.status
        calls = []

        def broken(*args, **kwargs):
            calls.append(args)
            raise RuntimeError("the font file went away")

        monkeypatch.setattr(w, DRAWING[make], broken)
        zfwidgets.projector(True)
        assert calls, "the switch did not ask the widget to redraw"
        assert w.status_line.level == "error"
        assert w.status == "projector mode failed: RuntimeError: the font file went away"
        assert "zfw-projector" in w._dom_classes and "zfw-projector" in other._dom_classes
        assert _height(other._grid_bar.value) == 12 + 2 + PROJECTOR_FONT_PX + 6
        monkeypatch.undo()
        zfwidgets.projector(False)
        assert "zfw-projector" not in w._dom_classes
        zfwidgets.projector(True)
        assert w.status_line.level == "error"  # old news stays until the next change...
        w.status_line.clear()
        zfwidgets.projector(False)
        assert w.status_line.level != "error", w.status  # ...and the redraw itself is fine
    finally:
        w.close()
        other.close()


@pytest.mark.parametrize(
    "make", [_invariance_explorer, _trust_explorer, _synthesis], ids=lambda f: f.__name__
)
def test_widgets_without_text_in_their_pictures_switch_by_css_alone(d, make):
    """InvarianceExplorer, TrustExplorer and Synthesis draw no text into their pictures (their
    numbers are bqplot ticks and HTML, which CSS enlarges): the switch leaves every picture as
    it was and changes only the class."""
    w = make(d)
    try:
        assert w.wait(120), w.status
        pictures = [c for c in _descendants(w) if isinstance(c, widgets.Image)]
        assert pictures
        before = [p.value for p in pictures]
        zfwidgets.projector(True)
        assert "zfw-projector" in w._dom_classes
        assert [p.value for p in pictures] == before
        assert type(w)._redraw_for_projector is WidgetBase._redraw_for_projector
        zfwidgets.projector(False)
    finally:
        w.close()


def _descendants(widget):
    for child in getattr(widget, "children", ()):
        yield child
        yield from _descendants(child)


@pytest.mark.parametrize(
    "make", [_invariance_explorer, _trust_explorer, _synthesis], ids=lambda f: f.__name__
)
def test_their_plots_make_room_for_the_larger_ticks_and_give_it_back(d, make):
    """The 18 px tick numbers of projector mode need room: each plot's margins on its axes'
    sides (and px title offsets) grow by PROJECTOR_ROOM at once, and return exactly; a widget
    built in projector mode starts with the room."""
    from bqplot import Figure

    from zfwidgets.widgets.parts import PROJECTOR_ROOM

    w = make(d)
    try:
        assert w.wait(120), w.status
        figures = [c for c in _descendants(w) if isinstance(c, Figure)]
        assert figures and set(map(id, figures)) == set(map(id, w._tick_figures()))
        own = [dict(f.fig_margin) for f in figures]
        offsets = [[a.label_offset for a in f.axes] for f in figures]
        zfwidgets.projector(True)
        for f, margin in zip(figures, own, strict=True):
            assert f.fig_margin["left"] == round(margin["left"] * PROJECTOR_ROOM)
            assert f.fig_margin["bottom"] == round(margin["bottom"] * PROJECTOR_ROOM)
            assert f.fig_margin["top"] == margin["top"]
        for f, given in zip(figures, offsets, strict=True):
            for axis, offset in zip(f.axes, given, strict=True):
                if offset is not None:
                    assert float(axis.label_offset[:-2]) == round(float(offset[:-2]) * 1.4)
        built_on = make(d)
        try:
            assert built_on.wait(120), built_on.status
            assert [f.fig_margin for f in built_on._tick_figures()] == [
                f.fig_margin for f in figures
            ]
        finally:
            built_on.close()
        zfwidgets.projector(False)
        assert [dict(f.fig_margin) for f in figures] == own
        assert [[a.label_offset for a in f.axes] for f in figures] == offsets
    finally:
        zfwidgets.projector(False)
        w.close()
