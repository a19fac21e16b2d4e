"""Issue 30, round 3 (part B): the engine's refusals say what was given, what is allowed and
what to do, and the inputs that used to give silently wrong numbers are refused or read right.

References are independent: the model's own forward (softmax of ``model(x)``), the same network
written with ``F.max_pool2d``, and hand-built bad inputs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from zfwidgets import Inspector
from zfwidgets.core.correspondence import correspondence
from zfwidgets.core.gradcam import gradcam
from zfwidgets.core.graph import UnsupportedModelError
from zfwidgets.core.invariance import MAX_STEPS, amounts, invariance_curves
from zfwidgets.core.mining import mine
from zfwidgets.core.preprocess import Preprocessing
from zfwidgets.core.top_views import top_projections
from zfwidgets.core.trust.maps import class_map
from zfwidgets.core.trust.randomise import cascade
from zfwidgets.core.trust.similarity import spearman


class Body(nn.Module):
    """Conv, then ``body(x)``, then a linear head (its size found from a 16 x 16 input)."""

    def __init__(self, body, **modules) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = body
        self.conv = nn.Conv2d(1, 4, 3)
        for name, m in modules.items():
            setattr(self, name, m)
        self.fc = nn.LazyLinear(3)
        self.eval()
        self(torch.zeros(1, 1, 16, 16))

    def forward(self, x):
        return self.fc(self.body(self, self.conv(x)).flatten(1))


def image(side: int = 16) -> torch.Tensor:
    return torch.rand(1, side, side, generator=torch.Generator().manual_seed(3))


def one_line_with_advice(message: str) -> None:
    assert "\n" not in message
    assert any(word in message for word in ("pass ", "give ", "use ", "call ")), message


# ----- the graph reader --------------------------------------------------------------------


def test_torch_max_pool2d_is_read_as_the_max_pool_it_is():
    plain = Inspector(Body(lambda m, x: torch.max_pool2d(F.relu(x), 2)), device="cpu")
    ref = Inspector(Body(lambda m, x: F.max_pool2d(F.relu(x), 2)), device="cpu")
    x = image()
    assert plain.no_rule_reason() is None
    with torch.no_grad():
        want = torch.softmax(plain.model(x[None]), dim=1)[0]
    assert torch.allclose(plain.predict(x), want, atol=1e-6)
    for method in ("deconvnet", "guided"):
        assert torch.equal(
            plain.project(x, "fc", 1, method=method), ref.project(x, "fc", 1, method=method)
        )


@pytest.mark.parametrize(
    "body, modules, step",
    [
        (lambda m, x: F.adaptive_max_pool2d(F.relu(x), 4), {}, "adaptive_max_pool2d"),
        (lambda m, x: m.pool(F.relu(x).flatten(2)), {"pool": nn.MaxPool1d(2)}, "MaxPool1d"),
    ],
)
def test_a_max_pool_without_a_rule_is_refused_without_contradiction(body, modules, step):
    insp = Inspector(Body(body, **modules), device="cpu")
    with pytest.raises(UnsupportedModelError) as info:
        insp.project(image(), "conv", 0)
    message = str(info.value)
    # names the step, says which pools have a rule (so it cannot read as "pools have none")
    assert f"({step}) has no rectifier rule" in message
    assert "2-D max pooling with fixed windows (nn.MaxPool2d, F.max_pool2d" in message
    assert "use method='saliency'" in message
    one_line_with_advice(message)
    assert insp.project(image(), "conv", 0, method="saliency").shape == (1, 16, 16)


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)

    def forward(self, x, y):
        return self.conv(x) + self.conv(y)


class Constant(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 3)

    def forward(self, x):
        return self.fc(torch.ones(1, 3))


@pytest.mark.parametrize(
    "model, given",
    [
        (TwoInputs(), "second input 'y'"),
        (nn.Sequential(nn.ReLU(), nn.Flatten()), "has no Conv2d or Linear layer"),
        (Constant(), "does not depend on its input"),
        (nn.Sequential(nn.Conv1d(1, 2, 3), nn.Flatten(), nn.Linear(28, 3)), "is a Conv1d"),
        (nn.Sequential(nn.Conv3d(1, 2, 3), nn.Flatten(), nn.Linear(28, 3)), "is a Conv3d"),
    ],
)
def test_graph_refusals_say_what_to_do(model, given):
    with pytest.raises(UnsupportedModelError) as info:
        Inspector(model, device="cpu")
    assert given in str(info.value)
    one_line_with_advice(str(info.value))


class ChannelAttention(nn.Module):
    """ECA-style: a Conv1d over the channel descriptor, inside an image model (allowed)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.eca = nn.Conv1d(1, 1, 3, padding=1)
        self.fc = nn.Linear(4 * 14 * 14, 3)

    def forward(self, x):
        x = F.relu(self.conv(x))
        w = torch.sigmoid(self.eca(x.mean((2, 3))[:, None, :]))[:, 0, :, None, None]
        return self.fc((x * w).flatten(1))


def test_a_conv1d_inside_an_image_model_is_read():
    torch.manual_seed(0)
    model = ChannelAttention().eval()
    x = image()
    with torch.no_grad():
        want = torch.softmax(model(x[None]), dim=1)[0]
    assert torch.allclose(Inspector(model, device="cpu").predict(x), want, atol=1e-6)


def test_a_head_of_1x1_maps_gives_probabilities_over_the_classes():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 16)).eval()  # (N, 3, 1, 1) scores
    x = image()
    with torch.no_grad():
        want = torch.softmax(model(x[None]).flatten(1), dim=1)[0]
    got = Inspector(model, device="cpu").predict(x)
    assert got.shape == (3,) and torch.allclose(got, want, atol=1e-6)
    assert not torch.allclose(got, torch.ones(3))  # the old softmax over a size-1 axis


def test_an_output_of_maps_has_no_class_probabilities():
    model = nn.Sequential(nn.Conv2d(1, 3, 15)).eval()  # (N, 3, 2, 2): not one score per class
    insp = Inspector(model, device="cpu")
    with pytest.raises(ValueError, match=r"shape \(3, 2, 2\), not one score per class"):
        insp.predict(image())
    assert insp.project(image(), "0", 0, method="saliency").shape == (1, 16, 16)


# ----- messages in the caller's words ------------------------------------------------------


def test_empty_layers_are_refused_in_the_callers_words(d, insp):
    for call in (
        lambda: mine(insp, d.dataset.images[:4], [], progress=False),
        lambda: correspondence(insp, [d.dataset[0][0]] * 2, [(0, 0)] * 2, 5, []),
        lambda: insp.run_batch(d.dataset.images[:2], []),
    ):
        with pytest.raises(ValueError) as info:
            call()
        assert "layers is empty" in str(info.value) and "run_batch" not in str(info.value)


def test_layer_given_as_an_index_names_the_layer(insp, d):
    with pytest.raises(TypeError, match=r"insp.layers\[2\] is 'features.2'"):
        insp.project(d.dataset[0][0], 2, 0)


def test_gradcam_on_a_linear_layer_lists_the_layers_with_maps(insp, d):
    x = d.dataset[0][0]
    with pytest.raises(ValueError) as info:
        gradcam(insp, x, "fc4")
    last = insp.map_layers(tuple(x.shape))[-1]
    assert "give one of" in str(info.value) and last in str(info.value)


def test_top_views_with_too_little_data_are_refused(d, insp):
    top = mine(insp, d.dataset.images[:40], ["conv1"], progress=False)
    with pytest.raises(ValueError, match="data has 10 images but these results were mined over 40"):
        top_projections(insp, top, d.dataset.images[:10], "conv1", 0)
    assert len(top_projections(insp, top, d.dataset.images[:50], "conv1", 0)) == 9


# ----- arguments that used to give numbers that mean nothing -------------------------------


def test_invariance_refuses_non_finite_amounts_and_mixed_sizes(insp, d):
    x = d.dataset[0][0]
    with pytest.raises(ValueError, match="amounts must be finite"):
        invariance_curves(insp, [x], None, "rotate", [0.0, float("nan")])
    with pytest.raises(ValueError, match="images must all have one shape"):
        invariance_curves(insp, [x, F.pad(x, (1, 1, 1, 1))], None, "rotate", [0.0])
    with pytest.raises(ValueError, match=f"give 1..{MAX_STEPS}"):
        amounts("rotate", -90, 90, 10**9)  # used to allocate 8 GB and be killed
    with pytest.raises(ValueError, match="finite"):
        amounts("rotate", float("nan"), 90, 3)
    assert MAX_STEPS <= len(amounts("rotate", -90, 90, MAX_STEPS)) <= MAX_STEPS + 1  # + identity


def test_correspondence_refuses_an_empty_mask_or_no_draws(insp, d):
    two = [d.dataset[0][0], d.dataset[1][0]]
    with pytest.raises(ValueError, match="draws must be a positive int"):
        correspondence(insp, two, [(0, 0)] * 2, 5, ["conv1"], draws=0)
    with pytest.raises(ValueError, match="mask size must be a positive int"):
        correspondence(insp, two, [(0, 0)] * 2, 0, ["conv1"])
    with pytest.raises(ValueError, match="give 1..28"):
        correspondence(insp, two, [(0, 0)] * 2, 29, ["conv1"])
    with pytest.raises(ValueError, match="row in 0..23 and column in 0..23"):
        correspondence(insp, two, [(24, 0)] * 2, 5, ["conv1"])
    got = correspondence(insp, two, [(3, 3)] * 2, 5, ["conv1"], draws=2)
    assert np.isfinite([got[0].part, got[0].random_mean]).all()


def test_trust_arguments(insp, d):
    x = d.dataset[0][0]
    with pytest.raises(ValueError, match="maps have NaN or infinite values"):
        spearman(np.array([1.0, np.nan, 3.0]), np.array([1.0, 2.0, 3.0]))
    assert spearman(np.array([1.0, 2.0, 3.0]), np.array([3.0, 2.0, 1.0])) == -1.0
    with pytest.raises(ValueError, match="methods is empty"):
        cascade(insp, x, [])
    with pytest.raises(ValueError, match="occluder size must be a positive int; got 0"):
        class_map(insp, x, "occlusion", occluder=(0, 1))  # was silently the default size


def test_preprocessing_messages_say_what_to_give():
    for kwargs, words in [
        ({"std": (float("nan"), 1.0, 1.0)}, "give finite numbers"),
        ({"std": (0.0, 1.0, 1.0)}, "use 1 for channels"),
        ({"mean": (0.5, 0.5)}, "give one number per channel or one for all"),
        ({"mean": (0.5, 0.5, 0.5), "channels": 1}, "or channels=3 for an RGB model"),
    ]:
        with pytest.raises(ValueError, match=words):
            Preprocessing(**kwargs)
