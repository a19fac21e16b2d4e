"""zfwidgets: Zeiler & Fergus's deconvnet and friends as live Jupyter widgets.

Example:
    >>> from zfwidgets import Inspector, demo
    >>> d = demo.load()
    >>> insp = Inspector(d.model)
    >>> x, label = d.dataset[0]
    >>> picture = insp.project(x, "conv2", channel=5)
"""

from zfwidgets.core import Inspector, UnsupportedModelError
from zfwidgets.widgets import EvolutionScrubber, InvarianceExplorer, LayerBrowser, OcclusionSlider

__version__ = "0.1.0"
__all__ = [
    "EvolutionScrubber",
    "Inspector",
    "InvarianceExplorer",
    "LayerBrowser",
    "OcclusionSlider",
    "UnsupportedModelError",
    "__version__",
]
