"""The demo's own training run, shipped in the package for the EvolutionScrubber."""

from __future__ import annotations

import json
from pathlib import Path

import torch

import zfwidgets
from zfwidgets import demo
from zfwidgets.core.mining import data_fingerprint
from zfwidgets.train import Evolution
from zfwidgets.train.data import demo_data

DATA = Path(zfwidgets.__file__).parent / "zoo" / "data"


def test_bundled_snapshots_match_the_shipped_model():
    run = demo.snapshots()
    assert run.epochs == [1, 2, 5, 10, 20, 30]
    assert [row["epoch"] for row in run.history] == list(range(1, 31))
    shipped = demo.load().model.state_dict()
    last = run.model(30).state_dict()
    for k, v in shipped.items():
        assert torch.equal(last[k], v.half().float()), k  # float16 storage of the same weights
    first = run.model(1).state_dict()
    assert not torch.allclose(first["features.0.weight"], last["features.0.weight"], atol=1e-3)
    assert run.manifest["data"]["source"] == "demo"
    train_set, _ = demo_data()
    assert run.manifest["data"]["size"] == len(train_set)
    assert run.manifest["data"]["fingerprint"] == data_fingerprint(train_set)
    assert run.manifest["config"]["schedule"] == "milestones"


def test_recorded_accuracy_is_the_measured_one():
    d = demo.load()
    with torch.no_grad():
        predicted = d.model(d.dataset.images).argmax(1)
    measured = (predicted == d.dataset.labels).sum().item() / len(d.dataset.labels)
    meta = json.loads((DATA / "demo_meta.json").read_text())
    assert abs(meta["accuracy"] - measured) < 1e-9
    assert abs(d.accuracy - measured) < 1e-9
    assert abs(demo.snapshots().history[-1]["val_acc"] - measured) < 1e-9


def test_package_data_stays_small():
    total = sum(p.stat().st_size for p in DATA.rglob("*") if p.is_file())
    assert total < 8 * 2**20, f"package data is {total / 2**20:.1f} MiB"


def test_evolution_of_the_bundled_run_caches_in_the_user_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("ZFWIDGETS_CACHE", str(tmp_path))
    evo = Evolution(demo.snapshots(), layers=["conv1"], k=9, device="cpu")
    assert evo.cache_dir.is_relative_to(tmp_path)
    assert len(evo.probe) == 4000
    top = evo.top(1, "conv1")
    assert top.values.shape == (32, 9) and bool((top.images >= 0).all())
    assert evo.projection(1, "conv1", 0).shape[0] == 1
    assert not (DATA / "demo_run" / "evolution").exists()
