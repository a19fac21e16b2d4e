"""The Synthesis widget in a real JupyterLab: Start runs it, and the picture and curve change."""

from __future__ import annotations

import pytest
from lab_harness import (
    REPO_ROOT,
    changed_pixels,
    nonblank_pixels,
    open_notebook,
    run_all_cells,
    screenshot_path,
    temporary_notebook,
    wait_for_new_screenshot,
)

pytestmark = pytest.mark.ui

BUILD = """from zfwidgets import demo
from zfwidgets.widgets.synthesis import Synthesis
d = demo.load()
w = Synthesis(d.model, images=[d.dataset[i][0] for i in range(3)], classes=d.classes,
              mean=d.mean, steps=300, target=3)
w
"""


def test_start_makes_a_picture_that_changes_live(browser_page, jupyterlab):
    from playwright.sync_api import expect

    page = browser_page
    path = REPO_ROOT / "tests" / "ui" / "_synthesis_ui.ipynb"
    with temporary_notebook(path, BUILD):
        open_notebook(page, jupyterlab, str(path.relative_to(REPO_ROOT)))
        run_all_cells(page)
        widget = page.locator(".zfw-synthesis").first
        widget.scroll_into_view_if_needed()
        picture = widget.locator("img.zfw-synthesis-image").first
        expect(picture).to_be_visible()
        before = picture.screenshot()
        curve = widget.locator(".zfw-synthesis-curve").first
        expect(curve).to_be_visible()
        widget.locator("button", has_text="Start").first.click()
        expect(widget.locator(".zfw-status")).to_contain_text("step", timeout=60_000)
        after = wait_for_new_screenshot(picture, before, timeout=60)
        assert changed_pixels(before, after) > 500, "the picture did not change"
        assert nonblank_pixels(after) > 500
        expect(widget.locator(".zfw-status")).to_contain_text("class 3: 300 steps", timeout=120_000)
        # the curve's x axis spans the 300 steps: its data and domain reached the page
        expect(curve.locator("g.tick text", has_text="300").first).to_be_attached()
        assert nonblank_pixels(curve.screenshot()) > 300, "the objective curve is blank"
        page.screenshot(path=str(screenshot_path("synthesis")), full_page=True)
        widget.locator(".widget-toggle-buttons button", has_text="invert").first.click()
        expect(widget.locator(".widget-dropdown", has_text="layer").first).to_be_visible()
