"""LayerBrowser(top=...): a teacher's mined file opened at once, never re-mined; the layers it
lacks marked in the menu and mined only on a click; the data set's labels beside the tiles."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset, Subset

from zfwidgets import Inspector, LayerBrowser
from zfwidgets.core.data_labels import data_label
from zfwidgets.core.mining import mine
from zfwidgets.core.top_views import top_projections
from zfwidgets.zoo import SmallZFNet


@pytest.fixture(scope="module")
def subset(d):
    return Subset(d.dataset, range(200))


@pytest.fixture(scope="module")
def ref(d):
    return Inspector(d.model, device="cpu")


@pytest.fixture(scope="module")
def mined(ref, subset):
    return mine(ref, subset, layers=["conv1", "conv2"], k=9, progress=False)


@pytest.fixture(scope="module")
def path(mined, tmp_path_factory):
    file = tmp_path_factory.mktemp("lab") / "digits-top9.pt"
    mined.save(file)
    return file


class Counting(Dataset):
    """Wraps a data set and records which items are read; its labels are ``.targets``."""

    def __init__(self, data):
        self.data, self.reads = data, []
        self.targets = [data_label(data, i) for i in range(len(data))]

    def __len__(self):
        return len(self.data)

    def __getitem__(self, index):
        self.reads.append(int(index))
        return self.data[index]


@pytest.fixture
def batches(monkeypatch):
    """Sizes of every batch forward pass (what mining and the time estimate run)."""
    sizes: list[int] = []
    run = Inspector.run_batch

    def counted(self, x, layers):
        sizes.append(len(x))
        return run(self, x, layers)

    monkeypatch.setattr(Inspector, "run_batch", counted)
    return sizes


def _indices(entries):
    return [e.image_index for e in entries]


def test_file_layers_are_shown_without_mining(d, subset, path, mined, ref, batches):
    data = Counting(subset)
    browser = LayerBrowser(d.model, dataset=data, mean=d.mean, top=path, layer="conv2")
    browser.channel = 5
    data.reads.clear()
    browser.show_top = True
    assert browser.wait(timeout=5)
    assert batches == [] and browser.mining_seconds == {}
    expected = top_projections(ref, mined, subset, "conv2", 5)
    assert _indices(browser.top_entries) == _indices(expected)
    assert [e.value for e in browser.top_entries] == [e.value for e in expected]
    assert [e.position for e in browser.top_entries] == [e.position for e in expected]
    # only the 9 shown images, once each, and the picked image (the redraw takes it)
    assert sorted(data.reads) == sorted(_indices(expected) + [browser.image_index])
    data.reads.clear()
    browser.layer = "conv1"
    browser.channel = 3
    assert browser.wait(timeout=5) and batches == []
    expected = top_projections(ref, mined, subset, "conv1", 3)
    assert _indices(browser.top_entries) == _indices(expected)
    on_the_way = _indices(top_projections(ref, mined, subset, "conv1", 5))  # before channel 3
    assert set(data.reads) <= set(_indices(expected) + on_the_way) | {browser.image_index}
    assert "not mined" not in browser._top_caption.text
    browser.close()


def test_a_topk_object_is_accepted_and_not_changed(d, subset, mined, batches):
    browser = LayerBrowser(d.model, dataset=subset, mean=d.mean, top=mined, layer="conv2")
    browser.show_top = True
    assert browser.wait(timeout=5) and batches == []
    assert browser.top_entries is not None
    browser.layer = "conv3"
    browser._mine_button.click()
    assert browser.wait(timeout=60)
    assert set(mined.layers) == {"features.1", "features.5"}  # the caller's TopK unchanged
    assert set(browser.top.layers) == {"features.1", "features.5", "features.9"}
    browser.close()


def test_layers_not_in_the_file_are_marked_and_mined_on_click(d, subset, path, ref, batches):
    browser = LayerBrowser(d.model, dataset=subset, mean=d.mean, top=path, show_top=True)
    labels = dict((name, label) for label, name in browser._layer_menu.options)
    assert "not mined" not in labels["conv1"] and "not mined" not in labels["conv2"]
    assert labels["conv3"].endswith("— not mined") and labels["fc4"].endswith("— not mined")
    browser.layer = "conv3"
    assert browser.wait(timeout=5)
    button = browser._mine_button
    assert button.layout.display != "none"
    assert button.description.startswith("Mine conv3 (about ")
    assert "on this machine for 200 images)" in button.description
    assert "estimate" in browser._top_caption.text
    assert browser.mining_seconds == {} and browser.top_entries is None
    assert batches == [1, 8, 8]  # only the estimate's small timed batches, no mining pass
    browser.channel = 4  # moving on does not start mining (nor time the layer again)
    assert browser.wait(timeout=5) and browser.mining_seconds == {} and len(batches) == 3
    button.click()
    assert browser.wait(timeout=60)
    assert "features.9" in browser.mining_seconds and button.layout.display == "none"
    expected = top_projections(
        ref, mine(ref, subset, layers=["conv3"], progress=False), subset, "conv3", 4
    )
    assert _indices(browser.top_entries) == _indices(expected)
    assert [e.value for e in browser.top_entries] == [e.value for e in expected]
    labels = dict((name, label) for label, name in browser._layer_menu.options)
    assert "not mined" not in labels["conv3"] and "not mined" in labels["fc4"]
    assert set(browser.top.layers) == {"features.1", "features.5", "features.9"}
    assert browser.top.count == 200
    browser.close()


def test_the_mined_results_save_and_reopen(d, subset, path, tmp_path, batches):
    browser = LayerBrowser(d.model, dataset=subset, mean=d.mean, top=path, layer="conv3")
    browser.show_top = True
    browser._mine_button.click()
    assert browser.wait(timeout=60)
    browser.top.save(tmp_path / "more.pt")
    browser.close()
    batches.clear()
    again = LayerBrowser(d.model, dataset=subset, mean=d.mean, top=tmp_path / "more.pt")
    again.layer, again.show_top = "conv3", True
    assert again.wait(timeout=5) and batches == []
    assert again.top_entries is not None
    again.close()


def test_a_file_from_another_model_is_refused(d, subset, path):
    other = SmallZFNet(in_channels=1, num_classes=10).eval()
    with pytest.raises(ValueError, match="digits-top9.pt was mined with a different model"):
        LayerBrowser(other, dataset=subset, mean=d.mean, top=path)
    with pytest.raises(ValueError, match="mined on a different data set"):
        LayerBrowser(d.model, dataset=Subset(d.dataset, range(1, 201)), mean=d.mean, top=path)
    with pytest.raises(ValueError, match="top= needs dataset="):
        LayerBrowser(d.model, images=subset, mean=d.mean, top=path)


def test_load_top_refuses_in_the_status_line(d, subset, path, tmp_path):
    other = Inspector(SmallZFNet(in_channels=1, num_classes=10).eval())
    foreign = tmp_path / "other-model.pt"
    mine(other, subset, layers=["conv1"], progress=False).save(foreign)
    browser = LayerBrowser(d.model, dataset=subset, mean=d.mean)
    assert browser.load_top(foreign) is False
    assert "other-model.pt was mined with a different model" in browser.status
    assert browser.top is None
    assert browser.load_top(path) is True
    assert "conv1, conv2" in browser.status
    labels = [label for label, _ in browser._layer_menu.options]
    assert any(label.startswith("conv3") and "not mined" in label for label in labels)
    browser.close()


class Folder(Dataset):
    """A tiny labelled data set, like torchvision's ImageFolder: ``.targets``, ``.classes``."""

    def __init__(self, images, targets, classes):
        self.images, self.targets, self.classes = images, targets, classes

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        return self.images[index], self.targets[index]


def test_data_set_labels_and_classes_beside_tiles(d, ref):
    images = torch.stack([d.dataset[i][0] for i in range(30)])
    targets = [i % 3 for i in range(30)]
    data = Folder(images, targets, ["cats", "dogs", "owls"])
    top = mine(ref, data, layers=["conv2"], progress=False)
    browser = LayerBrowser(
        d.model, dataset=data, mean=d.mean, classes=d.classes, top=top, layer="conv2"
    )
    browser.show_top = True
    assert browser.wait(timeout=5)
    labels = browser._top_labels.value
    for entry in browser.top_entries:
        name = data.classes[targets[entry.image_index]]
        assert f"#{entry.image_index} · {name} · {entry.value:.3g}" in labels
    assert browser.classes == list(d.classes)  # the model's names are unchanged
    renamed = LayerBrowser(
        d.model, dataset=data, mean=d.mean, top=top, dataset_classes=["A", "B", "C"]
    )
    renamed.layer, renamed.show_top = "conv2", True
    first = renamed.top_entries[0]
    assert f"#{first.image_index} · {'ABC'[targets[first.image_index]]} ·" in (
        renamed._top_labels.value
    )
    browser.close()
    renamed.close()
