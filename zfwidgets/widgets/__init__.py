"""Live Jupyter widgets (ipywidgets composites) on top of :mod:`zfwidgets.core`.

Example:
    >>> from zfwidgets import LayerBrowser, demo
    >>> d = demo.load()
    >>> browser = LayerBrowser(d.model, dataset=d.dataset, mean=d.mean, classes=d.classes)
    >>> browser.layer, browser.status
    ('conv1', '')
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> its module; imported when first asked for, so that opening one widget does not
# import every other widget's libraries (bqplot, scikit-learn, the training code)
_LAZY = {
    "EvolutionScrubber": "zfwidgets.widgets.evolution_scrubber",
    "FeatureSpace": "zfwidgets.widgets.feature_space",
    "InvarianceExplorer": "zfwidgets.widgets.invariance_explorer",
    "LayerBrowser": "zfwidgets.widgets.layer_browser",
    "OcclusionSlider": "zfwidgets.widgets.occlusion_slider",
    "Synthesis": "zfwidgets.widgets.synthesis",
    "TrustExplorer": "zfwidgets.widgets.trust_explorer",
    "projector": "zfwidgets.widgets.base",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    """Imports a widget's module the first time the widget is asked for."""
    if name not in _LAZY:
        raise AttributeError(f"module 'zfwidgets.widgets' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
