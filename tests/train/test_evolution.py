"""Evolution (Fig. 4) against a brute-force recomputation with each snapshot's own weights."""

from __future__ import annotations

import pytest
import torch
from trainkit import brute_force, tiny_data, tiny_run

import zfwidgets.train.evolution as evolution
from zfwidgets import Inspector
from zfwidgets.train import Evolution, load_run

K = 3


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = tmp_path_factory.mktemp("evo") / "run"
    tiny_run(path, epochs=3, snapshot_epochs=(1, 3))
    return load_run(path)


@pytest.fixture(scope="module")
def probe(run):
    train_set, _ = tiny_data(n_train=96)
    return train_set.images[::3] - run.mean  # 32 images as the model sees them


def test_evolution_equals_brute_force_per_epoch(run, probe, tmp_path):
    evo = Evolution(run, probe=probe, k=K, device="cpu", cache_dir=tmp_path / "cache")
    assert evo.layers == ["conv1", "conv2", "conv3"]
    expected = {epoch: brute_force(run.model(epoch), probe, K) for epoch in run.epochs}
    for epoch in run.epochs:
        for layer in evo.layers:
            got = evo.top(epoch, layer)
            values, images, positions = expected[epoch][layer]
            torch.testing.assert_close(got.values, values, rtol=1e-5, atol=1e-6)
            assert torch.equal(got.images, images), (epoch, layer)
            assert torch.equal(got.positions, positions), (epoch, layer)
    # changed(): the top-1 image differs from the previous snapshot's (none at the first).
    for layer in evo.layers:
        assert not evo.changed(1, layer).any()
        assert torch.equal(
            evo.changed(3, layer), expected[3][layer][1][:, 0] != expected[1][layer][1][:, 0]
        )
    # The weights really moved between the snapshots, so the comparison is not vacuous.
    assert not torch.equal(expected[1]["conv2"][0], expected[3]["conv2"][0])


def test_unit_identity_and_projection_use_each_snapshots_weights(run, probe, tmp_path):
    evo = Evolution(run, probe=probe, k=K, device="cpu", cache_dir=tmp_path / "cache")
    layer, channel = "conv2", 5
    crops = {}
    for epoch in run.epochs:
        t = evo.top(epoch, layer)
        image = probe[int(t.images[channel, 0])]
        y, x = (int(v) for v in t.positions[channel, 0])
        insp = Inspector(run.model(epoch), device="cpu")  # independent of evo's inspector
        # Map `channel` of this epoch's own model has its maximum exactly there.
        act = insp.activations(image, layer)[channel]
        assert float(act[y, x]) == pytest.approx(float(act.max()))
        assert float(act[y, x]) == pytest.approx(float(t.values[channel, 0]), rel=1e-5)
        full = insp.project(image, layer, channel, position=(y, x))
        box = insp.receptive_field(layer, y, x, tuple(image.shape))
        rows, cols = box.slices
        crops[epoch] = evo.projection(epoch, layer, channel)
        torch.testing.assert_close(crops[epoch], full[:, rows, cols])
        assert evo.box(epoch, layer, channel) == box
        assert torch.equal(evo.patch(epoch, layer, channel), image[:, rows, cols])
        # Outside the box the projection is zero: the crop loses nothing.
        outside = full.clone()
        outside[:, rows, cols] = 0
        assert float(outside.abs().max()) == 0.0
        assert evo.image(int(t.images[channel, 0])).equal(image)
        assert crops[epoch].shape == (1, box.bottom - box.top, box.right - box.left)
    entries = evo.entries(3, layer, channel)
    assert [e.image_index for e in entries] == evo.top(3, layer).images[channel].tolist()


def test_disk_cache_is_reused_and_checked(run, probe, tmp_path, monkeypatch):
    first = Evolution(run, probe=probe, k=K, device="cpu", cache_dir=tmp_path / "c")
    top = first.top(3, "conv3")
    assert first.is_cached(3) and not first.is_cached(1)

    def no_mining(*args, **kwargs):
        raise AssertionError("mined again although the cache was on disk")

    monkeypatch.setattr(evolution, "mine", no_mining)
    second = Evolution(run, probe=probe, k=K, device="cpu", cache_dir=tmp_path / "c")
    assert second.is_cached(3)
    assert torch.equal(second.top(3, "conv3").images, top.images)
    # A different probe set never reuses those results.
    third = Evolution(run, probe=probe[:10], k=K, device="cpu", cache_dir=tmp_path / "c")
    assert not third.is_cached(3)


def test_cache_goes_to_the_user_dir_for_bundled_runs(run, probe, tmp_path, monkeypatch):
    monkeypatch.setenv("ZFWIDGETS_CACHE", str(tmp_path / "user"))
    monkeypatch.setattr(evolution, "_is_bundled", lambda path: True)
    evo = Evolution(run, probe=probe, k=K, device="cpu")
    assert evo.cache_dir.is_relative_to(tmp_path / "user")
    evo.top(1, "conv1")
    assert list((tmp_path / "user").rglob("epoch_0001_*.pt"))
    monkeypatch.setattr(evolution, "_is_bundled", lambda path: False)
    assert Evolution(run, probe=probe, k=K, device="cpu").cache_dir == run.path / "evolution"


def test_default_probe_is_the_manifests_training_set(run):
    evo = Evolution(run, k=K, device="cpu")
    # The tiny run names the demo's training split; the probe is all of it, mean-subtracted.
    assert len(evo.probe) == 4000
    from zfwidgets.train.data import demo_data

    assert torch.equal(evo.image(7), demo_data()[0].images[7] - run.mean)


def test_bad_arguments(run, probe):
    with pytest.raises(ValueError, match="epoch 2 has no snapshot"):
        Evolution(run, probe=probe, device="cpu").top(2, "conv1")
    with pytest.raises(ValueError, match="unknown layer 'conv9'"):
        Evolution(run, probe=probe, layers=["conv9"], device="cpu")
    evo = Evolution(run, probe=probe, layers=["conv1"], device="cpu")
    with pytest.raises(ValueError, match="layer 'conv2' is not followed"):
        evo.top(1, "conv2")
    with pytest.raises(ValueError, match="k must be a positive int"):
        Evolution(run, probe=probe, k=0)
