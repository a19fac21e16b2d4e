"""Feature visualisation (Lucid's recipe): parametrisations, transforms, objectives against
autograd on a deep copy of the model, diversity, the robust class probability by hand."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from test_model_untouched import _assert_same, _state
from torch import nn
from torchvision.transforms.v2 import functional as TF

from zfwidgets import Inspector, demo
from zfwidgets.core.synthesis import (
    Compose,
    Fourier,
    Jitter,
    Pad,
    Pixels,
    Rotate,
    Scale,
    channel,
    class_score,
    colour_matrix,
    deepdream,
    direction,
    diversity,
    from_spectrum,
    gradient,
    gram_similarity,
    inversion,
    neuron,
    robustness,
    standard,
    to_spectrum,
    unit,
    visualise,
)
from zfwidgets.zoo.residual import SmallResNet


@pytest.fixture(scope="module")
def digits():
    d = demo.load()
    return d, Inspector(d.model, device="cpu")


def _rgb_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 5, 3), nn.ReLU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(20, 6),
    )  # fmt: skip


def _random(shape, seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


# ---- parametrisations ----------------------------------------------------------------------


@pytest.mark.parametrize("h,w", [(8, 8), (7, 9), (28, 28), (5, 12)])
@pytest.mark.parametrize("decay", [0.0, 1.0, 1.5])
def test_fourier_round_trip(h, w, decay):
    image = _random((2, 3, h, w))
    coeffs = to_spectrum(image, decay)
    assert coeffs.shape == (2, 3, 2, h, w // 2 + 1)
    torch.testing.assert_close(from_spectrum(coeffs, h, w, decay), image, rtol=0, atol=1e-5)


def test_fourier_image_is_in_the_models_range_and_matches_its_pixels():
    p = Fourier((3, 16, 16), batch=3, mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3), sd=1.0)
    tensors = p.init(torch.Generator().manual_seed(0))
    x, pixels = p.render(tensors), p.pixels(tensors)
    assert x.shape == (3, 3, 16, 16) and 0 <= pixels.min() <= pixels.max() <= 1
    mean, std = torch.tensor(p.mean).view(3, 1, 1), torch.tensor(p.std).view(3, 1, 1)
    torch.testing.assert_close(x * std + mean, pixels)
    # A Preprocessing gives the same numbers; a mean image counts as its channel means.
    d = demo.load()
    grey = Fourier((1, 28, 28), mean=d.mean)
    assert grey.mean == pytest.approx((float(d.mean.mean()),))


def test_decorrelation_matrix_and_its_inverse():
    m = colour_matrix(3)
    torch.testing.assert_close(m @ torch.linalg.inv(m), torch.eye(3), rtol=0, atol=1e-5)
    torch.testing.assert_close(torch.linalg.inv(m) @ m, torch.eye(3), rtol=0, atol=1e-5)
    assert float(m.norm(dim=0).max()) == pytest.approx(1.0)
    assert colour_matrix(1).tolist() == [[1.0]]
    with pytest.raises(ValueError, match="1 or 3 channels; got 2"):
        colour_matrix(2)


# ---- transforms ----------------------------------------------------------------------------

TRANSFORMS = [Jitter(3), Scale(0.8, 1.2), Rotate(15), standard(), Compose([Pad(4), Rotate(5)])]


@pytest.mark.parametrize("t", TRANSFORMS, ids=lambda t: type(t).__name__)
def test_transforms_keep_shapes_repeat_for_a_seed_and_leave_the_global_rng(t):
    x = _random((2, 3, 20, 24))
    state = torch.get_rng_state()
    a = t(x, torch.Generator().manual_seed(1))
    b = t(x, torch.Generator().manual_seed(1))
    c = t(x, torch.Generator().manual_seed(2))
    assert torch.equal(torch.get_rng_state(), state)
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)


def test_pad_grows_and_compose_without_keep_size_keeps_it():
    x = torch.zeros(1, 1, 6, 6)
    assert Pad(3)(x, torch.Generator()).shape == (1, 1, 12, 12)
    assert Compose([Pad(3)], keep_size=False)(x, torch.Generator()).shape == (1, 1, 12, 12)


def test_rotation_by_90_degrees_turns_the_image():
    x = _random((1, 1, 9, 9))

    class Quarter(Rotate):
        def matrices(self, n, generator):
            return torch.tensor([[0.0, -1.0], [1.0, 0.0]]).expand(n, 2, 2)

    turned = Quarter(90)(x, torch.Generator())
    assert torch.allclose(turned, torch.rot90(x, 1, (-2, -1)), atol=1e-5) or torch.allclose(
        turned, torch.rot90(x, -1, (-2, -1)), atol=1e-5
    )


# ---- objectives against autograd -----------------------------------------------------------


def _reference(model, layers: dict[str, str], x, formula):
    """``formula(outputs by layer name, logits)`` by autograd on a deep copy of the model."""
    mine = copy.deepcopy(model).eval()
    for m in mine.modules():
        if getattr(m, "inplace", False):
            m.inplace = False
    got, handles = {}, []
    modules = dict(mine.named_modules())
    for name, module in layers.items():
        handles.append(modules[module].register_forward_hook(
            lambda m, i, o, name=name: got.__setitem__(name, o)))  # fmt: skip
    x = x.clone().requires_grad_()
    logits = mine(x)
    for h in handles:
        h.remove()
    value = formula(got, logits)
    value.backward()
    return float(value.detach()), x.grad


def _cases(insp: Inspector, vector_len):
    v = torch.linspace(-1, 1, vector_len)

    def mod(alias):
        return insp.layer_name(alias)

    return [
        (class_score(3), {}, lambda g, out: out[:, 3].sum()),
        (channel("conv2", 5), {"a": mod("conv2")}, lambda g, out: g["a"][:, 5].mean((1, 2)).sum()),
        (neuron("conv2", 5), {"a": mod("conv2")},
         lambda g, out: g["a"][:, 5, g["a"].shape[2] // 2, g["a"].shape[3] // 2].sum()),
        (neuron("conv2", 1, (2, 3)), {"a": mod("conv2")}, lambda g, out: g["a"][:, 1, 2, 3].sum()),
        (direction("conv2", v), {"a": mod("conv2")},
         lambda g, out: (g["a"] * v.view(1, -1, 1, 1)).sum(1).mean((1, 2)).sum()),
        (deepdream("conv1"), {"a": mod("conv1")},
         lambda g, out: g["a"].pow(2).mean((1, 2, 3)).sum()),
        (diversity("conv1"), {"a": mod("conv1")}, lambda g, out: -_gram_by_hand(g["a"])),
        (channel("conv2", 5) - 0.5 * diversity("conv1") + 2 * class_score(1),
         {"a": mod("conv2"), "b": mod("conv1")},
         lambda g, out: g["a"][:, 5].mean((1, 2)).sum() + 0.5 * _gram_by_hand(g["b"])
         + 2 * out[:, 1].sum()),
    ]  # fmt: skip


def _gram_by_hand(a):
    n = len(a)
    grams = [a[i].flatten(1) @ a[i].flatten(1).T for i in range(n)]
    grams = [g / g.norm() for g in grams]
    return sum((grams[i] * grams[j]).sum() for i in range(n) for j in range(n) if i != j) / n


def test_every_objective_equals_autograd_on_the_digits_model(digits):
    d, insp = digits
    x = 0.5 * _random((3, 1, 28, 28), 4)
    for objective, layers, formula in _cases(insp, 64):
        value, grad = gradient(insp, objective, x)
        ref_value, ref_grad = _reference(d.model, layers, x, formula)
        assert value == pytest.approx(ref_value, rel=1e-4, abs=1e-5), objective.name
        torch.testing.assert_close(grad, ref_grad, rtol=1e-4, atol=1e-6, msg=objective.name)


def test_inversion_equals_autograd_and_is_zero_at_its_image(digits):
    d, insp = digits
    image = d.dataset[0][0]
    layer = insp.layer_name("conv2")
    with torch.no_grad():
        target = {}
        h = dict(d.model.named_modules())[layer].register_forward_hook(
            lambda m, i, o: target.setdefault("t", o.clone())
        )
        d.model.eval()(image[None])
        h.remove()
    t = target["t"]
    x = 0.5 * _random((2, 1, 28, 28), 5)
    value, grad = gradient(insp, inversion("conv2", image), x)
    ref_value, ref_grad = _reference(
        d.model, {"a": layer}, x, lambda g, out: -(g["a"] - t).pow(2).sum() / t.pow(2).sum()
    )
    assert value == pytest.approx(ref_value, rel=1e-4)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-4, atol=1e-6)
    assert gradient(insp, inversion("conv2", image), image[None])[0] == pytest.approx(0, abs=1e-6)


def test_gradient_through_the_fourier_image_on_an_rgb_net_equals_autograd():
    model = _rgb_net()
    insp = Inspector(model, device="cpu")
    p = Fourier((3, 12, 12), batch=2, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    (spectrum,) = p.init(torch.Generator().manual_seed(0))
    objective = class_score(2) + channel("2", 1) + 0.3 * diversity("1")
    with torch.enable_grad():
        x = p.render([spectrum])
        from zfwidgets.core.synthesis import bind

        (mine,) = torch.autograd.grad(bind(insp, objective, (3, 12, 12))(x), spectrum)
    ref_spectrum = spectrum.detach().clone().requires_grad_()
    ref = copy.deepcopy(model)
    x = p.render([ref_spectrum])
    a1 = ref[1](ref[0](x))
    a2 = ref[2](a1)
    out = ref[6](ref[5](ref[4](ref[3](a2))))
    value = out[:, 2].sum() + a2[:, 1].mean((1, 2)).sum() - 0.3 * _gram_by_hand(a1)
    value.backward()
    torch.testing.assert_close(mine, ref_spectrum.grad, rtol=1e-4, atol=1e-7)


def test_objective_names_and_algebra():
    assert class_score(340).name == "class 340"
    assert unit("conv2", 3).name == "channel(conv2:3)"
    assert (-channel("a", 1)).name == "-channel(a:1)"
    assert (channel("a", 1) - (deepdream("b") + channel("c", 2))).name == (
        "channel(a:1) - (deepdream(b) + channel(c:2))"
    )
    with pytest.raises(TypeError, match="multiply by a number"):
        channel("a", 1) * "2"
    with pytest.raises(ValueError, match="finite"):
        channel("a", 1) * math.nan


# ---- the loop ------------------------------------------------------------------------------


def test_visualise_raises_its_objective_is_reproducible_and_leaves_the_global_rng(digits):
    d, insp = digits
    param = Fourier((1, 28, 28), batch=2, mean=d.mean)
    state = torch.get_rng_state()
    a = visualise(insp, class_score(3), param, steps=12, lr=0.1)
    b = visualise(insp, **a.settings)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a.images, b.images) and a.objective == b.objective
    assert a.objective[-1] > a.objective[0] and a.images.shape == (2, 1, 28, 28)
    assert a.pixels.shape == (2, 1, 28, 28) and a.name == "class 3"
    c = visualise(insp, class_score(3), param, steps=12, lr=0.1, seed=1)
    assert not torch.equal(a.images, c.images)
    px = visualise(insp, unit("fc5", 3), Pixels((1, 28, 28)), transforms=None, steps=6)
    assert px.pixels is None and px.objective[-1] > px.objective[0]


def test_visualise_progress_and_cancel(digits):
    from zfwidgets.core.synthesis import SynthesisCancelled

    _, insp = digits
    calls, images = [], []
    visualise(insp, channel("conv1", 0), shape=(1, 28, 28), steps=4, every=2,
              callback=lambda done, total: calls.append((done, total)),
              on_image=lambda step, img, got: images.append((step, img.shape, len(got))),
              )  # fmt: skip
    assert calls == [(k, 4) for k in range(1, 5)]
    assert images == [(2, (1, 1, 28, 28), 2), (4, (1, 1, 28, 28), 4)]
    with pytest.raises(SynthesisCancelled, match="after 1 of 9"):
        visualise(insp, channel("conv1", 0), shape=(1, 28, 28), steps=9, should_stop=lambda: True)


def test_diversity_lowers_the_batchs_gram_similarity(digits):
    _, insp = digits
    param = Fourier((1, 28, 28), batch=3, sd=0.5)
    layer = "conv1"

    def similarity(images):
        acts = insp.run_batch(images, [layer])[layer]
        return float(gram_similarity(acts))

    kw = dict(steps=15, lr=0.1, transforms=None)
    plain = visualise(insp, channel("conv2", 3), param, **kw)
    diverse = visualise(insp, channel("conv2", 3) + 50 * diversity(layer), param, **kw)
    start = visualise(insp, channel("conv2", 3), param, steps=1, lr=1e-9, transforms=None)
    assert similarity(diverse.images) < similarity(plain.images)
    assert similarity(diverse.images) < similarity(start.images)


def test_the_users_model_is_untouched():
    model = SmallResNet().train()
    first = next(model.parameters())
    first.grad = torch.ones_like(first)
    before = _state(model)
    insp = Inspector(model, device="cpu")
    block = insp.blocks[1]
    image = _random((1, 28, 28))
    width = insp.shapes((1, 28, 28))[insp.layer_index(block)][1]
    objective = (class_score(1) + channel(block, 0) + neuron(block, 1) + deepdream(block)
                 + direction(block, torch.ones(width))
                 + inversion(block, image) + diversity(block))  # fmt: skip
    visualise(insp, objective, Fourier((1, 28, 28), batch=2), steps=2)
    robustness(insp, image, 1, views=2)
    _assert_same(before, _state(model))


# ---- robustness ----------------------------------------------------------------------------


def _views_by_hand(pixels, views, seed, size):
    """RandomResizedCrop(size, (0.5, 1)), RandomRotation(10), RandomHorizontalFlip(), by hand."""
    g = torch.Generator().manual_seed(seed)
    h, w = pixels.shape[-2:]
    out = []
    for _ in range(views):
        for _ in range(10):
            area = h * w * (0.5 + 0.5 * float(torch.rand(1, generator=g)))
            lo, hi = math.log(3 / 4), math.log(4 / 3)
            ratio = math.exp(lo + (hi - lo) * float(torch.rand(1, generator=g)))
            cw, ch = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
            if 0 < cw <= w and 0 < ch <= h:
                top = int(torch.randint(0, h - ch + 1, (1,), generator=g))
                left = int(torch.randint(0, w - cw + 1, (1,), generator=g))
                break
        view = TF.resized_crop(pixels, top, left, ch, cw, [size, size], antialias=True)
        view = TF.rotate(view, -10 + 20 * float(torch.rand(1, generator=g)))
        if float(torch.rand(1, generator=g)) < 0.5:
            view = TF.horizontal_flip(view)
        out.append(view)
    return torch.stack(out)


def test_robustness_equals_a_hand_loop():
    model = _rgb_net().eval()
    insp = Inspector(model, device="cpu")
    from zfwidgets.core.preprocess import IMAGENET, Preprocessing

    prep = Preprocessing(mean=IMAGENET.mean, std=IMAGENET.std)
    images = prep.normalise(torch.rand(2, 3, 20, 20, generator=torch.Generator().manual_seed(3)))
    state = torch.get_rng_state()
    got = robustness(insp, images, 4, views=6, seed=7, preprocessing=prep, size=16)
    assert torch.equal(torch.get_rng_state(), state)
    for k in range(2):
        views = _views_by_hand(prep.to_pixels(images[k]), 6, 7, 16)
        with torch.no_grad():
            want = torch.softmax(copy.deepcopy(model)(prep.normalise(views)), -1)[:, 4].mean()
        assert float(got[k]) == pytest.approx(float(want), abs=1e-6)
    again = robustness(insp, images, 4, views=6, seed=7, preprocessing=prep, size=16)
    assert torch.equal(got, again)
    plain = robustness(insp, images[0], 4, views=3)  # model inputs directly, their own size
    assert plain.shape == (1,)


# ---- bad settings --------------------------------------------------------------------------

BAD = [
    (dict(steps=0), "steps must be an int in 1..100000; got 0"),
    (dict(steps=-3), "steps must be an int in 1..100000; got -3"),
    (dict(steps=float("nan")), "steps must be an int in 1..100000; got nan"),
    (dict(steps=10**9), "steps must be an int in 1..100000"),
    (dict(lr=float("nan")), r"lr must be a finite number in \(0, 10\]; got nan"),
    (dict(lr=float("inf")), r"lr must be a finite number in \(0, 10\]; got inf"),
    (dict(lr=-0.1), r"lr must be a finite number in \(0, 10\]; got -0.1"),
    (dict(lr=1e6), r"lr must be a finite number in \(0, 10\]"),
    (dict(seed=-1), "seed must be an int >= 0; got -1"),
    (dict(transforms="fancy"), "transforms must be 'standard', None or callable"),
]


@pytest.mark.parametrize(
    "kw,message", BAD, ids=[m.split(" ")[0] + str(i) for i, (_, m) in enumerate(BAD)]
)
def test_bad_settings_name_the_setting_and_its_range(digits, kw, message):
    _, insp = digits
    with pytest.raises(ValueError, match=message):
        visualise(insp, class_score(1), shape=(1, 28, 28), **kw)


def test_bad_objectives_and_parametrisations_are_refused_clearly(digits):
    _, insp = digits
    shape = dict(shape=(1, 28, 28), steps=1)
    with pytest.raises(ValueError, match="unknown layer 'conv9'"):
        visualise(insp, channel("conv9", 0), **shape)
    with pytest.raises(ValueError, match="channel 999 is out of range for layer 'conv2'"):
        visualise(insp, channel("conv2", 999), **shape)
    with pytest.raises(ValueError, match="target class 10 is out of range: 0..9"):
        visualise(insp, class_score(10), **shape)
    with pytest.raises(ValueError, match="one number per channel of 'conv2' \\(64\\); got 3"):
        visualise(insp, direction("conv2", [1, 2, 3]), **shape)
    with pytest.raises(ValueError, match="fully connected: position must be None"):
        visualise(insp, neuron("fc4", 0, (1, 1)), **shape)
    with pytest.raises(ValueError, match="diversity needs a layer with feature maps"):
        visualise(insp, diversity("fc4"), **shape)
    for decay in (-1, float("nan"), float("inf"), 9):
        with pytest.raises(ValueError, match=r"decay must be a number in \[0, 4\]"):
            Fourier((1, 28, 28), decay=decay)
    with pytest.raises(ValueError, match=r"sd must be a number in \[0, 10\]; got nan"):
        Fourier((1, 28, 28), sd=float("nan"))
    with pytest.raises(ValueError, match="batch must be an int in 1..256; got 0"):
        Fourier((1, 28, 28), batch=0)
    with pytest.raises(ValueError, match="shape must be \\(C, H, W\\)"):
        Pixels((2, 28, 28))
    with pytest.raises(ValueError, match="give param="):
        visualise(insp, class_score(1))
    with pytest.raises(ValueError, match="views must be an int in 1..10000; got 0"):
        robustness(insp, torch.zeros(1, 28, 28), 1, views=0)
    with pytest.raises(ValueError, match="rotation degrees must be a number in \\[0, 180\\]"):
        Rotate(-5)
    with pytest.raises(ValueError, match="jitter must be an int in 0..1024; got -1"):
        Jitter(-1)
    with pytest.raises(ValueError, match="scale high must be a number in \\[0.9, 10\\]"):
        Scale(0.9, 0.5)
    convs = Inspector(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()), device="cpu")
    with pytest.raises(ValueError, match="output is class scores"):
        visualise(convs, class_score(0), shape=(1, 8, 8), steps=1)
    with pytest.raises(ValueError, match="output is class scores"):
        robustness(convs, torch.zeros(1, 8, 8), 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_gives_the_cpu_result(digits):
    d, insp = digits
    on_gpu = Inspector(d.model, device="cuda")
    x = 0.5 * _random((2, 1, 28, 28), 6)
    objective = channel("conv2", 5) + 10 * diversity("conv1") + class_score(2)
    cpu_value, cpu_grad = gradient(insp, objective, x)
    gpu_value, gpu_grad = gradient(on_gpu, objective, x)
    assert gpu_value == pytest.approx(cpu_value, rel=1e-4)
    torch.testing.assert_close(gpu_grad, cpu_grad, rtol=1e-4, atol=1e-5)
    param = Fourier((1, 28, 28), batch=2, mean=d.mean)
    cpu = visualise(insp, objective, param, steps=10)
    gpu = visualise(on_gpu, objective, param, steps=10)
    assert gpu.images.device.type == "cpu"
    torch.testing.assert_close(gpu.images, cpu.images, rtol=0, atol=2e-2)
    p_cpu = robustness(insp, cpu.images, 3, views=4)
    p_gpu = robustness(on_gpu, cpu.images, 3, views=4)
    torch.testing.assert_close(p_gpu, p_cpu, rtol=0, atol=1e-4)
