"""The engine: model structure, forward recording, switch cache, projections, rendering.

Imports torch and numpy only (never widgets), so it runs in scripts, tests and servers.
"""

from zfwidgets.core.backward import METHODS
from zfwidgets.core.cache import CacheInfo
from zfwidgets.core.graph import Step, UnsupportedModelError
from zfwidgets.core.inspector import Inspector
from zfwidgets.core.preprocess import IMAGENET, Preprocessing
from zfwidgets.core.record import Record

__all__ = [
    "IMAGENET",
    "METHODS",
    "CacheInfo",
    "Inspector",
    "Preprocessing",
    "Record",
    "Step",
    "UnsupportedModelError",
]
