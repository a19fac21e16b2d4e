"""Image priors for synthesis: moved to :mod:`zfwidgets.core.synthesis.regularisers`; this
module re-exports them so that ``from zfwidgets.core.regularisers import ...`` keeps working.

Example:
    >>> from zfwidgets.core.regularisers import total_variation
    >>> total_variation.__module__
    'zfwidgets.core.synthesis.regularisers'
"""

from zfwidgets.core.synthesis.regularisers import (
    clip_small_contribution,
    clip_small_values,
    gaussian_blur,
    jitter_offsets,
    total_variation,
)

__all__ = [
    "clip_small_contribution",
    "clip_small_values",
    "gaussian_blur",
    "jitter_offsets",
    "total_variation",
]
