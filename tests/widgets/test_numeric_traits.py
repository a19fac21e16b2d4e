"""One rule for every widget's numeric state (WidgetBase): NaN / inf refused into the status
line (it used to recurse forever through a bound control, NaN != NaN), a value its control
clamps is reported with what was given and what was used."""

from __future__ import annotations

import pytest

from zfwidgets import OcclusionSlider
from zfwidgets.widgets.synthesis import Synthesis

NAN, INF = float("nan"), float("inf")


@pytest.fixture(scope="module")
def synthesis(d):
    w = Synthesis(d.model, images=d.dataset.images[:3])
    yield w
    w.close()


@pytest.mark.parametrize(("name", "value"), [("lr", NAN), ("steps", NAN), ("octaves", INF),
                                             ("tv_weight", -INF), ("seed", NAN)])  # fmt: skip
def test_non_finite_numbers_are_refused_into_the_status_line(synthesis, name, value):
    before = getattr(synthesis, name)
    setattr(synthesis, name, value)
    assert getattr(synthesis, name) == before
    assert synthesis.status_line.level == "error"
    assert synthesis.status == f"{name}: must be a finite number; got {value}"
    steps = 15 if synthesis.steps == 10 else 10
    synthesis.steps = steps  # still working: the next value is taken and the error cleared
    assert synthesis.steps == steps and synthesis.status_line.level != "error"


def test_a_nan_from_the_slider_itself_does_not_recurse(synthesis):
    synthesis.lr = 0.1
    synthesis._sliders["lr"].value = NAN  # what a broken front end could send
    assert synthesis.lr == 0.1 and synthesis._sliders["lr"].value == 0.1
    assert "must be a finite number; got nan" in synthesis.status


def test_a_clamped_value_says_what_was_given_and_used(synthesis):
    synthesis.lr = 1e30
    assert synthesis.lr == 1.0  # the step-size slider's top (10^0)
    assert synthesis.status == "lr: 1e+30 is outside the control's range 0.001..1; 1.0 was used"
    synthesis.octaves = 99
    assert synthesis.octaves == 5
    assert synthesis.status == "octaves: 99 is outside the control's range 1..5; 5 was used"


def test_a_non_finite_value_while_building_raises(d):
    with pytest.raises(ValueError, match="must be a finite number; got nan"):
        Synthesis(d.model, images=d.dataset.images[:3], lr=NAN)


def test_another_widget_gets_the_same_rule(d):
    s = OcclusionSlider(d.model, d.dataset[0][0], mean=d.mean)
    try:
        assert s.wait(120)
        size = s.size
        s.size = NAN
        assert s.size == size and "must be a finite number; got nan" in s.status
    finally:
        s.close()
