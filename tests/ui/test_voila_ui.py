"""Tutorials as Voila apps: the ipycanvas canvases, the pictures, bqplot and clicks work.

Voila runs the notebook before the page connects, so every canvas is drawn for a browser view
that did not exist when the kernel last drew (zfwidgets.widgets.canvas_views). Saves
``voila_layer_browser.png``, ``voila_occlusion.png`` (the widgets) and ``voila_page.png`` (the
app around the LayerBrowser) every run.
"""

from __future__ import annotations

import pytest
from lab_harness import (
    TUTORIAL_03,
    check_tutorial_03_browser,
    nonblank_pixels,
    screenshot_path,
    wait_for_drawn_canvas,
)

pytestmark = pytest.mark.ui


def _open_app(page, voila, notebook: str, widget_class: str):
    """Renders ``notebook`` in Voila; returns the first ``widget_class`` widget, on screen."""
    page.goto(voila.notebook_url(notebook), wait_until="domcontentloaded", timeout=90_000)
    widget = page.locator(f".{widget_class}").first
    widget.locator("canvas").first.wait_for(state="visible", timeout=90_000)
    widget.scroll_into_view_if_needed()
    return widget


def _assert_no_errors(page) -> None:
    assert _voila_errors(page) == []
    uncaught = [line for line in page.zfw_console if line.startswith("[pageerror]")]
    assert uncaught == [], f"uncaught errors in the page: {uncaught}"


def _voila_errors(page) -> list[str]:
    """Tracebacks Voila shows (show_tracebacks is on) and widgets that failed to render."""
    return page.evaluate(
        """() => Array.from(document.querySelectorAll('.jp-OutputArea-output'))
          .map(e => e.textContent || '')
          .filter(t => /Traceback|Error displaying widget|Failed to (load model|create view)/
                       .test(t))
          .map(t => t.trim().slice(0, 300))"""
    )


def test_layer_browser_draws_in_voila_and_follows_clicks(voila_page, voila):
    page = voila_page
    widget = page.locator(".zfw-layer-browser").first
    try:
        _open_app(page, voila, TUTORIAL_03, "zfw-layer-browser")
        check_tutorial_03_browser(widget, "Voila")
        _assert_no_errors(page)
    finally:
        if widget.count():
            widget.screenshot(path=str(screenshot_path("voila_layer_browser")))
        page.screenshot(path=str(screenshot_path("voila_page")))


def test_occlusion_slider_draws_in_voila_with_its_bqplot_bars(voila_page, voila):
    page = voila_page
    widget = page.locator(".zfw-occlusion-slider").first
    try:
        _open_app(page, voila, "notebooks/05_occlusion.ipynb", "zfw-occlusion-slider")
        canvas = widget.locator("canvas.zfw-occlusion-canvas").first
        drawn = wait_for_drawn_canvas(canvas)
        assert nonblank_pixels(drawn) > 5000, "the occluded image's canvas is blank in Voila"
        for name in ("activity", "projection", "target-prob", "top-class"):
            picture = widget.locator(f"img.zfw-occlusion-{name}").first
            assert nonblank_pixels(picture.screenshot()) > 500, f"occlusion map {name} is blank"
        figure = widget.locator(".bqplot.figure").first
        figure.wait_for(state="visible")
        bars = figure.locator("rect.bar")
        assert bars.count() >= 2, f"the bqplot bar chart drew {bars.count()} bars"
        assert nonblank_pixels(figure.screenshot()) > 500, "the bqplot figure is blank"
        _assert_no_errors(page)
    finally:
        if widget.count():
            widget.screenshot(path=str(screenshot_path("voila_occlusion")))
