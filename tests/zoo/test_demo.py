"""Tests for the bundled offline demo (zfwidgets.demo) and SmallZFNet (zfwidgets.zoo)."""

from __future__ import annotations

import importlib.util
import json
import socket
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch

from zfwidgets import demo
from zfwidgets.core.mining import data_fingerprint
from zfwidgets.train.data import demo_data
from zfwidgets.zoo import SmallZFNet

DATA = resources.files("zfwidgets.zoo").joinpath("data")


@pytest.fixture(scope="module")
def loaded() -> demo.Demo:
    return demo.load()


def test_load_works_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a network connection during load() fails the test."""

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("demo.load() tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    demo._arrays.cache_clear()
    demo._meta.cache_clear()
    demo._state_dict.cache_clear()
    d = demo.load()
    assert len(d.dataset) == 1000


def test_shapes_and_dtypes(loaded: demo.Demo) -> None:
    image, label = loaded.dataset[0]
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32
    assert isinstance(label, int) and 0 <= label <= 9
    image, label = loaded.train[123]
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32
    assert isinstance(label, int)
    assert loaded.mean.shape == (1, 28, 28) and loaded.mean.dtype == torch.float32
    assert 0.0 <= loaded.mean.min() and loaded.mean.max() <= 1.0
    assert loaded.classes == [str(i) for i in range(10)]
    assert isinstance(loaded.accuracy, float) and 0.0 <= loaded.accuracy <= 1.0
    assert isinstance(loaded.model, SmallZFNet) and not loaded.model.training


def test_images_are_pixels_over_255_minus_training_mean(loaded: demo.Demo) -> None:
    with np.load(DATA.joinpath("mnist_5k.npz").open("rb")) as npz:
        images, labels = npz["images"], npz["labels"]
        train_idx, test_idx = npz["train_idx"], npz["test_idx"]
    pixels = torch.from_numpy(images[test_idx[:5].astype(np.int64)]).float()[:, None] / 255
    torch.testing.assert_close(loaded.dataset.images[:5] + loaded.mean, pixels)
    train_pixels = images[train_idx.astype(np.int64)].astype(np.float64) / 255
    np.testing.assert_allclose(loaded.mean[0].numpy(), train_pixels.mean(0), atol=1e-6)
    # Training images average to zero once the mean is subtracted.
    assert loaded.train.images.mean(0).abs().max() < 1e-5
    assert loaded.dataset[7][1] == int(labels[test_idx[7]])


def test_split_sizes_disjoint_and_stratified() -> None:
    with np.load(DATA.joinpath("mnist_5k.npz").open("rb")) as npz:
        assert npz["images"].shape == (5000, 28, 28) and npz["images"].dtype == np.uint8
        assert npz["labels"].shape == (5000,) and npz["labels"].dtype == np.uint8
        labels, train_idx, test_idx = npz["labels"], npz["train_idx"], npz["test_idx"]
    assert len(train_idx) == 4000 and len(test_idx) == 1000
    assert not set(train_idx.tolist()) & set(test_idx.tolist())
    assert sorted(train_idx.tolist() + test_idx.tolist()) == list(range(5000))
    assert np.bincount(labels[test_idx], minlength=10).tolist() == [100] * 10
    d = demo.load()
    assert len(d.dataset) == 1000 and len(d.train) == 4000


def test_held_out_split_is_interleaved_by_class(loaded: demo.Demo) -> None:
    """Held-out digit i is a digit i % 10, so the first images show every class, not 0s.

    Within a class the digits keep their order in the file (increasing index): together with
    the split being the complement of the (unchanged) training split, this pins the held-out
    order exactly to the class-sorted split of before, interleaved.
    """
    with np.load(DATA.joinpath("mnist_5k.npz").open("rb")) as npz:
        labels, train_idx, test_idx = npz["labels"], npz["train_idx"], npz["test_idx"]
    assert test_idx.dtype == np.uint16
    expected = [i % 10 for i in range(1000)]
    assert labels[test_idx].tolist() == expected
    assert loaded.dataset.labels.tolist() == expected
    assert demo.pixels().test_labels.tolist() == expected
    for c in range(10):
        assert (np.diff(test_idx[c::10].astype(np.int64)) > 0).all()
    # The same 1,000 digits as the training split leaves out (checked below to be unchanged).
    held_out = np.setdiff1d(np.arange(5000), train_idx.astype(np.int64))
    assert np.array_equal(np.sort(test_idx.astype(np.int64)), held_out)
    # Held-out image i is the stored image test_idx[i] (no other reordering on the way).
    raw = torch.from_numpy(labels[test_idx.astype(np.int64)].astype(np.int64))
    assert torch.equal(loaded.dataset.labels, raw)


def test_training_split_is_the_one_the_shipped_run_was_trained_on() -> None:
    """The training digits, in order, match the fingerprint the demo run recorded when trained."""
    train_set, _ = demo_data()
    recorded = json.loads((demo.run_dir() / "manifest.json").read_text(encoding="utf-8"))["data"]
    assert recorded["split"] == "train" and recorded["size"] == len(train_set) == 4000
    assert data_fingerprint(train_set) == recorded["fingerprint"]
    with np.load(DATA.joinpath("mnist_5k.npz").open("rb")) as npz:
        train_idx = npz["train_idx"]
    assert (np.diff(train_idx.astype(np.int64)) > 0).all()  # sorted, as documented


def test_the_script_turns_the_class_sorted_split_into_the_shipped_one(tmp_path) -> None:
    """scripts/make_demo_data.py --interleave-existing on the old file (held-out indices sorted,
    so 0s first) writes exactly the shipped arrays, and a second run changes nothing."""
    spec = importlib.util.spec_from_file_location(
        "make_demo_data", Path(__file__).resolve().parents[2] / "scripts" / "make_demo_data.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    with np.load(DATA.joinpath("mnist_5k.npz").open("rb")) as npz:
        shipped = {key: npz[key] for key in npz.files}
    old = tmp_path / "old.npz"
    np.savez_compressed(old, **dict(shipped, test_idx=np.sort(shipped["test_idx"])))
    with np.load(old) as npz:
        assert npz["labels"][npz["test_idx"][:100]].tolist() == [0] * 100  # the issue
    script.interleave_existing(old)
    with np.load(old) as npz:
        rewritten = {key: npz[key] for key in npz.files}
    assert rewritten.keys() == shipped.keys()
    for key, value in shipped.items():
        assert rewritten[key].dtype == value.dtype and np.array_equal(rewritten[key], value), key
    before = old.read_bytes()
    script.interleave_existing(old)
    assert old.read_bytes() == before
    with pytest.raises(AssertionError, match="train_idx changed"):
        script.check_interleaved(shipped, dict(shipped, train_idx=shipped["train_idx"][::-1]))


def test_shipped_weights_reproduce_recorded_accuracy(loaded: demo.Demo) -> None:
    with torch.no_grad():
        predictions = loaded.model(loaded.dataset.images).argmax(1)
    accuracy = (predictions == loaded.dataset.labels).float().mean().item()
    assert accuracy == pytest.approx(loaded.accuracy, abs=1e-3)
    assert accuracy >= 0.95  # a sanity floor; the recorded figure is in demo_meta.json


def test_load_returns_independent_models_and_tensors() -> None:
    a, b = demo.load(), demo.load()
    assert a.model is not b.model
    with torch.no_grad():
        a.model.features[0].weight.zero_()
        a.dataset.images.zero_()
    assert b.model.features[0].weight.abs().sum() > 0
    assert b.dataset.images.abs().sum() > 0
    assert demo.load().model.features[0].weight.abs().sum() > 0


def test_demo_is_frozen(loaded: demo.Demo) -> None:
    with pytest.raises(AttributeError):
        loaded.accuracy = 1.0  # type: ignore[misc]


def test_weights_load_with_weights_only() -> None:
    with resources.as_file(DATA.joinpath("demo_weights.pt")) as path:
        state = torch.load(path, map_location="cpu", weights_only=True)
    assert all(t.dtype == torch.float32 for t in state.values())
    SmallZFNet().load_state_dict(state)  # strict: every key present, every shape right


def test_meta_file() -> None:
    meta = json.loads(DATA.joinpath("demo_meta.json").read_text(encoding="utf-8"))
    assert {"accuracy", "epochs", "seed", "train_size", "test_size", "torch", "seconds"} <= set(
        meta
    )
    assert meta["train_size"] == 4000 and meta["test_size"] == 1000


@pytest.mark.parametrize("n", [1, 5])
def test_small_zfnet_output_shape(n: int) -> None:
    net = SmallZFNet().eval()
    assert net(torch.randn(n, 1, 28, 28)).shape == (n, 10)
    assert net.features(torch.randn(n, 1, 28, 28)).shape == (n, 64, 6, 6)


def test_small_zfnet_colour_32() -> None:
    net = SmallZFNet(in_channels=3, image_size=32).eval()
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert net.features(torch.randn(2, 3, 32, 32)).shape == (2, 64, 7, 7)


def test_small_zfnet_options() -> None:
    net = SmallZFNet(num_classes=4, widths=(8, 16, 24), conv1_kernel=7, conv1_stride=2).eval()
    assert net(torch.randn(3, 1, 28, 28)).shape == (3, 4)
    with pytest.raises(ValueError):
        SmallZFNet(widths=(8, 16))
    with pytest.raises(ValueError):
        SmallZFNet(image_size=4)
