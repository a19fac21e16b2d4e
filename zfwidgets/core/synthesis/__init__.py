"""Images made by the network, in one small package with one extension point per module.

- :mod:`.classic`: the lecture's method: gradient ascent on pixels with Yosinski's priors
  (:func:`ascend`), feature inversion (:func:`invert`), DeepDream (:func:`dream`), one loop
  (:func:`optimise`); the priors live in :mod:`.regularisers`.
- Feature visualisation as Lucid does it (Olah et al., Distill 2017): :mod:`.parametrisations`
  (:class:`Pixels`, :class:`Fourier`), :mod:`.transforms` (:func:`standard`),
  :mod:`.objectives` (``+ - *``: :func:`channel`, :func:`neuron`, :func:`direction`,
  :func:`deepdream`, :func:`inversion`, :func:`diversity`, :func:`class_score`) and
  :mod:`.loop` (:func:`visualise`).
- :func:`robustness`: the mean class probability over random views of a picture.

Every name is importable from ``zfwidgets.core.synthesis``.

Example:
    >>> from zfwidgets import demo, Inspector
    >>> insp = Inspector(demo.load().model, device="cpu")
    >>> v = visualise(insp, channel("conv2", 3), Fourier((1, 28, 28)), steps=4)
    >>> v.name, tuple(v.images.shape)
    ('channel(conv2:3)', (1, 1, 28, 28))
"""

from zfwidgets.core.synthesis.classic import (
    Synthesis,
    SynthesisCancelled,
    SynthesisDiverged,
    ascend,
    bounds_for,
    dream,
    input_shape,
    invert,
    objective_gradient,
    optimise,
    picture,
)
from zfwidgets.core.synthesis.loop import Visualisation, bind, gradient, visualise
from zfwidgets.core.synthesis.objectives import (
    ClassScore,
    Objective,
    Unit,
    as_objective,
    channel,
    class_score,
    deepdream,
    direction,
    diversity,
    gram_similarity,
    inversion,
    neuron,
    unit,
)
from zfwidgets.core.synthesis.parametrisations import (
    IMAGENET_COLOUR_SQRT,
    Fourier,
    Parametrisation,
    Pixels,
    colour_matrix,
    from_spectrum,
    spectrum_scale,
    to_spectrum,
)
from zfwidgets.core.synthesis.regularisers import (
    clip_small_contribution,
    clip_small_values,
    gaussian_blur,
    jitter_offsets,
    total_variation,
)
from zfwidgets.core.synthesis.robust import random_view, robustness, view_params
from zfwidgets.core.synthesis.transforms import Compose, Jitter, Pad, Rotate, Scale, standard

__all__ = [
    "IMAGENET_COLOUR_SQRT",
    "ClassScore",
    "Compose",
    "Fourier",
    "Jitter",
    "Objective",
    "Pad",
    "Parametrisation",
    "Pixels",
    "Rotate",
    "Scale",
    "Synthesis",
    "SynthesisCancelled",
    "SynthesisDiverged",
    "Unit",
    "Visualisation",
    "as_objective",
    "ascend",
    "bind",
    "bounds_for",
    "channel",
    "class_score",
    "clip_small_contribution",
    "clip_small_values",
    "colour_matrix",
    "deepdream",
    "direction",
    "diversity",
    "dream",
    "from_spectrum",
    "gaussian_blur",
    "gradient",
    "gram_similarity",
    "input_shape",
    "inversion",
    "invert",
    "jitter_offsets",
    "neuron",
    "objective_gradient",
    "optimise",
    "picture",
    "random_view",
    "robustness",
    "spectrum_scale",
    "standard",
    "to_spectrum",
    "total_variation",
    "unit",
    "view_params",
    "visualise",
]
