"""The LayerBrowser tutorial in Notebook 7: Run All, then the widget draws and follows a click.

Saves ``notebook7_layer_browser.png`` (the widget) and ``notebook7_page.png`` every run.
"""

from __future__ import annotations

import pytest
from lab_harness import (
    TUTORIAL_03,
    check_tutorial_03_browser,
    open_notebook,
    run_all_cells,
    screenshot_path,
)

pytestmark = pytest.mark.ui


def test_layer_browser_tutorial_runs_in_notebook7(notebook7_page, notebook7):
    page = notebook7_page
    widget = page.locator(".zfw-layer-browser").first
    try:
        open_notebook(page, notebook7, TUTORIAL_03)
        app = page.evaluate("() => window.jupyterapp.name")
        assert app == "Jupyter Notebook", f"expected Notebook 7's page, got {app!r}"
        run_all_cells(page, timeout=120)  # raises on any error output or failed widget

        check_tutorial_03_browser(widget, "Notebook 7")
    finally:
        if widget.count():
            widget.screenshot(path=str(screenshot_path("notebook7_layer_browser")))
        page.screenshot(path=str(screenshot_path("notebook7_page")))
