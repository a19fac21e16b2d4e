"""The LayerBrowser tutorial in Notebook 7: Run All, then the widget draws and follows a click.

Saves ``notebook7_layer_browser.png`` (the widget) and ``notebook7_page.png`` every run.
"""

from __future__ import annotations

import pytest
from lab_harness import (
    canvas_png,
    click_canvas_at,
    nonblank_pixels,
    open_notebook,
    run_all_cells,
    screenshot_path,
    wait_for_drawn_canvas,
    wait_for_new_screenshot,
)

from zfwidgets.widgets.parts import GridGeometry

pytestmark = pytest.mark.ui

NOTEBOOK = "notebooks/03_layer_browser.ipynb"
# The notebook opens the browser on conv2 (64 maps of 13x13) at map 46.
MAPS, MAP_SIZE, START = 64, (13, 13), 46
CLICKED = 9
PICTURES = ("zfw-input", "zfw-heat", "zfw-projection", "zfw-top-patches")


def test_layer_browser_tutorial_runs_in_notebook7(notebook7_page, notebook7):
    from playwright.sync_api import expect

    page = notebook7_page
    widget = page.locator(".zfw-layer-browser").first
    try:
        open_notebook(page, notebook7, NOTEBOOK)
        app = page.evaluate("() => window.jupyterapp.name")
        assert app == "Jupyter Notebook", f"expected Notebook 7's page, got {app!r}"
        run_all_cells(page, timeout=120)  # raises on any error output or failed widget

        widget.scroll_into_view_if_needed()
        canvas = widget.locator("canvas.zfw-feature-maps").first
        canvas.wait_for(state="visible")
        drawn = wait_for_drawn_canvas(canvas)
        assert nonblank_pixels(drawn) > 5000, "the feature-map canvas is blank in Notebook 7"
        for name in PICTURES:
            picture = widget.locator(f"img.{name}").first
            assert nonblank_pixels(picture.screenshot()) > 500, f"img.{name} rendered blank"

        readout = widget.locator(".widget-slider .widget-readout").first
        expect(readout).to_have_text(str(START))
        projection = widget.locator("img.zfw-projection").first
        before = projection.screenshot()
        geometry, _ = GridGeometry.for_tiles(MAPS, MAP_SIZE)
        click_canvas_at(canvas, *geometry.center(CLICKED))
        expect(readout, "clicking a map did not select it").to_have_text(str(CLICKED))
        wait_for_new_screenshot(projection, before, timeout=30)
        assert nonblank_pixels(canvas_png(canvas)) > 5000, "the grid went blank after a click"
    finally:
        if widget.count():
            widget.screenshot(path=str(screenshot_path("notebook7_layer_browser")))
        page.screenshot(path=str(screenshot_path("notebook7_page")))
