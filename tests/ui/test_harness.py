"""The harness itself, end to end: JupyterLab + Chromium render a widget that reacts to a slider,
and a failing cell is reported."""

from __future__ import annotations

from pathlib import Path

import pytest
from lab_harness import (
    HarnessError,
    changed_pixels,
    nonblank_pixels,
    open_notebook,
    run_all_cells,
    screenshot_path,
    temporary_notebook,
    wait_for_new_screenshot,
)

pytestmark = pytest.mark.ui

NOTEBOOK = Path(__file__).with_name("_harness_notebook.ipynb")

WIDGET_CELL = """\
import io

import ipywidgets as widgets
from PIL import Image, ImageDraw


def picture(value):
    \"\"\"64x64 PNG: a square whose colour and size follow the slider.\"\"\"
    img = Image.new("RGB", (64, 64), (40, 40, 40))
    half = 8 + 2 * value
    colour = (25 * value, 255 - 25 * value, 128)
    ImageDraw.Draw(img).rectangle([32 - half, 32 - half, 31 + half, 31 + half], fill=colour)
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


slider = widgets.IntSlider(value=0, min=0, max=10, description="value")
image = widgets.Image(value=picture(0), format="png", width=128, height=128)
slider.observe(lambda change: setattr(image, "value", picture(change["new"])), names="value")
widgets.VBox([slider, image])
"""


def _relpath(server) -> str:
    return NOTEBOOK.relative_to(server.root_dir).as_posix()


def test_widget_renders_and_follows_the_slider(browser_page, jupyterlab):
    from playwright.sync_api import expect

    page = browser_page
    with temporary_notebook(NOTEBOOK, WIDGET_CELL):
        try:
            open_notebook(page, jupyterlab, _relpath(jupyterlab))
            run_all_cells(page)

            img = page.locator(".jp-OutputArea-output img.widget-image").first
            img.wait_for(state="visible")
            before = img.screenshot()
            assert nonblank_pixels(before) > 500, "the Image widget rendered blank"

            handle = page.locator(".jp-OutputArea-output .widget-slider .noUi-handle").first
            handle.focus()
            for _ in range(3):
                page.keyboard.press("ArrowRight")
            readout = page.locator(".jp-OutputArea-output .widget-slider .widget-readout").first
            expect(readout, "ArrowRight did not move the slider").to_have_text("3")

            after = wait_for_new_screenshot(img, before, timeout=30)
            assert nonblank_pixels(after) > 500
            assert changed_pixels(before, after) > 500, "the picture did not follow the slider"
        finally:
            page.screenshot(path=str(screenshot_path("harness")), full_page=True)


def test_run_all_cells_reports_a_failing_cell(browser_page, jupyterlab):
    with temporary_notebook(NOTEBOOK, "x = 1", "x / 0", "print('not reached')"):
        open_notebook(browser_page, jupyterlab, _relpath(jupyterlab))
        with pytest.raises(HarnessError, match="ZeroDivisionError"):
            run_all_cells(browser_page, timeout=60)
