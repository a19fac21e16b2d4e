"""Incremental occlusion (recompute only what the occluder can change) against full forwards."""

from __future__ import annotations

import pytest
import torch
import torchvision
from models import zf_like
from torch import nn

from zfwidgets import Inspector
from zfwidgets.core.incremental import OcclusionPlan, changed_interval
from zfwidgets.core.occlusion import occlude, occlusion_sweep


def _odd_model() -> nn.Sequential:
    """Grouped, dilated and strided convs, a ceil-mode padded pool, an avg pool, no linear."""
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(2, 6, 4, stride=3, padding=2),
        nn.ReLU(),
        nn.Conv2d(6, 6, 3, padding=2, dilation=2, groups=3),
        nn.MaxPool2d(3, 2, padding=1, ceil_mode=True),
        nn.LocalResponseNorm(3),
        nn.AvgPool2d(2),
        nn.Conv2d(6, 4, 2),
    ).eval()


def _plain(model, x, corners, size, fill):
    """Every layer's output for every occluded image, through the user's own modules."""
    layers = [[] for _ in model]
    with torch.no_grad():
        for y, x0 in corners:
            h = occlude(x[None], y, x0, size, fill)
            for module, out in zip(model, layers, strict=True):
                h = module(h)
                out.append(h.clone())  # the next in-place ReLU would overwrite h
    return [torch.cat(out) for out in layers]


@pytest.mark.parametrize(
    "model_fn, shape, size, stride, fill",
    [
        (zf_like, (3, 32, 32), 8, 3, 0.0),
        (zf_like, (3, 32, 32), 5, 7, torch.tensor([0.1, -0.2, 0.3])),
        (zf_like, (3, 32, 32), 32, 1, 0.5),
        (_odd_model, (2, 41, 37), 6, 5, "image"),
        (_odd_model, (2, 41, 37), 1, 9, 0.0),
    ],
)
def test_every_layer_equals_a_full_forward(model_fn, shape, size, stride, fill):
    model = model_fn()
    insp = Inspector(model, device="cpu")
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(2))
    if isinstance(fill, str):  # a per-pixel fill image (e.g. a blurred copy)
        fill = torch.randn(*shape, generator=torch.Generator().manual_seed(3))
    ys = range(0, shape[1] - size + 1, stride)
    xs = range(0, shape[2] - size + 1, stride)
    corners = [(y, x0) for y in ys for x0 in xs]
    plan = OcclusionPlan(insp.graph, insp.current_weights(), x[None], size, corners)
    plain = _plain(model, x, corners, size, fill)
    watch = {index: 1 for index in range(len(insp.chain))}  # channel 1 of every layer
    totals, out = plan.run(range(len(corners)), fill, watch)
    for index, ref in enumerate(plain):
        ref = ref[:, 1]
        ref_total = ref.flatten(1).sum(1) if ref.ndim > 1 else ref
        assert torch.allclose(totals[index], ref_total, atol=1e-4, rtol=1e-4), insp.chain[index]
    assert torch.allclose(out, plain[-1], atol=1e-5)


def test_changed_interval_by_hand():
    # 3-wide windows, stride 2, padding 1: output o reads inputs 2o-1 .. 2o+1.
    assert changed_interval(4, 4, 3, 2, 1, 1, 10) == (2, 2)
    assert changed_interval(3, 3, 3, 2, 1, 1, 10) == (1, 2)
    assert changed_interval(0, 0, 3, 2, 1, 1, 10) == (0, 0)
    # A 2-wide stride-2 window never reads input 4 when the output has only 2 units.
    assert changed_interval(4, 4, 2, 2, 0, 1, 2) is None


def test_boxes_are_small_early_and_whole_after_flatten():
    insp = Inspector(zf_like(), device="cpu")
    plan = OcclusionPlan(insp.graph, insp.current_weights(), torch.zeros(1, 3, 32, 32), 4, [(0, 0)])
    fractions = plan.box_fraction()
    # conv 5x5, stride 2, pad 2: output o reads 2o-2..2o+2, so pixels 0..3 reach o = 0..2.
    assert fractions[0] == (3 / 16) ** 2
    assert fractions[-1] == 1.0 and fractions[:3] == sorted(fractions[:3])


def test_sweep_incremental_equals_plain_batched_path():
    insp = Inspector(zf_like(), device="cpu")
    x = torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(4))
    fast = occlusion_sweep(insp, x, 6, 2, fill=0.3, layer="conv1", batch_size=13)
    slow = occlusion_sweep(insp, x, 6, 2, fill=0.3, layer="conv1", incremental=False)
    assert torch.allclose(fast.target_prob, slow.target_prob, atol=1e-6)
    assert torch.allclose(fast.activity, slow.activity, atol=1e-4, rtol=1e-5)
    assert torch.equal(fast.top_class, slow.top_class)


# ----- receptive-field cropping of single-unit projections -----------------------------------
def _crop_model() -> nn.Sequential:
    """Strided conv with padding, overlapping padded pool, LRN, BN, dilated conv, ceil pool."""
    torch.manual_seed(5)
    model = nn.Sequential(
        nn.Conv2d(3, 5, 5, stride=3, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(3, 2, padding=1),
        nn.LocalResponseNorm(3),
        nn.Conv2d(5, 6, 3, padding=2, dilation=2),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.MaxPool2d(2, 2, ceil_mode=True),
        nn.Conv2d(6, 4, 2),
        nn.ReLU(),
    )
    model[5].running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.mark.parametrize("method", ["deconvnet", "guided", "saliency"])
def test_cropped_unit_projection_equals_autograd_and_full_pass(method):
    from reference import Reference

    from zfwidgets.core.backward import backward

    model = _crop_model()
    insp = Inspector(model, device="cpu")
    ref = Reference(model, method)
    x = torch.randn(3, 45, 39, generator=torch.Generator().manual_seed(6))
    for layer, name in (("conv1", "1"), ("2", "2"), ("conv2", "6"), ("conv3", "9")):
        index = insp.layer_index(layer)
        act = insp.activations(x, layer)
        for c in range(0, act.shape[0], 2):
            h, w = act.shape[-2:]
            for y, x0 in {(0, 0), (h - 1, w - 1), (h // 2, w // 3), (0, w - 1)}:
                if act[c, y, x0] == 0:
                    continue
                ours = insp.project(x, layer, c, position=(y, x0), method=method)
                expected, _ = ref.project(x, name, c, (y, x0))
                assert torch.allclose(ours, expected, atol=1e-6), (layer, c, y, x0)
                rec = insp.record(x, [layer])
                top = insp.top_signals(rec.outputs[index], [c], [(y, x0)], name)
                full = backward(insp.chain, insp.current_weights(), rec, top, index, method)
                assert torch.allclose(ours, full[0], atol=1e-6)


def test_cropped_batches_mix_units_maps_and_images():
    insp = Inspector(_crop_model(), device="cpu")
    g = torch.Generator().manual_seed(7)
    images = [torch.randn(3, 45, 39, generator=g) for _ in range(3)]
    positions = [(1, 1), None, "max"]
    batch = insp.project_units(images, "conv2", [0, 1, 2], positions)
    for k in range(3):
        single = insp.project(images[k], "conv2", k, position=positions[k])
        assert torch.allclose(batch[k], single, atol=1e-6)
    many = insp.project_many(images[0], "conv2", [3, 3, 0], [(0, 0), None, (2, 1)])
    for k, (c, p) in enumerate([(3, (0, 0)), (3, None), (0, (2, 1))]):
        assert torch.allclose(many[k], insp.project(images[0], "conv2", c, position=p), atol=1e-6)


@pytest.mark.parametrize(
    "name, side, size, stride",
    [("resnet18", 112, 28, 14), ("resnet18", 112, 32, 8), ("densenet121", 64, 16, 8)],
)
def test_graph_occlusion_equals_plain_passes(name, side, size, stride):
    """Through residual additions and concatenations (boxes joined where branches meet, some
    inputs read both boxed and whole) the incremental maps equal one forward per position."""
    torch.manual_seed(0)
    insp = Inspector(getattr(torchvision.models, name)(weights=None).eval(), device="cpu")
    x = torch.randn(3, side, side)
    fast = occlusion_sweep(insp, x, size, stride)
    plain = occlusion_sweep(insp, x, size, stride, incremental=False)
    scale = float(plain.activity.abs().max())
    assert float((fast.activity - plain.activity).abs().max()) <= 1e-5 * scale
    torch.testing.assert_close(fast.target_prob, plain.target_prob, atol=1e-6, rtol=0)
    plan = OcclusionPlan(insp.graph, insp.current_weights(), insp.image(x), size, [(0, 0)])
    assert min(plan.box_fraction()) < 0.5  # the early layers really are recomputed by parts


# ----- every module option honoured or sent whole -----------------------------------------


def _options_model(layer: nn.Module, channels: int = 4) -> nn.Sequential:
    torch.manual_seed(5)
    return nn.Sequential(
        nn.Conv2d(2, channels, 3, padding=1),
        nn.ReLU(),
        layer,
        nn.Conv2d(channels, 3, 3),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(12, 5),
    ).eval()


@pytest.mark.parametrize(
    "layer",
    [
        nn.AvgPool2d(3, 2, divisor_override=3),
        nn.AvgPool2d(2, divisor_override=1),
        nn.AvgPool2d(3, 2, padding=1, count_include_pad=False),
        nn.AvgPool2d(3, 2, padding=1, count_include_pad=True, ceil_mode=True),
        nn.AvgPool2d(3, 2, ceil_mode=True),
        nn.MaxPool2d(3, 2, padding=1, dilation=2, ceil_mode=True),
        nn.Conv2d(4, 4, 3, padding=2, dilation=2, groups=2),
        nn.Conv2d(4, 4, 3, padding="same", dilation=2),
        nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"),
        nn.Conv2d(4, 4, 3, padding=1, padding_mode="circular"),
        nn.Conv2d(4, 4, 3, padding=1, padding_mode="replicate"),
    ],
    ids=repr,
)
def test_every_pool_and_conv_option_equals_the_plain_path(layer):
    insp = Inspector(_options_model(layer), device="cpu")
    x = torch.randn(2, 23, 21, generator=torch.Generator().manual_seed(6))
    fast = occlusion_sweep(insp, x, 5, 3, fill=0.7, layer="2")
    plain = occlusion_sweep(insp, x, 5, 3, fill=0.7, layer="2", incremental=False)
    scale = float(plain.activity.abs().max())
    assert float((fast.activity - plain.activity).abs().max()) <= 1e-5 * scale
    torch.testing.assert_close(fast.target_prob, plain.target_prob, atol=1e-6, rtol=0)


def test_a_step_with_an_option_not_honoured_is_recomputed_whole():
    insp = Inspector(_options_model(nn.AvgPool2d(3, 2, divisor_override=3)), device="cpu")
    plan = OcclusionPlan(insp.graph, insp.current_weights(), torch.zeros(1, 2, 23, 21), 5, [(0, 0)])
    assert plan.box_fraction()[2] == 1.0 and plan.box_fraction()[0] < 0.5
