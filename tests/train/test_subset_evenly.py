"""subset_evenly: an even spread that keeps every class, whatever the class order of the data."""

from __future__ import annotations

import torch
from torch.utils.data import Subset

from zfwidgets.train.data import PixelDataset, demo_data, subset_evenly


def test_class_sorted_data_get_the_plain_even_spread() -> None:
    """The training split (sorted by class): exactly the items at int(i * len / n), as before."""
    train_set, _ = demo_data()
    for n in (5, 64, 100, 250):
        picked = subset_evenly(train_set, n)
        by_hand = [int(i * len(train_set) / n) for i in range(n)]
        assert torch.equal(picked.labels, train_set.labels[by_hand])
        assert torch.equal(picked.images, train_set.images[by_hand])


def test_periodic_class_order_keeps_every_class_in_equal_shares() -> None:
    """The interleaved held-out split: every 10th digit is one class, so an even spread of 100
    would be 100 copies of one class; the pick is round-robin over the classes instead."""
    _, val_set = demo_data()
    for n in (100, 250):
        picked = subset_evenly(val_set, n)
        assert torch.bincount(picked.labels, minlength=10).tolist() == [n // 10] * 10
        assert torch.equal(picked.images, val_set.images[:n])  # round-robin = the first n here
    wrapped = subset_evenly(Subset(val_set, range(1000)), 100)  # labels read through a Subset
    assert sorted(wrapped.indices) == list(range(100))


def test_round_robin_on_a_hand_made_example() -> None:
    """Labels 0,1,0,1,...: an even spread of 3 out of 6 (0, 2, 4) is all 0s."""
    labels = torch.tensor([0, 1, 0, 1, 0, 1])
    data = PixelDataset(torch.arange(6.0).reshape(6, 1, 1, 1), labels)
    picked = subset_evenly(data, 3)
    assert picked.labels.tolist() == [0, 1, 0] and picked.images.flatten().tolist() == [0, 1, 2]
    assert subset_evenly(data, 6) is data
