"""Gradient ascent, inversion and DeepDream against autograd on the real model and by effect."""

from __future__ import annotations

import copy

import pytest
import torch
import torchvision
from test_model_untouched import _assert_same, _state

from zfwidgets import Inspector, demo
from zfwidgets.core.synthesis import (
    SynthesisCancelled,
    ascend,
    bounds_for,
    class_score,
    dream,
    invert,
    objective_gradient,
    unit,
)
from zfwidgets.zoo.residual import SmallResNet


@pytest.fixture(scope="module")
def digits():
    d = demo.load()
    return d, Inspector(d.model, device="cpu"), bounds_for(d.mean)


def _random(shape, seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def test_class_visualisations_of_the_demo_are_classified_as_their_class(digits):
    d, insp, bounds = digits
    for c in range(10):
        s = ascend(insp, class_score(c), shape=(1, 28, 28), steps=60, lr=0.1, bounds=bounds,
                   progress=False)  # fmt: skip
        assert int(d.model.eval()(s.image[None]).argmax()) == c
        assert s.image.shape == (1, 28, 28) and len(s.objective) == 60


def test_ascent_raises_the_objective_well_above_a_random_images(digits):
    d, insp, bounds = digits
    objective = unit("conv2", 3)
    noise = [objective_gradient(insp, objective, 0.3 * _random((1, 28, 28), k))[0]
             for k in range(20)]  # fmt: skip
    s = ascend(insp, objective, shape=(1, 28, 28), steps=60, start="random", bounds=bounds,
               progress=False)  # fmt: skip
    spread = torch.tensor(noise)
    assert s.objective[-1] > spread.max() + 5 * spread.std()
    assert s.objective[-1] > s.objective[0]


def test_inversion_distance_falls_by_an_order_of_magnitude_at_every_block(digits):
    d, insp, bounds = digits
    image = d.dataset[0][0]
    for layer in insp.blocks:
        s = invert(insp, image, layer, steps=100, bounds=bounds, progress=False)
        assert s.objective[-1] < 0.1 * s.objective[0], layer


def test_dream_raises_its_objective(digits):
    d, insp, bounds = digits
    s = dream(insp, d.dataset[1][0], "conv2", octaves=2, octave_scale=1.2, steps=10,
              bounds=bounds, progress=False)  # fmt: skip
    assert s.objective[-1] > 1.5 * s.objective[0]
    assert s.image.shape == (1, 28, 28)


def test_every_synthesis_is_deterministic_for_a_seed(digits):
    d, insp, bounds = digits
    runs = [
        lambda seed: ascend(insp, unit("conv1", 1), shape=(1, 28, 28), steps=8, jitter=2,
                            start="random", seed=seed, progress=False),
        lambda seed: invert(insp, d.dataset[0][0], "conv2", steps=8, seed=seed, progress=False),
        lambda seed: dream(insp, d.dataset[0][0], "conv2", octaves=2, steps=4, seed=seed,
                           progress=False),
    ]  # fmt: skip
    for run in runs:
        a, b, other = run(3), run(3), run(4)
        assert torch.equal(a.image, b.image) and a.objective == b.objective
        assert not torch.equal(a.image, other.image)


def _real_gradient(model, objective, x, layer_module=None, channel=None):
    """d objective / d x by torch autograd on a deep copy of the user's model, run normally."""
    mine = copy.deepcopy(model).eval()
    for m in mine.modules():  # an in-place ReLU after the hooked layer would overwrite its output
        if getattr(m, "inplace", False):
            m.inplace = False
    x = x[None].clone().requires_grad_()
    if layer_module is None:
        value = mine(x)[0, objective]
    else:
        got = {}
        handle = dict(mine.named_modules())[layer_module].register_forward_hook(
            lambda m, i, o: got.setdefault("out", o)
        )
        mine(x)
        handle.remove()
        value = got["out"][0, channel].mean()
    value.backward()
    return x.grad[0]


GRAPH_CASES = [
    ("demo", lambda: demo.load().model, (1, 28, 28), "features.4"),
    ("small_resnet", lambda: SmallResNet(), (1, 28, 28), "layer2.0.conv1"),
    ("resnet18", lambda: torchvision.models.resnet18(weights=None), (3, 64, 64), "layer3.0.conv2"),
]


@pytest.mark.parametrize("name,make,shape,layer", GRAPH_CASES, ids=[c[0] for c in GRAPH_CASES])
def test_gradients_equal_autograd_on_the_real_model(name, make, shape, layer):
    torch.manual_seed(0)
    model = make()
    insp = Inspector(model, device="cpu")
    x = _random(shape, 1)
    if layer not in dict(model.named_modules()):
        layer = insp.layers[len(insp.layers) // 2]
    _, mine = objective_gradient(insp, class_score(2), x)
    torch.testing.assert_close(mine, _real_gradient(model, 2, x), rtol=1e-4, atol=1e-6)
    _, mine = objective_gradient(insp, unit(layer, 1), x)
    reference = _real_gradient(model, None, x, layer_module=layer, channel=1)
    torch.testing.assert_close(mine, reference, rtol=1e-4, atol=1e-6)


def test_the_users_model_is_untouched():
    model = SmallResNet().train()
    first = next(model.parameters())
    first.grad = torch.ones_like(first)
    before = _state(model)
    insp = Inspector(model, device="cpu")
    image = _random((1, 28, 28))
    ascend(insp, class_score(1), shape=(1, 28, 28), steps=3, progress=False)
    invert(insp, image, insp.blocks[1], steps=3, progress=False)
    dream(insp, image, insp.blocks[1], octaves=2, steps=2, progress=False)
    _assert_same(before, _state(model))


def test_progress_callback_live_images_and_cancel(digits):
    _, insp, _ = digits
    calls, images = [], []
    s = ascend(insp, class_score(0), shape=(1, 28, 28), steps=6, progress=False,
               callback=lambda done, total: calls.append((done, total)), every=2,
               on_image=lambda step, img, got: images.append((step, img.shape, len(got))),
               )  # fmt: skip
    assert calls == [(k, 6) for k in range(1, 7)] and len(s.objective) == 6
    assert images == [(k, (1, 28, 28), k) for k in (2, 4, 6)]
    with pytest.raises(SynthesisCancelled, match="after 2 of 50"):
        ascend(insp, class_score(0), shape=(1, 28, 28), steps=50, progress=False,
               should_stop=lambda: len(calls) >= 8,
               callback=lambda d, t: calls.append(d))  # fmt: skip


def test_dream_counts_progress_over_all_octaves(digits):
    d, insp, _ = digits
    calls, images = [], []
    s = dream(insp, d.dataset[0][0], "conv2", octaves=2, steps=3, progress=False, every=3,
              callback=lambda done, total: calls.append((done, total)),
              on_image=lambda step, img, got: images.append((step, len(got))))  # fmt: skip
    assert calls == [(k, 6) for k in range(1, 7)] and len(s.objective) == 6
    assert images == [(3, 3), (6, 6)]


def test_bad_input_is_refused_with_a_clear_message(digits):
    d, insp, _ = digits
    with pytest.raises(ValueError, match="target class 10 is out of range"):
        ascend(insp, class_score(10), shape=(1, 28, 28), steps=2, progress=False)
    with pytest.raises(ValueError, match="unknown layer 'conv9'"):
        ascend(insp, unit("conv9", 0), shape=(1, 28, 28), steps=2, progress=False)
    with pytest.raises(ValueError, match="channel 999 is out of range"):
        ascend(insp, unit("conv1", 999), shape=(1, 28, 28), steps=2, progress=False)
    with pytest.raises(ValueError, match="give shape"):
        ascend(insp, class_score(0), steps=2, progress=False)
    with pytest.raises(ValueError, match="steps must be a positive int"):
        invert(insp, d.dataset[0][0], "conv1", steps=0, progress=False)
    with pytest.raises(ValueError, match="start must be"):
        ascend(insp, class_score(0), shape=(1, 28, 28), start="ones", progress=False)
    with pytest.raises(ValueError, match="clip_value must be a fraction"):
        ascend(insp, class_score(0), shape=(1, 28, 28), clip_value=2, progress=False)
    with pytest.raises(TypeError, match="objective must be"):
        ascend(insp, 3, shape=(1, 28, 28), progress=False)


def test_regularisers_shrink_and_smooth_the_image(digits):
    _, insp, _ = digits
    kw = dict(shape=(1, 28, 28), steps=30, start="random", progress=False)
    plain = ascend(insp, class_score(3), l2=0, blur_every=0, jitter=0, **kw).image
    clipped = ascend(insp, class_score(3), l2=0, blur_every=0, jitter=0, clip_value=0.5, **kw)
    assert (clipped.image == 0).float().mean() >= 0.5 > (plain == 0).float().mean()
    blurred = ascend(insp, class_score(3), l2=0, blur_every=1, blur_sigma=1.0, jitter=0, **kw)

    def roughness(img):
        return float((img[..., 1:] - img[..., :-1]).abs().mean())

    assert roughness(blurred.image) < roughness(plain)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_gives_the_cpu_result(digits):
    d, _, bounds = digits
    on_gpu = Inspector(d.model, device="cuda")
    x = _random((1, 28, 28), 2)
    for objective in (class_score(4), unit("conv2", 3)):
        cpu_value, cpu_grad = objective_gradient(digits[1], objective, x)
        gpu_value, gpu_grad = objective_gradient(on_gpu, objective, x)
        torch.testing.assert_close(gpu_grad, cpu_grad, rtol=1e-4, atol=1e-5)
    for run in (
        lambda insp: ascend(insp, class_score(4), shape=(1, 28, 28), steps=10, bounds=bounds,
                            progress=False),
        lambda insp: invert(insp, d.dataset[0][0], "conv2", steps=10, bounds=bounds,
                            progress=False),
        lambda insp: dream(insp, d.dataset[0][0], "conv2", octaves=2, steps=5, bounds=bounds,
                           progress=False),
    ):  # fmt: skip
        cpu, gpu = run(digits[1]), run(on_gpu)
        assert gpu.image.device.type == "cpu"
        # Adam's normalised steps let float rounding grow a little over the steps
        torch.testing.assert_close(gpu.image, cpu.image, rtol=0, atol=2e-2)


def test_dream_refuses_octaves_a_fully_connected_layer_cannot_take():
    from zfwidgets import Inspector, demo
    from zfwidgets.core.synthesis import dream

    d = demo.load()
    insp = Inspector(d.model, device="cpu")
    with pytest.raises(ValueError, match="octaves=3 shrinks the image to 14x14.*fully connected"):
        dream(insp, d.dataset[0][0], "fc4", octaves=3, steps=1)
    assert dream(insp, d.dataset[0][0], "fc4", octaves=1, steps=1).image.shape[-2:] == (28, 28)
