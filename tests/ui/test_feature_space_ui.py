"""FeatureSpace in a real JupyterLab: click a point of the scatter, see its neighbours."""

from __future__ import annotations

from pathlib import Path

import pytest
from lab_harness import (
    changed_pixels,
    nonblank_pixels,
    open_notebook,
    run_all_cells,
    screenshot_path,
    temporary_notebook,
    wait_for_new_screenshot,
)

pytestmark = pytest.mark.ui

NOTEBOOK = Path(__file__).with_name("_feature_space_notebook.ipynb")
WIDGET_CELL = """
from torch.utils.data import Subset
from zfwidgets import demo
from zfwidgets.widgets.feature_space import FeatureSpace
d = demo.load()
w = FeatureSpace(d.model, Subset(d.dataset, range(200)), classes=d.classes, mean=d.mean)
w
"""


def test_clicking_a_point_shows_its_neighbours(browser_page, jupyterlab):
    from playwright.sync_api import expect

    page = browser_page
    with temporary_notebook(NOTEBOOK, WIDGET_CELL):
        try:
            open_notebook(page, jupyterlab, NOTEBOOK.relative_to(jupyterlab.root_dir).as_posix())
            run_all_cells(page)
            widget = page.locator(".zfw-feature-space").first
            widget.scroll_into_view_if_needed()
            plot = widget.locator(".zfw-feature-plot").first
            expect(plot).to_be_visible()
            expect(widget.locator(".zfw-status")).to_contain_text("PCA of", timeout=60_000)
            dots = plot.locator("path.dot")
            expect(dots.nth(150)).to_be_attached(timeout=30_000)  # every image is a point
            assert nonblank_pixels(plot.screenshot()) > 500, "the scatter rendered blank"
            grid = widget.locator("img.zfw-feature-neighbours").first
            pixels = widget.locator("img.zfw-pixel-neighbours").first
            before = grid.screenshot()
            dots.nth(42).click(force=True)  # a 2: digit i is an i % 10
            expect(widget.locator(".zfw-feature-readout")).to_contain_text(
                "share of the 5 neighbours", timeout=30_000
            )
            after = wait_for_new_screenshot(grid, before, timeout=30)
            assert nonblank_pixels(after) > 500, "the feature-space neighbours are blank"
            assert changed_pixels(before, after) > 500
            assert nonblank_pixels(pixels.screenshot()) > 500, "the pixel neighbours are blank"
            first = after
            dots.nth(178).click(force=True)  # another point, another class (an 8): other neighbours
            assert changed_pixels(first, wait_for_new_screenshot(grid, first, timeout=30)) > 100
            # the class legend sits under the plot: not under bqplot's toolbar, not on points
            legend = widget.locator(".zfw-feature-legend").first
            expect(legend).to_contain_text("9")
            plot_box, legend_box = plot.bounding_box(), legend.bounding_box()
            assert legend_box["y"] >= plot_box["y"] + plot_box["height"] - 1
            widget.screenshot(path=str(screenshot_path("feature_space_widget")))
        finally:
            page.screenshot(path=str(screenshot_path("feature_space")), full_page=True)
