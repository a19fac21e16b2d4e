"""The static tutorials run in a real JupyterLab and their pictures reach the page."""

from __future__ import annotations

import pytest
from lab_harness import nonblank_pixels, open_notebook, run_all_cells, screenshot_path

pytestmark = pytest.mark.ui


@pytest.mark.parametrize(
    "notebook, pictures",
    # 02: the input, activation + switches, the switches legend (its own image), the steps.
    [("01_quickstart", 5), ("02_deconvnet_explained", 4)],
)
def test_tutorial_runs_and_shows_its_pictures(browser_page, jupyterlab, notebook, pictures):
    page = browser_page
    try:
        open_notebook(page, jupyterlab, f"notebooks/{notebook}.ipynb")
        run_all_cells(page)
        images = page.locator(".jp-OutputArea-output img")
        images.nth(pictures - 1).wait_for(state="visible")
        assert images.count() == pictures
        for i in range(pictures):
            shot = images.nth(i).screenshot()
            assert nonblank_pixels(shot) > 200, f"picture {i} of {notebook} is blank"
    finally:
        page.screenshot(path=str(screenshot_path(notebook)), full_page=True)


def test_bring_your_own_model_shows_resnet_and_efficientnet(browser_page, jupyterlab):
    """09: ResNet-18's widgets draw, menus list blocks; EfficientNet's toggle lacks deconvnet."""
    page = browser_page
    try:
        open_notebook(page, jupyterlab, "notebooks/09_bring_your_own_model.ipynb")
        run_all_cells(page, timeout=240)
        resnet, effnet = (page.locator(".zfw-layer-browser").nth(i) for i in (0, 1))
        resnet.scroll_into_view_if_needed()
        for name in ("zfw-input", "zfw-heat", "zfw-projection"):
            shot = resnet.locator(f"img.{name}").first.screenshot()
            assert nonblank_pixels(shot) > 500, f"ResNet-18's img.{name} rendered blank"
        menu = resnet.locator("select").first
        labels = [text.strip() for text in menu.locator("option").all_inner_texts()]
        assert any(t.startswith("layer3") and "Sequential" in t for t in labels), labels
        assert not [t for t in labels if "bn" in t], f"batch norms in the layer menu: {labels}"
        chosen = menu.evaluate("s => s.options[s.selectedIndex].textContent")
        assert chosen.startswith("layer3"), chosen
        buttons = resnet.locator(".widget-toggle-buttons").first.locator("button")
        assert [t.strip() for t in buttons.all_inner_texts()] == [
            "deconvnet",
            "guided",
            "saliency",
            "Grad-CAM",
            "guided Grad-CAM",
            "CAM",
        ]
        slider = page.locator(".zfw-occlusion-slider").first
        slider.scroll_into_view_if_needed()
        for name in ("activity", "projection", "target-prob", "top-class"):
            shot = slider.locator(f"img.zfw-occlusion-{name}").first.screenshot()
            assert nonblank_pixels(shot) > 500, f"occlusion map {name} rendered blank"
        effnet.scroll_into_view_if_needed()
        buttons = effnet.locator(".widget-toggle-buttons").first.locator("button")
        assert [t.strip() for t in buttons.all_inner_texts()] == ["saliency", "Grad-CAM", "CAM"]
        note = effnet.locator(".zfw-method-note").first
        assert "not offered: deconvnet, guided, guided Grad-CAM" in note.inner_text()
        assert "SiLU" in note.locator("div[title]").first.get_attribute("title")
    finally:
        page.screenshot(path=str(screenshot_path("09_bring_your_own_model")), full_page=True)


def test_preparing_a_lab_opens_the_mined_file(browser_page, jupyterlab):
    """14: the student's LayerBrowser shows the file's top 9 with the folder's labels, marks
    the layers not in the file, and the Fig. 2 panel and the export control reach the page."""
    page = browser_page
    try:
        open_notebook(page, jupyterlab, "notebooks/14_preparing_a_lab.ipynb")
        run_all_cells(page, timeout=420)
        browser = page.locator(".zfw-layer-browser").first
        browser.scroll_into_view_if_needed()
        for name in ("zfw-input", "zfw-projection", "zfw-top-projections", "zfw-top-patches"):
            shot = browser.locator(f"img.{name}").first.screenshot()
            assert nonblank_pixels(shot) > 500, f"img.{name} of the lab browser rendered blank"
        labels = browser.locator(".zfw-top-labels").first.inner_text()
        folders = ("camera", "chelsea", "coffee", "grace_hopper", "rocket")
        assert any(name in labels for name in folders), labels
        menu = browser.locator("select").first
        options = [t.replace("\xa0", " ").strip() for t in menu.locator("option").all_inner_texts()]
        assert any("not mined" in t for t in options), options
        assert not any("not mined" in t for t in options if t.startswith("conv")), options
        assert browser.get_by_role("button", name="Export").count() == 1
        panel = page.locator(".jp-OutputArea-output img").last
        panel.scroll_into_view_if_needed()
        assert nonblank_pixels(panel.screenshot()) > 5000, "the Fig. 2 panel rendered blank"
    finally:
        page.screenshot(path=str(screenshot_path("14_preparing_a_lab")), full_page=True)
