"""Tutorial 13 in a real JupyterLab: the TrustExplorer draws its maps and curves, and moving the
"randomised down to" slider redraws the maps."""

from __future__ import annotations

import shutil

import pytest
from lab_harness import (
    nonblank_pixels,
    open_notebook,
    run_all_cells,
    screenshot_path,
    wait_for_new_screenshot,
)

pytestmark = pytest.mark.ui


def test_trust_tutorial_draws_and_the_stage_slider_redraws(browser_page, jupyterlab):
    page = browser_page
    try:
        open_notebook(page, jupyterlab, "notebooks/13_trust.ipynb")
        run_all_cells(page, timeout=480)
        widget = page.locator(".zfw-trust-explorer").first
        widget.scroll_into_view_if_needed()
        maps = widget.locator("img.zfw-trust-map")
        assert maps.count() == 6  # the digits model's five methods and occlusion
        for i in range(maps.count()):
            assert nonblank_pixels(maps.nth(i).screenshot()) > 100, f"map {i} is blank"
        for name in ("similarity", "deletion", "insertion"):
            figure = widget.locator(f".zfw-trust-{name}").first
            assert figure.locator("path.line").count() >= 6, f"{name}: one line per method"
        saliency = maps.nth(2)
        before = saliency.screenshot()
        handle = widget.locator(".widget-slider .noUi-handle").nth(1)  # the stage slider
        handle.focus()
        page.keyboard.press("ArrowRight")  # fc5 -> fc4: one more block random
        wait_for_new_screenshot(saliency, before)
        widget.screenshot(path="/tmp/trustw_widget.png")
    finally:
        page.screenshot(path=str(screenshot_path("13_trust")), full_page=True)
        shutil.copy(screenshot_path("13_trust"), "/tmp/trustw_13_trust_page.png")
