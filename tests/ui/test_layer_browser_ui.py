"""LayerBrowser in a real JupyterLab: the tutorial runs, the widget draws, clicks and keys work.

Saves ``layer_browser.png`` (light theme) and ``layer_browser_dark.png`` (dark theme) to the
screenshot folder every run, to look at.
"""

from __future__ import annotations

import pytest
from lab_harness import (
    changed_pixels,
    nonblank_pixels,
    open_notebook,
    run_all_cells,
    screenshot_path,
    wait_for_new_screenshot,
)

from zfwidgets.widgets.layer_browser import GRID_HEIGHT, GRID_WIDTH
from zfwidgets.widgets.parts import GridGeometry

pytestmark = pytest.mark.ui

NOTEBOOK = "notebooks/03_layer_browser.ipynb"
# The notebook opens the browser on conv2 (64 maps of 13x13) at map 46.
MAPS, MAP_SIZE, START = 64, (13, 13), 46
CLICKED = 9


def _click_map(page, canvas, channel: int) -> None:
    """Clicks the centre of ``channel``'s tile, scaling canvas pixels to CSS pixels."""
    geometry, _ = GridGeometry.for_tiles(MAPS, MAP_SIZE, width=GRID_WIDTH, height=GRID_HEIGHT)
    box = canvas.bounding_box()
    assert box and box["width"] > 0, "the feature-map canvas has no size"
    width, height = geometry.size
    x, y = geometry.center(channel)
    canvas.click(position={"x": x * box["width"] / width, "y": y * box["height"] / height})


def _set_theme(page, theme: str) -> None:
    page.evaluate(
        "(theme) => window.jupyterapp.commands.execute('apputils:change-theme', {theme})", theme
    )
    page.wait_for_function(
        "(theme) => document.body.dataset.jpThemeName === theme", arg=theme, timeout=15_000
    )
    page.wait_for_timeout(500)


def test_layer_browser_draws_and_follows_clicks_and_keys(browser_page, jupyterlab):
    from playwright.sync_api import expect

    page = browser_page
    widget = page.locator(".zfw-layer-browser").first
    try:
        open_notebook(page, jupyterlab, NOTEBOOK)
        run_all_cells(page, timeout=120)

        widget.scroll_into_view_if_needed()
        canvas = widget.locator("canvas.zfw-feature-maps").first
        projection = widget.locator("img.zfw-projection").first
        canvas.wait_for(state="visible")
        assert nonblank_pixels(canvas.screenshot()) > 5000, "the feature-map grid is blank"
        for name in ("zfw-input", "zfw-heat", "zfw-projection", "zfw-top-patches"):
            picture = widget.locator(f"img.{name}").first
            assert nonblank_pixels(picture.screenshot()) > 500, f"img.{name} rendered blank"

        readout = widget.locator(".widget-slider .widget-readout").first
        expect(readout).to_have_text(str(START))
        before = projection.screenshot()
        _click_map(page, canvas, CLICKED)
        expect(readout, "clicking a map did not select it").to_have_text(str(CLICKED))
        after_click = wait_for_new_screenshot(projection, before, timeout=30)
        assert changed_pixels(before, after_click) > 200, "the projection did not follow the click"

        handle = widget.locator(".widget-slider .noUi-handle").first
        handle.focus()
        page.keyboard.press("ArrowRight")
        page.keyboard.press("ArrowRight")
        expect(readout, "ArrowRight did not move the map slider").to_have_text(str(CLICKED + 2))
        after_keys = wait_for_new_screenshot(projection, after_click, timeout=30)
        assert changed_pixels(after_click, after_keys) > 200, "the projection ignored the keys"

        widget.get_by_role("button", name="Grad-CAM", exact=True).click()
        after_method = wait_for_new_screenshot(projection, after_keys, timeout=30)
        assert changed_pixels(after_keys, after_method) > 200, "the method toggle did nothing"

        status = widget.locator(".zfw-status").first
        assert "⚠" not in status.inner_text(), f"the status line shows an error: {status}"
    finally:
        if widget.count():
            widget.screenshot(path=str(screenshot_path("layer_browser")))
            _set_theme(page, "JupyterLab Dark")
            widget.screenshot(path=str(screenshot_path("layer_browser_dark")))
