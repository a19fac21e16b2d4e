"""zfwidgets: Zeiler & Fergus's deconvnet and friends as live Jupyter widgets.

The package is layered: :mod:`zfwidgets.core` (torch and numpy only), :mod:`zfwidgets.zoo` and
:mod:`zfwidgets.train` above it, and :mod:`zfwidgets.widgets` on top. The names below are loaded
on first use, so ``import zfwidgets.core`` in a script or a server never pulls in ipywidgets.

Example:
    >>> from zfwidgets import Inspector, demo
    >>> d = demo.load()
    >>> insp = Inspector(d.model)
    >>> x, label = d.dataset[0]
    >>> picture = insp.project(x, "conv2", channel=5)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> the module that defines it; imported when first asked for
_LAZY = {
    "Inspector": "zfwidgets.core",
    "Preprocessing": "zfwidgets.core",
    "UnsupportedModelError": "zfwidgets.core",
    "EvolutionScrubber": "zfwidgets.widgets",
    "FeatureSpace": "zfwidgets.widgets",
    "InvarianceExplorer": "zfwidgets.widgets",
    "LayerBrowser": "zfwidgets.widgets",
    "OcclusionSlider": "zfwidgets.widgets",
    "Synthesis": "zfwidgets.widgets",
    "TrustExplorer": "zfwidgets.widgets",
    "projector": "zfwidgets.widgets",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str) -> Any:
    """Imports a public name's module the first time the name is used."""
    if name not in _LAZY:
        raise AttributeError(f"module 'zfwidgets' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
