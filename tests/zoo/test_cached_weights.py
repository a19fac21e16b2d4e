"""Pretrained weights from the local cache only: found when there, a one-line fallback when not."""

from __future__ import annotations

import warnings
from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision

from zfwidgets.zoo.registry import cached_weights, get_model


def _fake_checkpoint(hub: Path, name: str) -> dict:
    url = torchvision.models.get_model_weights(name).DEFAULT.url
    state = getattr(torchvision.models, name)().state_dict()
    (hub / "checkpoints").mkdir(parents=True)
    torch.save(state, hub / "checkpoints" / Path(urlparse(url).path).name)
    return state


def test_weights_in_the_cache_are_loaded_without_the_network(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    assert cached_weights("squeezenet1_1") is None
    state = _fake_checkpoint(tmp_path, "squeezenet1_1")
    assert cached_weights("squeezenet1_1") is not None
    model, shape = get_model("squeezenet1_1", pretrained=True, download=False)
    assert shape == (3, 224, 224)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, state[name]), name


def test_missing_weights_fall_back_with_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def no_network(*args, **kwargs):
        raise AssertionError("download=False must never reach the network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, _ = get_model("squeezenet1_1", pretrained=True, download=False)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "\n" not in messages[0]
    assert "not in the local cache" in messages[0] and "random weights" in messages[0]
    assert not model.training
