"""The LayerBrowser's feature visualisation beside the top 9 (issue 31): made in the background
only when asked, drawn beside the top 9, cached per weights, layer, map and settings."""

from __future__ import annotations

import copy
import io

import numpy as np
import pytest
import torch
from PIL import Image

from zfwidgets.core import synthesis as synth
from zfwidgets.widgets.layer_browser import LayerBrowser


@pytest.fixture(scope="module")
def small(d):
    return torch.stack([d.dataset[i][0] for i in range(40)])


@pytest.fixture
def calls(monkeypatch):
    made = []
    real = synth.visualise

    def counting(insp, objective, param=None, **settings):
        made.append((objective.name, param, settings))
        return real(insp, objective, param, **settings)

    monkeypatch.setattr(synth, "visualise", counting)
    return made


def _decode(value: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(value)) as picture:
        return np.asarray(picture.convert("L"))


def _browser(d, small, **state):
    return LayerBrowser(d.model, dataset=small, mean=d.mean, layer="conv2", **state)


def test_off_by_default_nothing_is_made(d, small, calls):
    b = _browser(d, small, show_top=True)
    assert b.wait(120)
    assert not b.feature_vis and b.synthesis_steps == 128
    assert b._fviz_box.layout.display == "none" and calls == []
    b.close()


def test_drawn_beside_the_top_nine_and_a_second_visit_is_instant(d, small, calls):
    b = _browser(d, small, show_top=True, synthesis_steps=8)
    assert b.wait(120) and b._top_entries is not None and calls == []
    b._fviz_toggle.value = True  # through the checkbox
    assert b.feature_vis and b.wait(120)
    assert len(calls) == 1
    name, param, settings = calls[0]
    assert name == "channel(conv2:0)" and isinstance(param, synth.Fourier)
    assert settings["steps"] == 8 and settings["transforms"] == "standard"
    assert param.shape == (1, 28, 28)
    assert b._fviz_box.layout.display == "flex" and b._fviz_box in b._top_panel.children[1].children
    picture = _decode(b._fviz_image.value)
    patches = _decode(b._top_patches.value)
    assert picture.shape[0] == pytest.approx(patches.shape[0], abs=28) and picture.std() > 0
    assert "map 0 of conv2" in b._fviz_caption.text
    first = b._fviz_image.value
    b.channel = 3
    assert b.wait(120) and len(calls) == 2 and b._fviz_image.value != first
    b.channel = 0  # revisited: from the cache, at once
    assert b.wait(120) and len(calls) == 2 and b._fviz_image.value == first
    b.synthesis_steps = 4  # other settings: made again
    assert b.wait(120) and len(calls) == 3 and len(b.visualisations) == 3
    b.close()


def test_only_while_the_top_nine_are_shown(d, small, calls):
    b = _browser(d, small, feature_vis=True, synthesis_steps=4)
    assert b.wait(120) and calls == []  # top 9 hidden: nothing made
    b.show_top = True
    assert b.wait(120) and len(calls) == 1  # mined, then drawn
    assert b.visualisations and b._fviz_image.value != b"" and "error" != b.status_line.level
    b.close()


def test_new_weights_make_a_new_picture_and_the_model_stays_bit_identical(d, small, calls):
    model = copy.deepcopy(d.model)
    before = copy.deepcopy(model.state_dict())
    b = LayerBrowser(model, dataset=small, mean=d.mean, layer="conv2", show_top=True,
                     feature_vis=True, synthesis_steps=4)  # fmt: skip
    assert b.wait(120) and len(calls) == 1
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    with torch.no_grad():
        next(model.parameters()).mul_(1.01)  # the teacher changes the weights
    b.refresh(forget_top=True)  # mined again, then a new picture for the new weights
    assert b.wait(120) and len(calls) == 2 and len(b.visualisations) == 2
    b.close()


def test_bad_steps_go_to_the_status_line(d, small):
    b = _browser(d, small, show_top=True)
    b.synthesis_steps = 0
    assert b.synthesis_steps == 128 and "synthesis_steps" in b.status
    b.close()


def test_the_column_widens_to_keep_the_picture_beside_the_pair(d, small):
    b = _browser(d, small, show_top=True, feature_vis=True, synthesis_steps=4)
    base = f"{b._right_base}px"
    assert b.wait(120) and b._right_column.layout.width != base
    b.feature_vis = False
    assert b._right_column.layout.width == base and b._fviz_box.layout.display == "none"
    b.close()
