"""Tutorial 10 (real photos, EfficientNet-Lite0) in a real JupyterLab: its three widgets show
non-blank pictures, and dragging the occluder onto the cat's face lowers the displayed cat
probability."""

from __future__ import annotations

import re

import pytest
from lab_harness import drag, nonblank_pixels, open_notebook, run_all_cells, screenshot_path

pytestmark = pytest.mark.ui

PROB = re.compile(r"p\(Egyptian cat\) = ([0-9.]+)")


def _prob(text: str) -> float:
    match = PROB.search(text)
    assert match, f"no p(Egyptian cat) in the readout: {text!r}"
    return float(match.group(1))


def test_real_photos_widgets_render_and_the_occluder_lowers_the_cat(browser_page, jupyterlab):
    from playwright.sync_api import expect

    page = browser_page
    try:
        open_notebook(page, jupyterlab, "notebooks/10_real_photos.ipynb")
        run_all_cells(page, timeout=300)

        browser = page.locator(".zfw-layer-browser").first
        browser.scroll_into_view_if_needed()
        for name in ("zfw-input", "zfw-heat", "zfw-projection", "zfw-top-patches"):
            shot = browser.locator(f"img.{name}").first.screenshot()
            assert nonblank_pixels(shot) > 500, f"LayerBrowser's img.{name} rendered blank"
        page.screenshot(path=str(screenshot_path("photos_layer_browser")))

        explorer = page.locator(".zfw-invariance-explorer").first
        explorer.scroll_into_view_if_needed()
        picture = explorer.locator("img.zfw-invariance-image").first
        expect(picture).to_be_visible()
        assert nonblank_pixels(picture.screenshot()) > 500, "the transformed photo is blank"
        for name in ("a", "b", "prob"):
            plot = explorer.locator(f".zfw-invariance-plot-{name}").first
            assert nonblank_pixels(plot.screenshot()) > 300, f"plot {name} rendered blank"

        slider = page.locator(".zfw-occlusion-slider").first
        slider.scroll_into_view_if_needed()
        canvas = slider.locator("canvas").first
        canvas.wait_for(state="visible")
        assert nonblank_pixels(canvas.screenshot()) > 2000, "the cat's canvas rendered blank"
        for name in ("activity", "target-prob", "top-class"):
            shot = slider.locator(f"img.zfw-occlusion-{name}").first.screenshot()
            assert nonblank_pixels(shot) > 500, f"occlusion map {name} rendered blank"
        readout = slider.locator(".zfw-occlusion-readout").first
        expect(readout).to_contain_text("square at x=0, y=0")  # the notebook put it there
        before = _prob(readout.inner_text())
        page.screenshot(path=str(screenshot_path("photos_occlusion_before")))

        # From the top-left corner onto the cat's right eye (the square is clamped at the right
        # edge: x = 224 - 96 = 128), centred half-way down.
        # Every mouse move is one forward pass and readout in the kernel (~0.1-0.5 s on a busy
        # 2-core CPU): give the queue time to drain.
        drag(page, canvas.bounding_box(), (0.1, 0.1), (0.95, 0.5), steps=4)
        expect(readout).to_contain_text("square at x=128, y=", timeout=90_000)
        page.wait_for_timeout(2000)  # the last of the queued moves
        text = readout.inner_text()
        y = int(re.search(r"square at x=128, y=(\d+)", text).group(1))
        assert 40 <= y <= 88, f"the drag ended at y={y}, not half-way down the eye: {text!r}"
        after = _prob(text)
        page.screenshot(path=str(screenshot_path("photos_occlusion_after")))
        assert after < before - 0.03, f"p(Egyptian cat) {before:.3f} -> {after:.3f} on the eye"
    finally:
        page.screenshot(path=str(screenshot_path("real_photos")), full_page=True)
