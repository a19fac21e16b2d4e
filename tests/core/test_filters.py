"""zfwidgets.core.filters.neighbour_correlation against a brute-force Pearson correlation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zfwidgets.core.filters import neighbour_correlation


def _by_hand(f: np.ndarray) -> float:
    """Pearson correlation of every (weight, right neighbour) and (weight, lower neighbour)
    pair, listed one by one."""
    pairs = []
    channels, h, w = f.shape
    for c in range(channels):
        for y in range(h):
            for x in range(w):
                if x + 1 < w:
                    pairs.append((f[c, y, x], f[c, y, x + 1]))
                if y + 1 < h:
                    pairs.append((f[c, y, x], f[c, y + 1, x]))
    a, b = np.array(pairs, dtype=np.float64).T
    if a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def _hand_made() -> torch.Tensor:
    y, x = torch.meshgrid(torch.arange(7.0), torch.arange(7.0), indexing="ij")
    blob = torch.exp(-((y - 3) ** 2 + (x - 3) ** 2) / 4)
    edge = torch.tanh(x - 3)  # a vertical edge
    checker = ((y + x) % 2) * 2 - 1
    noise = torch.randn(7, 7, generator=torch.Generator().manual_seed(0))
    flat = torch.full((7, 7), 0.3)
    return torch.stack([blob, edge, checker, noise, flat])[:, None]


def test_matches_the_correlation_of_every_neighbour_pair_listed_by_hand():
    filters = torch.cat([_hand_made(), _hand_made().flip(-1)], 0)
    rgb = torch.randn(4, 3, 5, 5, generator=torch.Generator().manual_seed(1))
    for weight in (filters, rgb):
        expected = [_by_hand(f) for f in weight.numpy()]
        assert neighbour_correlation(weight).tolist() == pytest.approx(expected, abs=1e-6)


def test_orders_smooth_filters_above_noise_and_checkerboards():
    blob, edge, checker, noise, flat = neighbour_correlation(_hand_made()).tolist()
    assert blob > 0.6 and edge > 0.8
    assert checker == pytest.approx(-1.0)
    assert abs(noise) < 0.3 and flat == 0.0


def test_refuses_what_is_not_a_conv_weight():
    with pytest.raises(ValueError, match=r"\(out, in, kh, kw\); got shape \(5, 5\)"):
        neighbour_correlation(torch.zeros(5, 5))
    with pytest.raises(ValueError, match="1x1 filter"):
        neighbour_correlation(torch.zeros(3, 2, 1, 1))
