"""Live Jupyter widgets (ipywidgets composites) on top of :mod:`zfwidgets.core`.

Example:
    >>> from zfwidgets import LayerBrowser, demo
    >>> d = demo.load()
    >>> browser = LayerBrowser(d.model, dataset=d.dataset, mean=d.mean, classes=d.classes)
    >>> browser.layer, browser.status
    ('conv1', '')
"""

from zfwidgets.widgets.evolution_scrubber import EvolutionScrubber
from zfwidgets.widgets.feature_space import FeatureSpace
from zfwidgets.widgets.invariance_explorer import InvarianceExplorer
from zfwidgets.widgets.layer_browser import LayerBrowser
from zfwidgets.widgets.occlusion_slider import OcclusionSlider
from zfwidgets.widgets.synthesis import Synthesis

__all__ = [
    "EvolutionScrubber",
    "FeatureSpace",
    "InvarianceExplorer",
    "LayerBrowser",
    "OcclusionSlider",
    "Synthesis",
]
