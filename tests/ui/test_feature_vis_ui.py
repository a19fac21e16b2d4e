"""Issue 31 in a real JupyterLab: the Synthesis widget's Fourier + robust route draws a
diverse batch side by side, and the LayerBrowser draws a map's feature visualisation beside
its top 9."""

from __future__ import annotations

import pytest
from lab_harness import (
    REPO_ROOT,
    nonblank_pixels,
    open_notebook,
    run_all_cells,
    screenshot_path,
    temporary_notebook,
)

pytestmark = pytest.mark.ui

BUILD = """import torch
from zfwidgets import demo, LayerBrowser
from zfwidgets.widgets.synthesis import Synthesis
d = demo.load()
w = Synthesis(d.model, mean=d.mean, shape=(1, 28, 28), classes=d.classes, steps=60,
              method="robust", mode="unit", layer="conv2", channel=3, diversity=3)
w
"""
BROWSER = """small = torch.stack([d.dataset[i][0] for i in range(60)])
b = LayerBrowser(d.model, dataset=small, mean=d.mean, layer="conv2", show_top=True,
                 feature_vis=True, synthesis_steps=60)
b
"""


def test_robust_synthesis_and_the_browsers_feature_visualisation(browser_page, jupyterlab):
    from playwright.sync_api import expect

    page = browser_page
    path = REPO_ROOT / "tests" / "ui" / "_feature_vis_ui.ipynb"
    with temporary_notebook(path, BUILD, BROWSER):
        open_notebook(page, jupyterlab, str(path.relative_to(REPO_ROOT)))
        run_all_cells(page)
        widget = page.locator(".zfw-synthesis").first
        widget.scroll_into_view_if_needed()
        expect(widget.locator("button", has_text="Fourier + robust").first).to_be_visible()
        widget.locator("button", has_text="Start").first.click()
        status = widget.locator(".zfw-status")
        expect(status).to_contain_text("conv2 map 3 (Fourier + robust): 60 steps", timeout=120_000)
        picture = widget.locator("img.zfw-synthesis-image").first
        box = picture.bounding_box()
        assert box is not None and box["width"] > 2.5 * box["height"], box  # 3 side by side
        assert nonblank_pixels(picture.screenshot()) > 500
        page.screenshot(path=str(screenshot_path("feature_vis_synthesis")), full_page=True)
        browser = page.locator(".zfw-layer-browser").first
        browser.scroll_into_view_if_needed()
        vis = browser.locator("img.zfw-feature-vis").first
        expect(browser.locator(".zfw-status")).to_contain_text(
            "feature visualisation of map 0 of conv2: 60 steps", timeout=120_000
        )
        expect(vis).to_be_visible()
        assert nonblank_pixels(vis.screenshot()) > 500
        browser.screenshot(path=str(screenshot_path("feature_vis_layer_browser")))
