"""core.data_labels: a data set's own labels and class names, never read from its images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from zfwidgets.core.data_labels import data_class_names, data_label


class NoImages(Dataset):
    """Labels in attributes; reading an item fails (labels must not read images)."""

    def __init__(self, **attrs):
        self.__dict__.update(attrs)

    def __len__(self):
        return 4

    def __getitem__(self, index):
        raise AssertionError(f"image {index} was read")


def test_targets_list_and_tensor_and_numpy():
    assert data_label(NoImages(targets=[3, 1, 4, 1]), 2) == 4
    assert data_label(NoImages(targets=torch.tensor([3, 1, 4, 1])), 1) == 1
    assert data_label(NoImages(targets=np.array([3, 1, 4, 1])), 0) == 3
    assert isinstance(data_label(NoImages(targets=np.array([3, 1, 4, 1])), 0), int)


def test_samples_as_image_folder_has_them():
    folder = NoImages(samples=[("a.png", 0), ("b.png", 2), ("c.png", 1), ("d.png", 0)])
    assert [data_label(folder, i) for i in range(4)] == [0, 2, 1, 0]


def test_labels_attribute():
    assert data_label(NoImages(labels=torch.tensor([7, 8, 9, 0])), 2) == 9


def test_item_label_when_no_attribute():
    data = TensorDataset(torch.zeros(3, 1, 4, 4), torch.tensor([5, 6, 7]))
    assert data_label(data, 1) == 6
    images_only = TensorDataset(torch.zeros(3, 1, 4, 4))
    assert data_label(images_only, 1) is None
    assert data_label([(torch.zeros(1, 2, 2), "not a label")], 0) is None
    assert data_label(torch.zeros(3, 1, 4, 4), 0) is None


def test_subsets_and_loaders_are_followed():
    base = NoImages(targets=[3, 1, 4, 1], classes=["a", "b", "c", "d", "e"])
    data = Subset(Subset(base, [3, 2, 1]), [1, 2])  # -> base indices 2, 1
    assert [data_label(data, i) for i in range(2)] == [4, 1]
    assert data_label(DataLoader(data, batch_size=2), 0) == 4
    assert data_class_names(DataLoader(data)) == ["a", "b", "c", "d", "e"]


@pytest.mark.parametrize(
    "classes, expected",
    [(["cats", "dogs"], ["cats", "dogs"]), ((0, 1), ["0", "1"]), (None, None), ("ab", None)],
)
def test_class_names(classes, expected):
    assert data_class_names(NoImages(classes=classes)) == expected


def test_no_classes_attribute():
    assert data_class_names(torch.zeros(2, 1, 4, 4)) is None
    assert data_class_names(TensorDataset(torch.zeros(2, 1, 4, 4))) is None
