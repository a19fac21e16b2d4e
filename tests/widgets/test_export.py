"""Export of a widget's view: a PNG of the pictures on screen, SVG of its curves."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
from PIL import Image

from zfwidgets import EvolutionScrubber, LayerBrowser, OcclusionSlider, demo
from zfwidgets.core import render
from zfwidgets.train import Evolution
from zfwidgets.widgets.base import _state_traits
from zfwidgets.widgets.parts import zoom_for


@pytest.fixture(scope="module")
def digits():
    return demo.load()


@pytest.fixture
def browser(digits):
    widget = LayerBrowser(
        digits.model, images=digits.dataset, mean=digits.mean, classes=digits.classes
    )
    assert widget.wait(60)
    yield widget
    widget.close()


@pytest.fixture
def slider(digits):
    widget = OcclusionSlider(
        digits.model, digits.dataset[0][0], classes=digits.classes, mean=digits.mean
    )
    assert widget.wait(60)
    yield widget
    widget.close()


@pytest.fixture(scope="module")
def scrubber(digits, tmp_path_factory):
    probe = torch.stack([digits.dataset[i][0] for i in range(48)])
    cache = tmp_path_factory.mktemp("export") / "cache"
    evolution = Evolution(demo.snapshots(), probe=probe, device="cpu", cache_dir=cache)
    widget = EvolutionScrubber(evolution)
    assert widget.wait(120)
    yield widget
    widget.close()


def _decode(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as picture:
        assert picture.format == "PNG"
        return np.asarray(picture.convert("RGB"))


def _find(picture: np.ndarray, part: np.ndarray) -> tuple[int, int] | None:
    """Where ``part`` lies in ``picture``, pixel for pixel, or None."""
    h, w = part.shape[:2]
    ys, xs = np.nonzero((picture[: picture.shape[0] - h + 1, : picture.shape[1] - w + 1]
                         == part[0, 0]).all(-1))  # fmt: skip
    for y, x in zip(ys, xs, strict=True):
        if np.array_equal(picture[y : y + h, x : x + w], part):
            return int(y), int(x)
    return None


def _state(widget) -> dict:
    return {name: getattr(widget, name) for name in _state_traits(type(widget))}


def test_layer_browser_png_holds_the_input_picture(browser, digits):
    before = _state(browser)
    picture = _decode(browser.export_png_bytes())
    # The input as drawn here from the data, independently of the widget's own pictures.
    drawn = render.input_image(digits.dataset[0][0], digits.mean)
    expected = render.to_rgb(render.upscale(drawn, zoom_for(drawn.shape[0])))
    assert _find(picture, expected) is not None
    assert 400 < picture.shape[1] <= 1920 + 64 and picture.shape[0] > 300
    assert (picture[:8, :8] == 255).all()  # white background for slides
    assert _state(browser) == before


def test_export_writes_a_file_and_changes_no_state(browser, tmp_path):
    before = (_state(browser), browser._input_image.value, browser.status)
    path = browser.export(tmp_path / "view.png")
    assert path.exists()
    assert np.array_equal(_decode(path.read_bytes()), _decode(browser.export_png_bytes()))
    assert (_state(browser), browser._input_image.value, browser.status) == before


def test_occlusion_slider_png_holds_its_canvas(slider, digits):
    picture = _decode(slider.export_png_bytes())
    zoom = slider._zoom
    drawn = render.to_rgb(
        render.upscale(render.input_image(digits.dataset[0][0], digits.mean), zoom)
    )
    # The rows above the occluder (and its frame) are the plain input picture.
    rows = max(1, slider.y * zoom - 4)
    assert _find(picture, drawn[:rows]) is not None


def test_evolution_scrubber_png_and_svg(scrubber, tmp_path):
    before = _state(scrubber)
    picture = _decode(scrubber.export_png_bytes())
    assert picture.shape[0] > 200 and picture.shape[1] > 400
    # The grid of projections (a canvas) is in the export as it was put on the canvas.
    grid = render.to_rgb(scrubber._grid_rgba[..., :3])
    assert _find(picture, grid[:20]) is not None
    path = scrubber.export(tmp_path / "curves.svg")
    root = ET.fromstring(path.read_bytes())
    assert root.tag.endswith("svg")
    paths = [e for e in root.iter() if e.tag.endswith("path")]
    # loss, train and held-out accuracy and the epoch marker: each a path with many points
    long_paths = [p for p in paths if p.get("d", "").count("L") >= 5]
    assert len(long_paths) >= 3
    pdf = scrubber.export(tmp_path / "curves.pdf").read_bytes()
    assert pdf.startswith(b"%PDF")
    assert _state(scrubber) == before


def test_svg_of_a_widget_without_curves_is_refused(browser, tmp_path):
    with pytest.raises(ValueError, match="no curves"):
        browser.export(tmp_path / "view.svg")


def test_bad_paths_go_to_the_status_line(browser, tmp_path):
    before = _state(browser)
    browser._export_name.value = str(tmp_path / "missing" / "folder" / "view.png")
    browser._export_button.click()
    assert browser.status_line.level == "error"
    assert "could not write" in browser.status
    browser._export_name.value = str(tmp_path / "view.gif")
    browser._export_button.click()
    assert browser.status_line.level == "error" and ".png" in browser.status
    # still working: the next export succeeds and says where it wrote
    browser._export_name.value = str(tmp_path / "ok.png")
    browser._export_button.click()
    assert browser.status_line.level == "info" and str(tmp_path / "ok.png") in browser.status
    assert (tmp_path / "ok.png").exists()
    assert _state(browser) == before


def test_export_button_beside_the_status_line_in_every_widget(browser, slider):
    for widget in (browser, slider):
        rows = [c for c in widget.children if widget.status_line in getattr(c, "children", ())]
        assert len(rows) == 1 and widget._export_controls in rows[0].children


def test_default_name_in_the_current_folder(slider, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    slider._export_button.click()
    written = list(tmp_path.glob("zfwidgets-occlusionslider-*.png"))
    assert len(written) == 1, slider.status
    assert slider.status_line.level == "info" and written[0].name in slider.status
