"""Step sizes and weights of every synthesis route: non-finite or absurd values are refused
before the first step, and a run that turns non-finite stops naming the step (no NaN picture)."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from zfwidgets import Inspector
from zfwidgets.core.synthesis import (
    Fourier,
    SynthesisDiverged,
    ascend,
    class_score,
    dream,
    invert,
    visualise,
)

NAN, INF = float("nan"), float("inf")


def routes(insp, x):
    shape = tuple(x.shape)
    return {
        "ascend": lambda **kw: ascend(insp, class_score(3), shape=shape, steps=3, **kw),
        "invert": lambda **kw: invert(insp, x, "conv2", steps=3, **kw),
        "dream": lambda **kw: dream(insp, x, "conv2", steps=3, octaves=1, **kw),
        "visualise": lambda **kw: visualise(insp, class_score(3), Fourier(shape), steps=3, **kw),
    }


@pytest.mark.parametrize("route", ["ascend", "invert", "dream", "visualise"])
@pytest.mark.parametrize("lr", [NAN, INF, -INF, 1e30, 0.0, -1.0, True])
def test_bad_step_sizes_are_refused_by_every_route(d, insp, route, lr):
    run = routes(insp, d.dataset[0][0])[route]
    with pytest.raises(ValueError, match=r"lr must be a finite number in \(0, 10\]; got"):
        run(lr=lr)


@pytest.mark.parametrize(
    ("route", "name"), [("ascend", "l2"), ("invert", "tv_weight"), ("invert", "tv_beta")]
)
@pytest.mark.parametrize("value", [NAN, INF, -1.0])
def test_bad_regulariser_weights_are_refused(d, insp, route, name, value):
    # NaN used to be skipped silently (`if l2 > 0` is False for NaN): the run ignored it
    run = routes(insp, d.dataset[0][0])[route]
    with pytest.raises(ValueError, match=rf"{name} must be a finite number in \[0, 1e\+06\]"):
        run(**{name: value})


@pytest.mark.parametrize("route", ["ascend", "invert", "dream", "visualise"])
def test_a_run_that_turns_non_finite_stops_at_that_step(d, route):
    # Weights scaled by 1e30 overflow every score to inf/NaN at step 1 (a model reference:
    # the model's own output on the start image is already non-finite).
    model = copy.deepcopy(d.model)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1e30)
    x = d.dataset[0][0]
    assert not torch.isfinite(model(x[None])).all()
    run = routes(Inspector(model, device="cpu"), x)[route]
    if route == "invert":  # the target itself is not finite: refused before any step
        with pytest.raises(SynthesisDiverged, match=r"^before step 1: the features of 'conv2'"):
            run()
        return
    with pytest.raises(SynthesisDiverged, match=r"^step 1 of 3: ") as info:
        run()
    assert "lower the step size (lr)" in str(info.value)


def test_finite_runs_still_run(d, insp):
    x = d.dataset[0][0]
    for route, run in routes(insp, x).items():
        out = run(lr=10.0) if route != "dream" else run()
        image = out.images if hasattr(out, "images") else out.image
        assert torch.isfinite(image).all(), route
        assert all(
            math.isfinite(v) for v in (out.objective if hasattr(out, "objective") else out.values)
        )
