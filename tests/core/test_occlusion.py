"""Occlusion sweeps against a brute-force loop over the user's own model; correspondence
analysis on cases with known answers."""

from __future__ import annotations

import pytest
import torch
from models import zf_like
from torch import nn

from zfwidgets import Inspector
from zfwidgets.core.correspondence import consistency, correspondence
from zfwidgets.core.occlusion import OcclusionCancelled, occlude, occlusion_at, occlusion_sweep


@pytest.fixture(scope="module")
def setup():
    model = zf_like()
    x = torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(0))
    return model, Inspector(model, device="cpu"), x


@pytest.mark.parametrize("size, stride, fill", [(8, 4, 0.0), (5, 3, 0.5), (32, 1, 0.0)])
def test_sweep_equals_brute_force_loop(setup, size, stride, fill):
    model, insp, x = setup
    maps = occlusion_sweep(insp, x, size, stride, fill=fill, target=2, layer="conv2", batch_size=7)
    n = (32 - size) // stride + 1
    assert maps.target_prob.shape == maps.activity.shape == maps.top_class.shape == (n, n)
    assert maps.ys == list(range(0, 32 - size + 1, stride))
    feats = {}
    model[6].register_forward_hook(lambda m, i, o: feats.__setitem__("a", o))
    with torch.no_grad():
        base = model(x[None])
        channel = int(feats["a"][0].flatten(1).amax(1).argmax())
        assert maps.channel == channel
        for i, y in enumerate(maps.ys):
            for j, x0 in enumerate(maps.xs):
                occluded = x.clone()
                occluded[:, y : y + size, x0 : x0 + size] = fill
                probs = torch.softmax(model(occluded[None])[0], 0)
                assert abs(maps.target_prob[i, j] - probs[2]) <= 1e-5
                assert int(maps.top_class[i, j]) == int(probs.argmax())
                assert abs(maps.top_prob[i, j] - probs.max()) <= 1e-5
                total = feats["a"][0, channel].sum()
                assert abs(maps.activity[i, j] - total) <= 1e-4 * max(1.0, abs(float(total)))
    assert abs(maps.base_prob - torch.softmax(base[0], 0)[2]) <= 1e-6
    assert torch.allclose(maps.projection, insp.project(x, "conv2", channel))


def test_single_position_matches_the_sweep(setup):
    _, insp, x = setup
    maps = occlusion_sweep(insp, x, 8, 4, target=1)
    reading = occlusion_at(insp, x, maps.ys[2], maps.xs[3], 8, target=1, channel=maps.channel)
    assert abs(reading.target_prob - maps.target_prob[2, 3]) <= 1e-6
    assert abs(reading.activity - maps.activity[2, 3]) <= 1e-4
    assert reading.top_classes[0] == int(maps.top_class[2, 3]) and len(reading.top_classes) == 5
    assert reading.top_probs == sorted(reading.top_probs, reverse=True)


def test_a_model_that_reads_one_region_is_most_sensitive_there():
    """Output = sum of pixels 10..13 x 20..23 through a ReLU: covering exactly that block with
    zeros gives the minimum, and positions not touching it change nothing."""
    conv = nn.Conv2d(1, 1, 32, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 10:14, 20:24] = 1.0
    head = nn.Linear(1, 2, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0], [-1.0]]))
    model = nn.Sequential(conv, nn.ReLU(), nn.Flatten(), head).eval()
    x = torch.ones(1, 32, 32)
    maps = occlusion_sweep(Inspector(model, device="cpu"), x, size=4, stride=1, target=0, layer="0")
    flat = int(maps.target_prob.argmin())
    assert divmod(flat, len(maps.xs)) == (10, 20)
    assert maps.target_prob[0, 0] == maps.base_prob  # far away: no change
    assert maps.activity[10, 20] == 0 and maps.activity[0, 0] == 16


def test_bad_occluders(setup):
    _, insp, x = setup
    with pytest.raises(ValueError, match="larger than the image"):
        occlusion_sweep(insp, x, 40, 4)
    with pytest.raises(ValueError, match="stride must be a positive int"):
        occlusion_sweep(insp, x, 4, 0)
    with pytest.raises(ValueError, match="out of range: 0..4"):
        occlusion_sweep(insp, x, 4, 4, target=7)
    with pytest.raises(ValueError, match="leaves the 32x32 image"):
        occlusion_at(insp, x, 30, 0, 8)
    with pytest.raises(OcclusionCancelled):
        occlusion_sweep(insp, x, 4, 1, batch_size=10, should_stop=lambda: True)


def test_occlude_fills_only_the_square():
    x = torch.zeros(2, 6, 6)
    out = occlude(x, 1, 2, 3, fill=torch.tensor([5.0, 7.0]))
    assert out[0, 1:4, 2:5].eq(5).all() and out[1, 1:4, 2:5].eq(7).all()
    assert out.sum() == 9 * 12 and x.sum() == 0


def test_consistency_known_answers():
    same = torch.randn(1, 1000).repeat(5, 1)
    assert consistency(same) == 0.0
    rng = torch.Generator().manual_seed(0)
    random = torch.randn(5, 20000, generator=rng)
    assert abs(consistency(random) - 0.5) < 0.01
    opposite = torch.stack([torch.ones(10), -torch.ones(10)])
    assert consistency(opposite) == 1.0
    with pytest.raises(ValueError, match="at least 2 images"):
        consistency(torch.ones(1, 4))


def test_correspondence_identical_images_masked_identically_give_zero(setup):
    _, insp, x = setup
    images = [x, x.clone(), x.clone()]
    results = correspondence(insp, images, [(8, 8)] * 3, size=6, layers=["conv1", "fc3"], draws=4)
    assert [r.layer for r in results] == ["conv1", "fc3"]
    for r in results:
        assert r.part == 0.0 and r.random_mean == 0.0  # identical images: identical changes
    different = [
        torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(s)) for s in range(4)
    ]
    res = correspondence(insp, different, [(4, 4)] * 4, size=8, layers=["conv2"], draws=5)[0]
    assert 0 < res.part < 1 and 0 < res.random_mean < 1 and res.random_std >= 0
    with pytest.raises(ValueError, match="3 images but 2 mask corners"):
        correspondence(insp, images, [(0, 0)] * 2, size=4, layers=["conv1"])
