"""Sphinx configuration of the zfwidgets documentation site.

Two modes, picked by the environment variable ZFW_DOCS_MODE:

* ``fast`` (CI, ``make docs-fast``): tutorials are rendered from the stored notebooks without
  running them (code and text only); the short "how the deconvnet works" page still runs.
* ``full`` (default, ``make docs``): every tutorial is executed, with its outputs and the state
  of its widgets stored in the page, so the static site shows live-looking widgets.

The widget JavaScript is served from ``_static/widgets`` when ``make docs-js`` has fetched it
(npm), so pages render widgets without a CDN; otherwise the usual CDN URLs are used.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))

import zfwidgets  # noqa: E402

project = "zfwidgets"
author = "zfwidgets contributors"
copyright = "2025, zfwidgets contributors"
release = version = zfwidgets.__version__

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]
exclude_patterns = [
    "_build",
    "_generated",
    "**/.ipynb_checkpoints",
    "README.md",
    "widget_modules.py",
]
html_theme = "furo"
html_title = "zfwidgets"
html_static_path = ["_static"] if (DOCS / "_static").is_dir() else []  # fviz/, widgets/ (docs-js)
myst_enable_extensions = ["dollarmath", "colon_fence"]
suppress_warnings = ["mystnb.unknown_mime_type"]

# ----- tutorials: every notebooks/*.ipynb, linked into docs/tutorials at build time ---------


def _link_tutorials() -> list[str]:
    """Copies each notebook into docs/tutorials (ignored by git); returns their stems."""
    target = DOCS / "tutorials"
    target.mkdir(exist_ok=True)
    stems = []
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        copy = target / notebook.name
        if not copy.exists() or copy.read_bytes() != notebook.read_bytes():
            shutil.copyfile(notebook, copy)
        stems.append(notebook.stem)
    for stale in target.glob("*.ipynb"):
        if stale.stem not in stems:
            stale.unlink()
    return stems


TUTORIALS = _link_tutorials()


def _quality_toctree() -> None:
    """The "Quality" toctree lists performance.md, reliability.md and model_coverage.md when
    they exist."""
    names = ("performance", "reliability", "model_coverage")
    pages = [name for name in names if (DOCS / f"{name}.md").is_file()]
    text = "```{toctree}\n:maxdepth: 1\n:caption: Quality\n\n" + "\n".join(pages) + "\n```\n"
    target = DOCS / "_generated" / "quality_toc.md"
    target.parent.mkdir(exist_ok=True)
    if not target.is_file() or target.read_text() != text:
        target.write_text(text)


_quality_toctree()

MODE = os.environ.get("ZFW_DOCS_MODE", "full")
if MODE not in ("fast", "full"):
    raise ValueError(f"ZFW_DOCS_MODE must be 'fast' or 'full'; got {MODE!r}")
nb_execution_mode = "force"
nb_execution_timeout = 600
nb_execution_raise_on_error = True
nb_execution_show_tb = True
if MODE == "fast":
    nb_execution_excludepatterns = ["tutorials/*"]
os.environ.setdefault("MPLBACKEND", "Agg")

# ----- widgets without a CDN when the JavaScript was fetched ----------------------------------
WIDGETS = DOCS / "_static" / "widgets"
if (WIDGETS / "embed-amd.js").is_file() and (WIDGETS / "require.js").is_file():
    nb_ipywidgets_js = {
        "widgets/require.js": {},
        "widgets/local-modules.js": {},
        "widgets/embed-amd.js": {"data-jupyter-widgets-cdn": "https://cdn.jsdelivr.net/npm/"},
    }

# ----- API reference ---------------------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
