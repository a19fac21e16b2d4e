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


# ----- all labels at once (feature space colours) ---------------------------------------------


class _Targets(torch.utils.data.Dataset):
    """torchvision's layout: ``.targets`` and ``.classes``; items are never read."""

    def __init__(self, targets, classes=None, n=None):
        self.targets, self.n = targets, len(targets) if n is None else n
        if classes is not None:
            self.classes = classes

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        raise AssertionError("labels never read the images")


def test_all_labels_from_targets_samples_and_strings():
    from zfwidgets.core.data_labels import data_labels

    labels, names = data_labels(_Targets([2, 0, 1], classes=["a", "b", "c"]))
    assert labels.tolist() == [2, 0, 1] and names == ["a", "b", "c"]
    folder = _Targets([])
    folder.samples = [("x.png", 1), ("y.png", 0)]
    folder.n = 2
    del folder.targets
    assert data_labels(folder)[0].tolist() == [1, 0]
    pets = ["dog", "cat", "dog", "emu"]  # strings: used as names, numbered in sorted order
    labels, names = data_labels(_Targets(pets))
    assert names == sorted(set(pets)) and [names[i] for i in labels] == pets
    sub = torch.utils.data.Subset(_Targets(pets), [3, 1])
    assert [data_labels(sub)[1][i] for i in data_labels(sub)[0]] == ["emu", "cat"]
    assert data_labels(_Targets([1, 0], n=3)) == (None, None)  # wrong length: no labels
    assert data_labels(_Targets([0.5, 1.5])) == (None, None)  # not class numbers
    assert data_labels(torch.zeros(3, 1, 4, 4)) == (None, None)


def test_features_use_targets_and_never_serve_another_data_sets_labels():
    from zfwidgets import Inspector, demo
    from zfwidgets.core.feature_space import features

    d = demo.load()
    insp = Inspector(d.model, device="cpu")
    images = d.dataset.images[:6]

    class Items(_Targets):
        def __getitem__(self, i):
            return images[i], self.targets[i]

    first = features(insp, Items([3, 1, 4, 1, 5, 9]), "conv3")
    assert first.labels.tolist() == [3, 1, 4, 1, 5, 9]
    again = features(insp, Items(["b", "a", "b", "c", "a", "b"]), "conv3")  # same images
    assert again.labels.tolist() == [1, 0, 1, 2, 0, 1]
    assert torch.equal(again.values, first.values)
