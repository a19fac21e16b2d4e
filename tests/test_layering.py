"""The import direction of docs/architecture.md, checked in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys

import pytest

NOTEBOOK_ONLY = ("ipywidgets", "traitlets", "IPython", "bqplot", "ipycanvas")


def _modules_after(statement: str) -> set[str]:
    code = f"{statement}\nimport sys\nprint('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


@pytest.mark.parametrize(
    "package", ["zfwidgets", "zfwidgets.core", "zfwidgets.train", "zfwidgets.zoo", "zfwidgets.demo"]
)
def test_lower_floors_import_no_notebook_packages(package):
    loaded = _modules_after(f"import {package}")
    pulled = sorted(m for m in loaded if m.split(".")[0] in NOTEBOOK_ONLY)
    assert not pulled, f"import {package} pulled in {pulled[:5]}"
    assert not any(m.startswith("zfwidgets.widgets") for m in loaded)


def test_widgets_load_on_first_use_from_the_package():
    loaded = _modules_after("from zfwidgets import LayerBrowser, Inspector")
    assert "zfwidgets.widgets.layer_browser" in loaded and "ipywidgets" in loaded


def test_package_lists_its_lazy_names():
    import zfwidgets

    assert {"Inspector", "LayerBrowser", "OcclusionSlider"} <= set(dir(zfwidgets))
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        zfwidgets.Nope  # noqa: B018
