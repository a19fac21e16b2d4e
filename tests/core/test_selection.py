"""Architecture-selection metrics (paper Fig. 6) against hand-worked cases and brute force."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from zfwidgets.core.inspector import Inspector
from zfwidgets.core.selection import (
    ArchitectureComparison,
    aliasing,
    compare_architectures,
    filter_health,
    filter_spectrum,
    spectral_energy,
)


def _wave(size: int, fy: float, fx: float, phase: float = 0.0) -> torch.Tensor:
    """cos(2 pi (fy*y + fx*x) + phase) on a size x size grid (frequencies in cycles/pixel)."""
    y, x = torch.meshgrid(torch.arange(float(size)), torch.arange(float(size)), indexing="ij")
    return torch.cos(2 * math.pi * (fy * y + fx * x) + phase).double()


# ----- filter_spectrum / spectral_energy --------------------------------------------------------
def test_spectrum_equals_a_brute_force_dft_of_the_padded_filter():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(2, 3, 5, 5, generator=gen, dtype=torch.float64)
    power, radius = filter_spectrum(w, size=9)
    n = 9
    for f in range(2):
        for u in range(n):
            for v in range(n):
                total = 0.0
                for c in range(3):
                    acc = 0j
                    for y in range(5):
                        for x in range(5):
                            acc += float(w[f, c, y, x]) * np.exp(-2j * np.pi * (u * y + v * x) / n)
                    total += abs(acc) ** 2
                assert power[f, u, v].item() == pytest.approx(total, rel=1e-9)
    # Bin 5 of 9 is frequency -4/9 (fft order); the radius is the length of (fy, fx).
    assert radius[0, 0] == 0 and radius[0, 3].item() == pytest.approx(3 / 9)
    assert radius[5, 2].item() == pytest.approx(math.hypot(4 / 9, 2 / 9))


def test_a_constant_filter_is_pure_dc():
    w = torch.full((1, 1, 7, 7), 0.3)
    power, _ = filter_spectrum(w, size=7)  # unpadded: every other bin is exactly 0
    assert power[0, 0, 0].item() == pytest.approx((49 * 0.3) ** 2)
    assert power[0].flatten()[1:].abs().max() < 1e-20
    energy = spectral_energy(w, size=7)
    assert energy.per_filter[0].tolist() == pytest.approx([1.0, 0.0, 0.0], abs=1e-12)


def test_a_padded_constant_filter_has_the_dirichlet_spectrum():
    """Zero-padded, the 7x7 box's response is |sin(7 pi f) / sin(pi f)|^2 per axis, peak at DC."""
    k, n = 7, 32
    power, _ = filter_spectrum(torch.ones(1, 1, k, k), size=n)
    f = np.fft.fftfreq(n)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.where(f == 0, k, np.sin(np.pi * k * f) / np.sin(np.pi * f))
    np.testing.assert_allclose(power[0].numpy(), np.outer(d, d) ** 2, rtol=1e-9, atol=1e-9)
    assert int(power[0].argmax()) == 0


@pytest.mark.parametrize(
    ("fy", "fx", "band"),
    [
        (0.0, 1 / 8, "low"),  # 0.125 < 1/6
        (0.0, 2 / 8, "mid"),  # 0.25
        (2 / 8, 0.0, "mid"),  # the same, vertical
        (0.0, 3 / 8, "high"),  # 0.375 > 1/3
        (2 / 8, 2 / 8, "high"),  # diagonal: radius 0.354
        (1 / 8, 1 / 8, "mid"),  # diagonal: radius 0.177
    ],
)
def test_a_sinusoid_lands_in_its_band(fy, fx, band):
    w = torch.stack([_wave(8, fy, fx), _wave(8, fy, fx, phase=1.0)])[:, None]
    energy = spectral_energy(w, size=8)  # bin frequencies, unpadded: no leakage at all
    col = energy.bands.index(band)
    assert energy.per_filter[:, col].tolist() == pytest.approx([1.0, 1.0], abs=1e-6)
    assert energy.mean[band] == pytest.approx(1.0, abs=1e-6)


def test_a_padded_sinusoid_keeps_most_energy_in_its_band():
    """Padding spreads a finite sinusoid (its window's sinc); a 32-tap one stays > 90% in band."""
    w = _wave(32, 0.0, 0.25)[None, None]
    energy = spectral_energy(w, size=128)
    assert energy.mean["mid"] > 0.9 and energy.mean["low"] < 0.05 and energy.mean["high"] < 0.05


def test_spectral_energy_is_per_filter_scale_free_and_skips_zero_filters():
    w = torch.stack([_wave(8, 0, 1 / 8), 100 * _wave(8, 0, 3 / 8), torch.zeros(8, 8).double()])
    energy = spectral_energy(w[:, None], size=8)
    assert torch.isnan(energy.per_filter[2]).all()
    # Two live filters, one all-low and one all-high: the mean gives each half, whatever scale.
    assert energy.mean["low"] == pytest.approx(0.5) and energy.mean["high"] == pytest.approx(0.5)
    assert energy.mean["mid"] == pytest.approx(0.0, abs=1e-9)


def test_custom_bands_and_their_errors():
    w = _wave(8, 0, 2 / 8)[None, None]
    energy = spectral_energy(w, bands={"below": (0, 0.2), "above": (0.2, 1)}, size=8)
    assert energy.bands == ("below", "above") and energy.per_filter[0].tolist() == pytest.approx(
        [0.0, 1.0], abs=1e-9
    )
    with pytest.raises(ValueError, match=r"band 'x' needs 0 <= lo < hi; got \(0.3, 0.1\)"):
        spectral_energy(w, bands={"x": (0.3, 0.1)})
    with pytest.raises(ValueError, match="non-empty mapping"):
        spectral_energy(w, bands={})
    with pytest.raises(ValueError, match="at least the filter size 8x8; got 4"):
        spectral_energy(w, size=4)


# ----- filter_health ----------------------------------------------------------------------------
def _checker(rms: float, k: int = 5, channels: int = 1) -> torch.Tensor:
    """A +-rms checkerboard: RMS exactly ``rms``, mean ~0, contrast ~1."""
    y, x = torch.meshgrid(torch.arange(k), torch.arange(k), indexing="ij")
    return (rms * (1 - 2 * ((y + x) % 2))).double().expand(channels, k, k).clone()


def test_one_scaled_up_filter_dominates_and_zero_filters_are_dead():
    w = torch.stack([_checker(r) for r in (1, 1, 1, 1, 1, 10, 0, 0)])
    health = filter_health(w)
    assert health.median_rms == pytest.approx(1.0)
    assert health.rms.tolist() == pytest.approx([1, 1, 1, 1, 1, 10, 0, 0])
    assert health.dominating.nonzero().flatten().tolist() == [5]
    assert health.dead.nonzero().flatten().tolist() == [6, 7]
    assert health.dominating_fraction == pytest.approx(1 / 8)
    assert health.dead_fraction == pytest.approx(2 / 8)


def test_thresholds_are_relative_to_the_median():
    rms = [1, 1, 1, 1, 0.09, 0.11, 2.9, 3.1]
    health = filter_health(torch.stack([_checker(r) for r in rms]))
    assert health.median_rms == pytest.approx(1.0)  # mean of the two middle values (1 and 1)
    assert health.dead.tolist() == [False] * 4 + [True, False, False, False]
    assert health.dominating.tolist() == [False] * 7 + [True]
    # The same set scaled by 1000 gives the same verdicts.
    scaled = filter_health(1000 * torch.stack([_checker(r) for r in rms]))
    assert scaled.dead.tolist() == health.dead.tolist()
    assert scaled.dominating.tolist() == health.dominating.tolist()
    looser = filter_health(torch.stack([_checker(r) for r in rms]), dominate_above=4.0)
    assert not looser.dominating.any()


def test_near_constant_filters_are_dead_but_colour_detectors_are_not():
    flat = torch.full((1, 5, 5), 1.0).double()
    nearly_flat = flat + 0.01 * _checker(1.0)  # contrast 0.01
    colour = torch.stack([torch.full((5, 5), v) for v in (1.0, -1.0, 0.5)]).double()
    w = torch.stack(
        [_checker(1.0, channels=3)] * 3
        + [flat.expand(3, 5, 5), nearly_flat.expand(3, 5, 5), colour]
    )
    health = filter_health(w)
    assert health.contrast[3].item() == pytest.approx(0.0, abs=1e-7)
    assert health.contrast[4].item() == pytest.approx(0.01, rel=1e-2)
    assert health.dead.tolist() == [False, False, False, True, True, False]


def test_filter_health_accepts_a_conv_and_refuses_bad_input():
    conv = nn.Conv2d(3, 6, 5)
    before = conv.weight.detach().clone()
    assert filter_health(conv).rms.shape == (6,)
    assert torch.equal(conv.weight, before)
    with pytest.raises(ValueError, match=r"\(out, in, kh, kw\); got shape \(6, 5, 5\)"):
        filter_health(torch.zeros(6, 5, 5))
    with pytest.raises(TypeError, match="got list"):
        filter_health([1.0, 2.0])
    with pytest.raises(ValueError, match="dead_below must be a positive number; got -1"):
        filter_health(conv.weight, dead_below=-1)
    with pytest.raises(ValueError, match="NaN"):
        filter_health(torch.full((2, 1, 3, 3), math.nan))


# ----- aliasing ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("stride", "fy", "fx", "expected"),
    [
        (2, 0, 6 / 16, 1.0),  # 0.375 > 0.25
        (2, 0, 2 / 16, 0.0),  # 0.125 < 0.25
        (2, 6 / 16, 0, 1.0),  # vertical
        (2, 3 / 16, 3 / 16, 0.0),  # diagonal, each axis below: a square, not a disc
        (4, 0, 3 / 16, 1.0),  # 0.1875 > 0.125
        (4, 0, 1 / 16, 0.0),
        (2, 0, 4 / 16, 0.0),  # exactly at Nyquist counts as below
        (1, 0, 8 / 16, 0.0),  # stride 1 cannot alias
    ],
)
def test_a_single_frequency_is_all_or_nothing(stride, fy, fx, expected):
    energy = aliasing(_wave(16, fy, fx)[None, None], stride)
    assert energy.nyquist == 1 / (2 * stride)
    assert energy.per_projection.tolist() == pytest.approx([expected], abs=1e-6)


def test_a_mixture_splits_by_amplitude_squared():
    a, b = 2.0, 1.0
    image = a * _wave(16, 0, 6 / 16) + b * _wave(16, 2 / 16, 0)
    energy = aliasing(torch.stack([image, image.flip(0)]).unsqueeze(1).expand(2, 3, 16, 16), 2)
    assert energy.per_projection.tolist() == pytest.approx([0.8, 0.8], abs=1e-6)  # 4 / (4 + 1)
    assert energy.mean == pytest.approx(0.8, abs=1e-6)


def test_aliasing_takes_projections_of_different_sizes_and_skips_empty_ones():
    hi = _wave(15, 0, 5 / 15)[None]  # odd size, 0.333 > 0.25
    lo = _wave(10, 0, 1 / 10)[None]
    energy = aliasing([hi, lo, torch.zeros(1, 7, 7)], stride=2)
    assert energy.per_projection[:2].tolist() == pytest.approx([1.0, 0.0], abs=1e-6)
    assert math.isnan(energy.per_projection[2]) and energy.mean == pytest.approx(0.5, abs=1e-6)


def test_aliasing_refuses_bad_input():
    with pytest.raises(ValueError, match="stride must be a positive int; got 0"):
        aliasing(torch.zeros(1, 1, 4, 4), 0)
    with pytest.raises(ValueError, match=r"got shape \(4,\)"):
        aliasing(torch.zeros(4), 2)
    with pytest.raises(ValueError, match="empty"):
        aliasing([], 2)


# ----- compare_architectures --------------------------------------------------------------------
def _net(kernel: int, stride: int, seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 6, kernel, stride, kernel // 2),
        nn.ReLU(),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(6, 5, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(5 * (6 if stride == 1 else 3) ** 2, 3),
    ).train()  # training mode on purpose: the comparison must not switch it


def test_compare_architectures_matches_the_parts_and_brute_force():
    models = {"small stride": _net(5, 1, 0), "large stride": _net(9, 2, 1)}
    before = {n: copy.deepcopy(m.state_dict()) for n, m in models.items()}
    gen = torch.Generator().manual_seed(3)
    images = torch.randn(13, 1, 14, 14, generator=gen)
    labels = torch.randint(0, 3, (13,), generator=gen)
    report = compare_architectures(models, images, labels, device="cpu", batch_size=4)

    for name, model in models.items():
        assert model.training  # untouched
        for key, value in model.state_dict().items():
            assert torch.equal(value, before[name][key])
        row = next(r for r in report.rows if r["model"] == name)
        conv1 = model[0]
        stride = conv1.stride[0]
        assert row["conv1"] == f"{conv1.kernel_size[0]}x{conv1.kernel_size[1]}/{stride}"
        assert torch.equal(report.filters[name], conv1.weight.detach())
        health = filter_health(conv1.weight)
        assert row["dead"] == health.dead_fraction
        assert row["dominating"] == health.dominating_fraction
        assert row["mid"] == spectral_energy(conv1.weight).mean["mid"]

        # Brute force: for every conv2 map, loop over images for the strongest activation.
        insp = Inspector(model, device="cpu")
        peaks = np.array(
            [insp.activations(img, "conv2").flatten(1).amax(1).numpy() for img in images]
        )
        expected = []
        for c in range(5):
            best = int(np.argmax(peaks[:, c]))  # first maximum, as documented
            assert int(report.sources[name][c]) == best
            expected.append(insp.project(images[best], "conv2", c))
        torch.testing.assert_close(report.projections[name], torch.stack(expected))
        assert row["aliasing"] == pytest.approx(aliasing(torch.stack(expected), stride).mean)
        assert row["hf_common"] == pytest.approx(aliasing(torch.stack(expected), 2).mean)
        with torch.no_grad():
            logits = model.eval()(images)
        model.train()
        assert row["accuracy"] == pytest.approx(float((logits.argmax(1) == labels).double().mean()))

    assert report.rows[0]["aliasing"] == 0.0  # stride 1
    assert report.filter_grid("large stride", cols=3, scale=1).shape == (2 * 11 + 2, 3 * 11 + 2, 3)
    assert report.projection_grid("small stride", cols=5, scale=1).shape == (16 + 2, 5 * 16 + 2, 3)
    text = report.table()
    assert text.splitlines()[0].split()[:3] == ["model", "conv1", "dead"]
    assert len(text.splitlines()) == 3


def test_compare_architectures_refuses_bad_input():
    model = _net(5, 1, 0)
    images = torch.randn(4, 1, 14, 14)
    with pytest.raises(ValueError, match="non-empty dict"):
        compare_architectures({}, images)
    with pytest.raises(TypeError, match="model 'x' must be a torch.nn.Module; got str"):
        compare_architectures({"x": "net"}, images)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\); got \(1, 14, 14\)"):
        compare_architectures({"x": model}, images[0])
    with pytest.raises(ValueError, match=r"labels must be shaped \(4,\)"):
        compare_architectures({"x": model}, images, labels=torch.zeros(3))
    report = compare_architectures({"x": model}, images, max_units=2, device="cpu")
    assert report.projections["x"].shape == (2, 1, 14, 14) and "accuracy" not in report.rows[0]
    with pytest.raises(ValueError, match="unknown model 'y'; compared: x"):
        report.filter_grid("y")


def test_projection_grid_crops_each_projection_to_its_support_and_enlarges_it():
    projections = torch.zeros(3, 1, 20, 20)
    projections[0, 0, 2:5, 3:6] = torch.arange(9.0).view(3, 3) - 4  # 3x3 of detail
    projections[1, 0, 15:18, 10:13] = 1.0
    projections[2, 0, 8, 8] = -2.0
    report = ArchitectureComparison(rows=[], filters={"m": torch.zeros(1, 1, 3, 3)})
    report.projections["m"] = projections
    picture = report.projection_grid("m", cols=2, scale=4, crop=True, count=2)
    # two tiles of (3 + 2 margin pixels) x 4 = 20 px, cut around each 3x3 by hand
    assert picture.shape == (20 + 4, 2 * (20 + 2) + 2, 3)
    first = picture[2:22, 2:22, 0]
    by_hand = projections[0, 0, 1:6, 2:7]
    expected = np.round(127.5 + 127.5 * by_hand.numpy() / 4 + 0.25).clip(0, 255)
    assert np.array_equal(first, expected.repeat(4, 0).repeat(4, 1))
