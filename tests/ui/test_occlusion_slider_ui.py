"""The occlusion tutorial in a real JupyterLab: the widget renders and follows a mouse drag."""

from __future__ import annotations

import pytest
from lab_harness import (
    changed_pixels,
    drag,
    nonblank_pixels,
    open_notebook,
    run_all_cells,
    screenshot_path,
    wait_for_new_screenshot,
)

pytestmark = pytest.mark.ui

MAPS = ["activity", "projection", "target-prob", "top-class"]


def test_occlusion_slider_renders_and_follows_a_drag(browser_page, jupyterlab):
    from playwright.sync_api import expect

    page = browser_page
    try:
        open_notebook(page, jupyterlab, "notebooks/05_occlusion.ipynb")
        run_all_cells(page)
        widget = page.locator(".zfw-occlusion-slider").first
        widget.scroll_into_view_if_needed()
        canvas = widget.locator("canvas").first
        canvas.wait_for(state="visible")
        before = canvas.screenshot()
        assert nonblank_pixels(before) > 2000, "the image canvas rendered blank"
        for name in MAPS:
            picture = widget.locator(f"img.zfw-occlusion-{name}").first
            expect(picture).to_be_visible()
            assert nonblank_pixels(picture.screenshot()) > 500, f"map {name} rendered blank"
        readout = widget.locator(".zfw-occlusion-readout").first
        text_before = readout.inner_text()
        assert "x=10, y=4" in text_before  # the notebook moved the square from code

        drag(page, canvas.bounding_box(), (0.5, 0.3), (0.2, 0.8))
        after = wait_for_new_screenshot(canvas, before, timeout=30)
        assert changed_pixels(before, after) > 500, "the square did not move on the canvas"
        expect(readout).not_to_have_text(text_before)
        assert "x=10, y=4" not in readout.inner_text()
    finally:
        page.screenshot(path=str(screenshot_path("occlusion_slider")), full_page=True)
