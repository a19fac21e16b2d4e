"""The recipe: renormalisation (hand-worked), schedules (against torch's schedulers), init, data."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset
from trainkit import tiny_data, tiny_model

from zfwidgets.train import TrainConfig, renorm_conv_filters, train
from zfwidgets.train.recipe import _augment, _lr_after, paper_init, pixel_mean
from zfwidgets.zoo import SmallZFNet


def test_renorm_caps_the_rms_exactly_and_leaves_smaller_filters_alone():
    conv = nn.Conv2d(1, 4, (1, 2), bias=False)
    with torch.no_grad():
        conv.weight.copy_(
            torch.tensor([[0.3, 0.4], [0.05, -0.05], [0.1, -0.1], [-2.0, 7.0]]).view(4, 1, 1, 2)
        )
    before = conv.weight.detach().clone()
    renorm_conv_filters(conv, 0.1)
    w = conv.weight.detach().view(4, 2)
    # Filter 0 by hand: RMS sqrt((0.09 + 0.16) / 2) = sqrt(0.125), scaled to RMS 0.1.
    s = 0.1 / math.sqrt(0.125)
    torch.testing.assert_close(w[0], torch.tensor([0.3 * s, 0.4 * s]), rtol=1e-6, atol=0)
    rms = w.double().pow(2).mean(1).sqrt()
    assert rms[0].item() == pytest.approx(0.1, rel=1e-6)
    assert rms[3].item() == pytest.approx(0.1, rel=1e-6)
    # Filters at or below the radius (RMS 0.05 and exactly 0.1) are untouched, bit for bit.
    assert torch.equal(w[1], before.view(4, 2)[1])
    assert torch.equal(w[2], before.view(4, 2)[2])
    # The direction of a capped filter is kept.
    torch.testing.assert_close(w[3] / w[3].norm(), before.view(4, 2)[3] / before[3].norm())


def test_renorm_reaches_every_conv_and_no_linear():
    model = tiny_model()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(50)
    linear = model.classifier[1].weight.detach().clone()
    renorm_conv_filters(model, 0.1)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            rms = m.weight.detach().flatten(1).pow(2).mean(1).sqrt()
            torch.testing.assert_close(rms, torch.full_like(rms, 0.1))
    assert torch.equal(model.classifier[1].weight, linear)
    with pytest.raises(ValueError, match="radius must be positive"):
        renorm_conv_filters(model, 0)


def test_training_keeps_every_filter_inside_the_radius():
    train_set, val_set = tiny_data(64, 20)
    model = tiny_model()
    seen = []

    def check(epoch, m, metrics):
        for mod in m.modules():
            if isinstance(mod, nn.Conv2d):
                seen.append(float(mod.weight.detach().flatten(1).pow(2).mean(1).sqrt().max()))

    config = TrainConfig(epochs=2, batch_size=16, init="default", lr=0.05)
    history = train(model, train_set, val_set, config, [check], device="cpu", progress=False)
    assert max(seen) <= 0.1 * (1 + 1e-6)
    assert len(history) == 2 and 0 <= history[-1]["val_acc"] <= 1
    assert history.column("epoch") == [1, 2]


def test_milestone_schedule_matches_torch_multisteplr():
    train_set, _ = tiny_data(32, 10)
    config = TrainConfig(epochs=4, batch_size=16, lr=0.1, schedule="milestones", milestones=(1, 3))
    history = train(tiny_model(), train_set, None, config, device="cpu", progress=False)
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[1, 3], gamma=0.1)
    reference = []
    for _ in range(4):
        reference.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert history.column("lr") == reference  # bit for bit: the demo's rates are unchanged


def test_plateau_schedule_matches_torch_reduce_on_plateau():
    config = TrainConfig(patience=2)
    gen = torch.Generator().manual_seed(3)
    metrics = (torch.rand(40, generator=gen) * 0.02 + torch.linspace(0, 0.05, 40)).tolist()
    state = {"lr": 0.01, "best": -math.inf, "bad_epochs": 0.0}
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.01)
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode="max", factor=0.1, patience=2, threshold=1e-4, threshold_mode="abs", eps=0
    )
    drops = 0
    for epoch, metric in enumerate(metrics, 1):
        before = state["lr"]
        _lr_after(config, state, epoch, metric)
        ref.step(metric)
        drops += state["lr"] < before
        assert state["lr"] == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12), epoch
    assert drops >= 1  # the sequence does stall, so the comparison is not vacuous


def test_paper_init_draws_small_weights_and_zero_biases():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 64, 5), nn.ReLU(), nn.Linear(400, 300))
    paper_init(model)
    for m in (model[0], model[2]):
        assert m.weight.std().item() == pytest.approx(0.01, rel=0.05)
        assert abs(m.weight.mean().item()) < 1e-3
        assert torch.equal(m.bias, torch.zeros_like(m.bias))


def test_shifts_fill_black_before_the_mean_is_subtracted():
    x = torch.ones(50, 1, 6, 6)
    mean = torch.full((1, 6, 6), 0.25)
    config = TrainConfig(shift=2, mean=mean)
    out = _augment(x, mean, config, torch.Generator().manual_seed(0))
    values = set(out.unique().tolist())
    assert values <= {0.75, -0.25} and -0.25 in values  # shifted-in border: 0 - mean
    # Each image is a translate: its ones form one rectangle of side 6 - |shift|.
    for img in out[:, 0]:
        rows = (img == 0.75).any(1).sum().item()
        cols = (img == 0.75).any(0).sum().item()
        assert (img == 0.75).sum().item() == rows * cols and rows >= 4 and cols >= 4


def test_crops_and_flips():
    x = torch.arange(2 * 1 * 5 * 5, dtype=torch.float32).view(2, 1, 5, 5)
    config = TrainConfig(shift=0, mean=None, crop=3, flip=True)
    out = _augment(x, None, config, torch.Generator().manual_seed(1))
    assert out.shape == (2, 1, 3, 3)
    for img, src in zip(out[:, 0], x[:, 0], strict=True):
        windows = [src[i : i + 3, j : j + 3] for i in range(3) for j in range(3)]
        assert any(torch.equal(img, w) or torch.equal(img, w.flip(-1)) for w in windows)


def test_pixel_mean_is_the_per_pixel_average():
    train_set, _ = tiny_data(32, 10)
    torch.testing.assert_close(pixel_mean(train_set), train_set.images.double().mean(0).float())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epochs": 0}, "epochs must be a positive int"),
        ({"lr": -1.0}, r"lr must be a finite number in \(0, 10\]; got -1.0"),
        ({"lr": float("nan")}, r"lr must be a finite number in \(0, 10\]; got nan"),
        ({"lr": float("inf")}, r"lr must be a finite number in \(0, 10\]; got inf"),
        ({"lr": 1e30}, r"lr must be a finite number in \(0, 10\]; got 1e\+30"),
        ({"lr_factor": 2.0}, r"lr_factor must be a finite number in \(0, 1\]; got 2.0"),
        ({"weight_decay": float("nan")}, r"weight_decay must be a finite number in \[0, 1\]"),
        ({"momentum": float("nan")}, "momentum must be in"),
        ({"schedule": "cosine"}, "schedule must be one of plateau, milestones; got 'cosine'"),
        ({"init": "xavier"}, "init must be one of paper, default; got 'xavier'"),
        ({"renorm_radius": 0}, "renorm_radius must be positive or None"),
        ({"mean": "zero"}, "mean must be 'auto', a tensor or None"),
        ({"momentum": 1.0}, "momentum must be in"),
        ({"shift": -1}, "shift must be an int >= 0"),
    ],
)
def test_bad_config_is_refused_by_name(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kwargs)


def test_bad_train_arguments():
    train_set, _ = tiny_data(32, 10)
    with pytest.raises(TypeError, match="config must be a TrainConfig"):
        train(tiny_model(), train_set, config={"epochs": 1})
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        train("net", train_set)
    with pytest.raises(ValueError, match="device 'nonsense' is not a device"):
        train(tiny_model(), train_set, device="nonsense")


def test_a_diverging_run_stops_naming_the_batch():
    """A learning rate that makes the loss NaN stops the run at that batch, before a NaN
    snapshot: the weights hold no NaN from an earlier step (they are checked after the stop)."""
    from zfwidgets.train import TrainingDiverged

    torch.manual_seed(0)
    images, labels = torch.rand(48, 1, 28, 28), torch.arange(48) % 10
    data = TensorDataset(images, labels)
    model = SmallZFNet()
    with torch.no_grad():  # an overflowing head: the very first loss is inf - inf = NaN
        model.classifier[-1].weight.fill_(3e38)
    config = TrainConfig(epochs=2, batch_size=16, init="default", renorm_radius=None, mean=None)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(TrainingDiverged, match=r"epoch 1, batch 1: the loss became nan") as info:
        train(model, data, None, config, progress=False, device="cpu")
    assert "lower the learning rate" in str(info.value)
    # stopped before the optimiser stepped on the NaN loss: no weight was changed
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
