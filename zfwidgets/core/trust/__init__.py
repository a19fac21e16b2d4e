"""Can a class trust the picture? Sanity checks and faithfulness for every method.

- :func:`class_map`: one (H, W) class map per method (the registry's, and occlusion).
- :func:`cascade`: cascading (or independent) randomisation of the blocks, top down, with the
  Spearman, SSIM and HOG similarity of each map to the trained one (Adebayo et al., 2018).
- :func:`deletion_insertion`: deletion and insertion curves and their AUC (Petsiuk et al., 2018).
- :func:`road_impute`: ROAD's noisy linear imputation of removed pixels (Rong et al., 2022),
  the ``fill="road"`` of :func:`deletion_insertion`.

Example:
    >>> from zfwidgets import Inspector, demo
    >>> from zfwidgets.core import trust
    >>> d = demo.load()
    >>> insp = Inspector(d.model)
    >>> curves = trust.deletion_insertion(insp, d.dataset[0][0], "saliency", steps=4)
    >>> curves.fractions.tolist()
    [0.0, 0.25, 0.5, 0.75, 1.0]
"""

from zfwidgets.core.trust.faithfulness import Curves, auc, blurred, deletion_insertion
from zfwidgets.core.trust.maps import class_map, trust_methods
from zfwidgets.core.trust.randomise import (
    METRICS,
    Randomisation,
    block_modules,
    cascade,
    randomised_inspector,
)
from zfwidgets.core.trust.road import road_impute
from zfwidgets.core.trust.similarity import hog_similarity, spearman, ssim

__all__ = [
    "METRICS",
    "Curves",
    "Randomisation",
    "auc",
    "block_modules",
    "blurred",
    "cascade",
    "class_map",
    "deletion_insertion",
    "hog_similarity",
    "randomised_inspector",
    "road_impute",
    "spearman",
    "ssim",
    "trust_methods",
]
