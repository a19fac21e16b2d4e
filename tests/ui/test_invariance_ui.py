"""The invariance tutorial in a real JupyterLab: the widget renders and follows its slider."""

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

pytestmark = pytest.mark.ui


def test_invariance_explorer_renders_and_follows_its_slider(browser_page, jupyterlab):
    from playwright.sync_api import expect

    page = browser_page
    try:
        open_notebook(page, jupyterlab, "notebooks/06_invariance.ipynb")
        run_all_cells(page)
        widget = page.locator(".zfw-invariance-explorer").first
        widget.scroll_into_view_if_needed()
        picture = widget.locator("img.zfw-invariance-image").first
        expect(picture).to_be_visible()
        before = picture.screenshot()
        assert nonblank_pixels(before) > 500, "the transformed image rendered blank"
        for name in ("a", "b", "prob"):
            plot = widget.locator(f".zfw-invariance-plot-{name}").first
            expect(plot).to_be_visible()
            # the x axis spans the sweep (-6..6 px): the curves' domain reached the page
            expect(plot.locator("g.tick text", has_text="-6").first).to_be_attached()
            assert nonblank_pixels(plot.screenshot()) > 300, f"plot {name} rendered blank"
        readout = widget.locator(".zfw-invariance-readout").first
        expect(readout).to_contain_text("+3 px of image 0")  # the notebook moved it from code
        plot = widget.locator(".zfw-invariance-plot-prob").first
        plot_before = plot.screenshot()

        handle = widget.locator(".widget-slider .noUi-handle").first
        handle.focus()
        for _ in range(3):
            page.keyboard.press("ArrowRight")
        expect(readout).to_contain_text("+6 px of image 0")
        after = wait_for_new_screenshot(picture, before, timeout=30)
        assert changed_pixels(before, after) > 100, "the picture did not move with the slider"
        wait_for_new_screenshot(plot, plot_before, timeout=30)  # the marked point moved

        widget.locator(".widget-toggle-buttons button", has_text="rotation").first.click()
        expect(readout).to_contain_text("rotation 0° of image 0", timeout=60_000)
    finally:
        page.screenshot(path=str(screenshot_path("invariance_explorer")), full_page=True)
