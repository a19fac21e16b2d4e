"""The training-evolution tutorial in a real JupyterLab: the scrubber renders, plays, and opens a
map's top 9 when the grid is clicked."""

from __future__ import annotations

import contextlib
import time

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


def test_evolution_scrubber_plays_and_opens_a_top_nine(browser_page, jupyterlab):
    from playwright.sync_api import expect

    page = browser_page
    widget = page.locator(".zfw-evolution-scrubber").last  # the bundled run, driven from code
    try:
        open_notebook(page, jupyterlab, "notebooks/07_training_evolution.ipynb")
        run_all_cells(page, timeout=600)
        # issue 16: the freshly trained run's scrubber is still there after Run All
        fresh = page.locator(".zfw-evolution-scrubber").first
        expect(page.locator(".zfw-evolution-scrubber")).to_have_count(2)
        expect(fresh.locator(".zfw-evolution-grid").first).to_be_visible()
        assert nonblank_pixels(fresh.locator(".zfw-evolution-grid").first.screenshot()) > 2000
        widget.scroll_into_view_if_needed()
        canvas = widget.locator(".zfw-evolution-grid").first
        canvas.wait_for(state="visible")
        curves = widget.locator(".zfw-evolution-curves").first
        expect(curves).to_be_visible()
        # the x axis reaches the run's last epoch: the curves' data got to the page
        expect(curves.locator("g.tick text", has_text="30").first).to_be_attached()
        assert nonblank_pixels(curves.screenshot()) > 300, "the training curves rendered blank"
        expect(widget.locator(".widget-readout").first).to_have_text("20")  # set from code
        grid_from_code = canvas.screenshot()
        assert nonblank_pixels(grid_from_code) > 2000, "the grid of maps rendered blank"

        # To the first snapshot with the keyboard, then Play through the run.
        widget.locator(".widget-slider .noUi-handle").first.focus()
        page.keyboard.press("Home")
        expect(widget.locator(".widget-readout").first).to_have_text("1")
        grid_at_one = wait_for_new_screenshot(canvas, grid_from_code, timeout=30)
        widget.locator(".widget-play button").first.click()
        pictures, deadline = [grid_at_one], time.monotonic() + 60
        while time.monotonic() < deadline:
            pictures.append(canvas.screenshot())
            if widget.locator(".widget-readout").first.inner_text().strip() == "30":
                break
            page.wait_for_timeout(300)
        expect(widget.locator(".widget-readout").first).to_have_text("30", timeout=30_000)
        grid_at_thirty = wait_for_new_screenshot(canvas, grid_at_one, timeout=30)
        assert changed_pixels(grid_at_one, grid_at_thirty) > 2000, "Play did not change the grid"
        distinct = [pictures[0]]
        for shot in pictures[1:] + [grid_at_thirty]:
            if changed_pixels(distinct[-1], shot) > 500:
                distinct.append(shot)
        assert len(distinct) >= 3, f"Play showed only {len(distinct)} different grids"

        # Click the first tile: its top 9 at epoch 30 replaces map 3's.
        projections = widget.locator("img.zfw-evolution-top-projections").first
        patches = widget.locator("img.zfw-evolution-top-patches").first
        top_before = projections.screenshot() if projections.is_visible() else None
        canvas.click(position={"x": 20, "y": 20})  # scrolls the canvas into view first
        expect(widget).to_contain_text("Map 0 of conv3 at epoch 30", timeout=30_000)
        for name, picture in (("projections", projections), ("patches", patches)):
            expect(picture).to_be_visible()
            assert nonblank_pixels(picture.screenshot()) > 300, f"top-9 {name} rendered blank"
        if top_before is not None:
            wait_for_new_screenshot(projections, top_before, timeout=30)
    finally:
        with contextlib.suppress(Exception):  # show the widget, not hide the real failure
            widget.scroll_into_view_if_needed(timeout=5_000)
        page.screenshot(path=str(screenshot_path("evolution_scrubber")), full_page=True)
