"""The static tutorials run in a real JupyterLab and their pictures reach the page."""

from __future__ import annotations

import pytest
from lab_harness import nonblank_pixels, open_notebook, run_all_cells, screenshot_path

pytestmark = pytest.mark.ui


@pytest.mark.parametrize(
    "notebook, pictures",
    [("01_quickstart", 5), ("02_deconvnet_explained", 3)],
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
