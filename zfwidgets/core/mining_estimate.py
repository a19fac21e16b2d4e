"""How long mining a layer would take here, from timing one small batch (an estimate).

Example:
    >>> from zfwidgets import Inspector, demo
    >>> d = demo.load()
    >>> guess = estimate_mining_seconds(Inspector(d.model), d.dataset, "conv2")
    >>> guess.images, guess.seconds > 0, guess.sample
    (1000, True, 8)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from zfwidgets.core.checks import ImageCollator
from zfwidgets.core.inspector import Inspector
from zfwidgets.core.mining import as_indexable

__all__ = ["MiningEstimate", "estimate_mining_seconds"]


@dataclass(frozen=True)
class MiningEstimate:
    """An estimate of one mining pass.

    Attributes:
        seconds: about how long mining all ``images`` would take.
        images: how many images the data set has.
        sample: how many images were timed (0 when the rate was given).
    """

    seconds: float
    images: int
    sample: int


def estimate_mining_seconds(
    insp: Inspector,
    data: Any,
    layer: str,
    sample: int = 8,
    seconds_per_image: float | None = None,
) -> MiningEstimate:
    """About how long :func:`~zfwidgets.core.mining.mine` of ``layer`` over ``data`` takes.

    With ``seconds_per_image`` (a rate measured by an earlier pass) nothing runs; otherwise
    the first ``sample`` images go through the model up to ``layer`` (after one image to warm
    up) and are timed.
    Small batches run a little slower per image than mining's, so the guess errs long.
    """
    images = as_indexable(data)
    count = len(images)
    if seconds_per_image is not None:
        return MiningEstimate(seconds_per_image * count, count, 0)
    n = max(1, min(sample, count))
    batch = ImageCollator()([images[i] for i in range(n)])
    insp.run_batch(batch[:1], [layer])  # one-off costs (filters prepared on first use) apart
    times = []
    for _ in range(2):  # the quicker of two: a busy machine's pauses are not the model's
        started = time.perf_counter()
        insp.run_batch(batch, [layer])
        times.append(time.perf_counter() - started)
    per_image = min(times) / n
    return MiningEstimate(per_image * count, count, n)
