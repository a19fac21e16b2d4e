"""Sanity checks and faithfulness (issue 33): cascading randomisation, deletion and insertion."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from models import zf_like

from zfwidgets import Inspector, demo
from zfwidgets.core import trust
from zfwidgets.core.trust import faithfulness
from zfwidgets.core.trust.randomise import block_modules
from zfwidgets.core.trust.similarity import ranks


@pytest.fixture(scope="module")
def digits():
    d = demo.load()
    return d, Inspector(d.model, device="cpu"), d.dataset[0][0]


def _brute_curves(model, img, saliency, target, steps, fill, start, by_magnitude):
    """One forward pass of the model's copy per step image, pixels changed one list at a time."""
    flat = saliency.flatten().abs() if by_magnitude else saliency.flatten()
    order = torch.argsort(flat, descending=True, stable=True).tolist()
    h, w = img.shape[-2:]
    fill_img = torch.as_tensor(fill, dtype=img.dtype)
    fill_img = (fill_img.view(-1, 1, 1) if fill_img.ndim == 1 else fill_img).expand(img.shape[1:])
    out = {"deletion": [], "insertion": []}
    with torch.no_grad():
        for k in range(steps + 1):
            n = math.ceil(k * h * w / steps)
            deleted, inserted = img.clone(), start.clone()
            for p in order[:n]:
                y, x = divmod(p, w)
                deleted[0, :, y, x] = fill_img[:, y, x]
                inserted[0, :, y, x] = img[0, :, y, x]
            for name, im in (("deletion", deleted), ("insertion", inserted)):
                out[name].append(float(torch.softmax(model(im), 1)[0, target]))
    return out


@pytest.mark.parametrize(
    "steps, fill, by_magnitude", [(7, 0.0, True), (10, [0.3, -0.2, 0.1], False)]
)
def test_curves_equal_a_loop_of_forward_passes(steps, fill, by_magnitude):
    model = zf_like().eval()
    ref = copy.deepcopy(model)
    insp = Inspector(model, device="cpu")
    x = torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(1))
    saliency = torch.randn(32, 32, generator=torch.Generator().manual_seed(2))
    c = trust.deletion_insertion(
        insp,
        x,
        saliency,
        target=3,
        steps=steps,
        fill=torch.tensor(fill),
        batch_size=5,
        by_magnitude=by_magnitude,
    )
    start = trust.blurred(x[None])
    want = _brute_curves(ref, x[None], saliency, 3, steps, fill, start, by_magnitude)
    torch.testing.assert_close(c.deletion, torch.tensor(want["deletion"]), atol=1e-5, rtol=0)
    torch.testing.assert_close(c.insertion, torch.tensor(want["insertion"]), atol=1e-5, rtol=0)
    assert c.fractions[0] == 0 and c.fractions[-1] == 1 and len(c.fractions) == steps + 1
    xs = c.fractions.numpy()
    assert c.deletion_auc == pytest.approx(np.trapezoid(c.deletion.double().numpy(), xs), abs=1e-9)
    assert c.insertion_auc == pytest.approx(
        np.trapezoid(c.insertion.double().numpy(), xs), abs=1e-9
    )


def test_method_curves_on_digits(digits):
    d, insp, x = digits
    c = trust.deletion_insertion(insp, x, "gradcam", steps=20)
    assert c.method == "gradcam" and c.target == insp.target_class(x)
    # Deleting the whole digit to the fill loses the class; the full image is the prediction.
    assert c.deletion[0] == pytest.approx(float(insp.predict(x)[c.target]), abs=1e-5)
    assert c.insertion[-1] == pytest.approx(float(insp.predict(x)[c.target]), abs=1e-5)
    assert 0 <= c.deletion_auc < c.insertion_auc <= 1


def test_same_map_has_similarity_one():
    a = torch.randn(28, 28, generator=torch.Generator().manual_seed(0))
    assert trust.spearman(a, a) == pytest.approx(1.0)
    assert trust.spearman(a, a, absolute=True) == pytest.approx(1.0)
    assert trust.ssim(a, a) == pytest.approx(1.0)
    assert trust.hog_similarity(a, a) == pytest.approx(1.0)
    assert math.isnan(trust.spearman(a, torch.zeros(28, 28)))
    values = np.array([0.5, 0.1, 0.5, 0.5, 2.0])
    assert ranks(values).tolist() == [3.0, 1.0, 3.0, 3.0, 5.0]  # scipy's rankdata


def test_randomising_nothing_changes_nothing(digits):
    d, insp, x = digits
    r = trust.cascade(insp, x, methods=["deconvnet", "saliency", "gradcam"], blocks=[])
    assert r.stages == ["none"]
    for m in r.methods:
        torch.testing.assert_close(r.maps[m]["none"], trust.class_map(insp, x, m), atol=0, rtol=0)
        assert r.scores[m]["none"]["spearman_abs"] == pytest.approx(1.0)


def test_user_model_and_rng_untouched_by_a_cascade(digits):
    d, _, x = digits
    model = copy.deepcopy(d.model).train()
    model.register_forward_hook(lambda *a: None)
    with pytest.warns(UserWarning, match="hooks"):
        insp = Inspector(model, device="cpu")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    versions = [t._version for t in [*model.parameters(), *model.buffers()]]
    calls = []
    original = model.forward
    model.forward = lambda *a, **k: calls.append(1) or original(*a, **k)
    rng = torch.get_rng_state()
    r = trust.cascade(insp, x, methods=["guided", "gradcam"], blocks=["fc5", "conv3"], seed=3)
    assert torch.equal(torch.get_rng_state(), rng)
    assert calls == []
    assert model.training and all(m.training for m in model.modules())
    assert len(model._forward_hooks) == 1
    assert [t._version for t in [*model.parameters(), *model.buffers()]] == versions
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert r.scores["guided"]["fc5"]["spearman_abs"] < 1  # something was randomised
    # Independent randomisation of one block: same weights for the same seed.
    a = trust.randomised_inspector(insp, ["fc5"], seed=3).model
    b = trust.randomised_inspector(insp, ["fc5"], seed=3).model
    assert torch.equal(a.classifier[4].weight, b.classifier[4].weight)
    assert not torch.equal(a.classifier[4].weight, model.classifier[4].weight)
    assert torch.equal(a.classifier[1].weight, model.classifier[1].weight)


def test_block_modules(digits):
    _, insp, _ = digits
    assert block_modules(insp, "fc5") == ["classifier.4"]
    assert block_modules(insp, "conv2") == ["features.4"]  # LRN has no weights
    assert "features.8" in block_modules(insp, "conv3")


def test_guided_stays_saliency_falls_on_digits(digits):
    """Measured on the digits demo, image 0, seed 0, after re-initialising the top layer fc5:
    Spearman of |map| guided 0.98, saliency 0.69; SSIM guided 0.95, saliency -0.28; HOG guided
    0.87, saliency 0.34 (images 1 and 2: 0.96/0.73, 0.93/-0.16 and 0.87/0.39)."""
    _, insp, x = digits
    r = trust.cascade(insp, x, methods=["guided", "saliency"], blocks=["fc5"])
    guided, saliency = r.scores["guided"]["fc5"], r.scores["saliency"]["fc5"]
    print(r.table(), r.table("ssim"), sep="\n")
    assert guided["spearman_abs"] > 0.9
    assert saliency["spearman_abs"] < guided["spearman_abs"] - 0.2
    assert guided["ssim"] > 0.85 and saliency["ssim"] < 0.2
    assert guided["hog"] > 0.75 and saliency["hog"] < 0.5
    assert "fc5" in r.table()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"steps": 0}, "steps must be an int >= 1"),
        ({"steps": 2.5}, "steps must be an int >= 1"),
        ({"steps": 785}, "more than the image's 784 pixels; .*use 1..784"),
        ({"fill": float("nan")}, "fill has NaN"),
        ({"saliency": "nope"}, "unknown method 'nope'; allowed methods: deconvnet"),
        ({"saliency": "cam"}, "method 'cam' is not available .*allowed methods"),
        ({"saliency": torch.zeros(3)}, "saliency must be a method name or a map"),
    ],
)
def test_bad_input_for_curves(digits, kwargs, match):
    _, insp, x = digits
    args = {"saliency": "saliency"} | kwargs
    with pytest.raises(ValueError, match=match):
        trust.deletion_insertion(insp, x, **args)


def test_bad_input_for_cascade(digits):
    _, insp, x = digits
    with pytest.raises(ValueError, match="unknown block 'layer9'; blocks: conv1, conv2"):
        trust.cascade(insp, x, blocks=["layer9"])
    with pytest.raises(ValueError, match="unknown method"):
        trust.cascade(insp, x, methods=["lime"])
    with pytest.raises(ValueError, match="unknown metric"):
        trust.cascade(insp, x, methods=["guided"], blocks=[]).table("psnr")


def test_faithfulness_module_names():
    assert faithfulness.step_counts(5, 2) == [0, 3, 5]


class _PooledNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 4, 3), torch.nn.ReLU()
        )
        self.avgpool = torch.nn.AdaptiveAvgPool2d(1)
        self.classifier = torch.nn.Linear(4, 3)

    def forward(self, x):
        h = self.features(x)
        h = h + torch.relu(h)  # a residual addition: a graph, named by its top-level blocks
        return self.classifier(self.avgpool(h).flatten(1))


def test_default_stages_skip_blocks_without_weights():
    insp = Inspector(_PooledNet(), device="cpu")
    assert "avgpool" in insp.blocks and block_modules(insp, "avgpool") == []
    x = torch.randn(1, 9, 9, generator=torch.Generator().manual_seed(0))
    r = trust.cascade(insp, x, methods=["saliency", "cam"])
    assert "avgpool" not in r.stages and r.stages[:2] == ["none", "classifier"]
    assert trust.cascade(insp, x, methods=["cam"], blocks=["avgpool"]).stages == ["none", "avgpool"]


def test_cascade_is_cached_per_stage(digits, monkeypatch):
    _, insp, x = digits
    first = trust.cascade(insp, x, methods=["saliency"], blocks=["fc5"], seed=11)
    calls = []
    real = trust.randomise.class_map
    monkeypatch.setattr(
        trust.randomise, "class_map", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    again = trust.cascade(insp, x, methods=["saliency", "guided"], blocks=["fc5"], seed=11)
    assert len(calls) == 2  # guided at both stages; saliency from the cache
    assert torch.equal(again.maps["saliency"]["fc5"], first.maps["saliency"]["fc5"])


# ----- ROAD (noisy linear imputation) -------------------------------------------------------
def _dense_road(img, removed):
    """Reference: per removed pixel, v * (sum of in-image neighbour weights) = the weighted sum
    of its neighbours (known values or unknowns), assembled one pixel at a time, dense solve."""
    c, h, w = img.shape
    cells = [(y, x) for y in range(h) for x in range(w) if removed[y, x]]
    number = {p: i for i, p in enumerate(cells)}
    a = np.zeros((len(cells), len(cells)))
    b = np.zeros((len(cells), c))
    for i, (y, x) in enumerate(cells):
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                ny, nx = y + dy, x + dx
                if (dy, dx) == (0, 0) or not (0 <= ny < h and 0 <= nx < w):
                    continue
                weight = 1 / 12 if dy and dx else 1 / 6
                a[i, i] += weight
                if (ny, nx) in number:
                    a[i, number[(ny, nx)]] -= weight
                else:
                    b[i] += weight * img[:, ny, nx].double().numpy()
    out = img.clone()
    if cells:
        v = np.linalg.solve(a, b)
        for i, (y, x) in enumerate(cells):
            out[:, y, x] = torch.from_numpy(v[i])
    return out


def test_road_one_pixel_is_its_neighbours_weighted_mean():
    img = torch.randn(2, 4, 4, generator=torch.Generator().manual_seed(3))
    for y, x in ((1, 2), (0, 0), (3, 1)):
        removed = torch.zeros(4, 4, dtype=torch.bool)
        removed[y, x] = True
        got = trust.road_impute(img, removed, noise=0.0)
        total, weights = torch.zeros(2), 0.0
        for dy, dx, weight in ((-1, 0, 2), (1, 0, 2), (0, -1, 2), (0, 1, 2), (-1, -1, 1),
                               (-1, 1, 1), (1, -1, 1), (1, 1, 1)):  # fmt: skip
            if 0 <= y + dy < 4 and 0 <= x + dx < 4:  # edge neighbours count twice the corners
                total += weight * img[:, y + dy, x + dx]
                weights += weight
        torch.testing.assert_close(got[:, y, x], total / weights, atol=1e-6, rtol=0)
        keep = ~removed
        assert torch.equal(got[:, keep], img[:, keep])  # known pixels untouched


def test_road_constant_stays_constant_and_equals_a_dense_solve():
    removed = torch.rand(9, 11, generator=torch.Generator().manual_seed(4)) < 0.6
    const = torch.full((3, 9, 11), -0.7)
    torch.testing.assert_close(trust.road_impute(const, removed, 0.0), const, atol=1e-6, rtol=0)
    img = torch.randn(3, 9, 11, generator=torch.Generator().manual_seed(5))
    want = _dense_road(img, removed)
    torch.testing.assert_close(trust.road_impute(img, removed, 0.0), want, atol=1e-5, rtol=0)
    everything = torch.ones(9, 11, dtype=torch.bool)  # nothing anchors: the 'empty' value
    assert torch.equal(
        trust.road_impute(img, everything, 0.0, empty=0.5), torch.full_like(img, 0.5)
    )


def test_road_noise_only_on_removed_pixels_seeded_and_rng_untouched():
    img = torch.randn(1, 64, 64, generator=torch.Generator().manual_seed(6))
    removed = torch.rand(64, 64, generator=torch.Generator().manual_seed(7)) < 0.5
    clean = trust.road_impute(img, removed, 0.0)
    state = torch.get_rng_state()
    a = trust.road_impute(img, removed, 0.1, torch.Generator().manual_seed(8))
    b = trust.road_impute(img, removed, 0.1, torch.Generator().manual_seed(8))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, b)
    assert torch.equal(a[:, ~removed], img[:, ~removed])
    assert float((a - clean)[:, removed].std()) == pytest.approx(0.1, rel=0.05)
    with pytest.raises(ValueError, match="road_noise must be a finite number >= 0; got -1"):
        trust.road_impute(img, removed, -1)


def test_road_curves_equal_a_loop_of_imputed_images():
    model = zf_like().eval()
    ref = copy.deepcopy(model)
    insp = Inspector(model, device="cpu")
    x = torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(1))
    saliency = torch.randn(32, 32, generator=torch.Generator().manual_seed(2))
    steps = 4
    c = trust.deletion_insertion(
        insp, x, saliency, 3, steps, fill="road", road_noise=0.0, batch_size=4
    )
    order = torch.argsort(saliency.flatten(), descending=True, stable=True)
    want = {"deletion": [], "insertion": []}
    with torch.no_grad():
        for k in range(steps + 1):
            taken = torch.zeros(1024, dtype=torch.bool)
            taken[order[: math.ceil(k * 1024 / steps)]] = True
            taken = taken.view(32, 32)
            for name, removed in (("deletion", taken), ("insertion", ~taken)):
                im = _dense_road(x, removed) if not removed.all() else torch.zeros_like(x)
                want[name].append(float(torch.softmax(ref(im[None]), 1)[0, 3]))
    torch.testing.assert_close(c.deletion, torch.tensor(want["deletion"]), atol=1e-5, rtol=0)
    torch.testing.assert_close(c.insertion, torch.tensor(want["insertion"]), atol=1e-5, rtol=0)
    # with noise: seeded per step, so the batching does not change the curves
    noisy = [
        trust.deletion_insertion(insp, x, saliency, 3, steps, fill="road", batch_size=b, seed=2)
        for b in (1, 7)
    ]
    torch.testing.assert_close(noisy[0].deletion, noisy[1].deletion, atol=1e-6, rtol=0)
    torch.testing.assert_close(noisy[0].insertion, noisy[1].insertion, atol=1e-6, rtol=0)
    assert not torch.equal(noisy[0].deletion, c.deletion)  # the noise is there


def test_road_bad_fill_names_the_choices(digits):
    _, insp, x = digits
    with pytest.raises(ValueError, match="or 'road'; got 'blur'"):
        trust.deletion_insertion(insp, x, "saliency", fill="blur")
    with pytest.raises(ValueError, match="road_noise must be"):
        trust.deletion_insertion(insp, x, "saliency", fill="road", road_noise=float("nan"))


class _ViewNet(torch.nn.Module):
    """A max-pool then ``x.view``: a view needs the plain layout the channels-last run undoes."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 6, 3, padding=1)
        self.pool = torch.nn.MaxPool2d(2)
        self.bn = torch.nn.BatchNorm2d(6)
        self.fc = torch.nn.Linear(6 * 8 * 8, 5)

    def forward(self, x):
        x = self.bn(self.pool(torch.relu(self.conv(x))))
        return self.fc(x.view(x.size(0), -1))


@pytest.mark.parametrize("name", ["zf_like", "digits", "resnet18", "view"])
def test_channels_last_scores_equal_the_inspectors_and_the_models(name):
    import torchvision

    torch.manual_seed(0)
    model, shape = {
        "zf_like": lambda: (zf_like(), (3, 32, 32)),
        "digits": lambda: (demo.load().model, (1, 28, 28)),
        "resnet18": lambda: (torchvision.models.resnet18(num_classes=7), (3, 64, 64)),
        "view": lambda: (_ViewNet(), (3, 16, 16)),
    }[name]()
    model.eval()
    if name == "view":  # running statistics that are not the identity
        model.bn.running_mean.uniform_(-1, 1)
        model.bn.running_var.uniform_(0.5, 2)
    insp = Inspector(model, device="cpu")
    batch = torch.randn(5, *shape, generator=torch.Generator().manual_seed(3))
    insp.image(batch[0])  # the shape verified, as deletion_insertion does first
    last = insp.layers[-1]
    got = faithfulness.class_scores(insp, batch)
    torch.testing.assert_close(got, insp.run_batch(batch, [last])[last], atol=1e-5, rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(got, model(batch), atol=1e-5, rtol=0)


def test_the_classifier_runs_from_its_input_alone_and_gives_the_same_scores():
    import torchvision

    from zfwidgets.core.layers import narrow_after, run_graph

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=7).eval()
    insp = Inspector(model, device="cpu")
    names = [s.name for s in insp.steps]
    # inside a residual block the addition still reads the block's input: not narrow
    assert not narrow_after(insp.graph, names.index("layer1.0.conv1"))
    split = faithfulness.tail_start(insp)
    assert insp.steps[split + 1].kind == "linear" and split > names.index("layer4.1.relu#2")
    batch = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    weights = insp.current_weights()
    with torch.no_grad():
        middle = run_graph(insp.graph, weights, batch, split)[split]
        resumed = run_graph(insp.graph, weights, None, resume=(split, middle))
        torch.testing.assert_close(resumed[len(names) - 1], model(batch), atol=1e-5, rtol=0)


class _MapHead(torch.nn.Module):
    """An all-convolutional net whose output is (N, classes, 1, 1): no classifier to split."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 6, 3, stride=2)
        self.head = torch.nn.Conv2d(6, 4, 7)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)))


@pytest.mark.parametrize("case", ["1x1 map head", "classifier in batches (TAIL_BYTES)"])
def test_curves_equal_the_loop_on_a_map_head_and_without_the_one_pass_classifier(case, monkeypatch):
    model = _MapHead().eval() if case == "1x1 map head" else zf_like().eval()
    if case != "1x1 map head":
        monkeypatch.setattr(faithfulness, "TAIL_BYTES", 0)
    ref = copy.deepcopy(model)
    insp = Inspector(model, device="cpu")
    side = 15 if case == "1x1 map head" else 32
    x = torch.randn(3, side, side, generator=torch.Generator().manual_seed(5))
    saliency = torch.randn(side, side, generator=torch.Generator().manual_seed(6))
    c = trust.deletion_insertion(insp, x, saliency, target=2, steps=6, batch_size=4)
    start = trust.blurred(x[None])
    with torch.no_grad():
        flat = lambda t: t.flatten(1)  # noqa: E731
        probe = lambda im: float(torch.softmax(flat(ref(im)), 1)[0, 2])  # noqa: E731
        order = torch.argsort(saliency.flatten(), descending=True, stable=True)
        dele, ins = [], []
        for k in range(7):
            n = math.ceil(k * side * side / 6)
            mask = torch.zeros(side * side, dtype=torch.bool)
            mask[order[:n]] = True
            mask = mask.view(side, side)
            dele.append(probe(torch.where(mask, torch.zeros(()), x[None])))
            ins.append(probe(torch.where(mask, x[None], start)))
    torch.testing.assert_close(c.deletion, torch.tensor(dele), atol=1e-5, rtol=0)
    torch.testing.assert_close(c.insertion, torch.tensor(ins), atol=1e-5, rtol=0)
