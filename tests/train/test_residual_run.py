"""`zfwidgets train --arch small-resnet`: recorded, reloaded, and followed by Evolution and the
EvolutionScrubber, checked against a brute-force recomputation with forward hooks."""

from __future__ import annotations

import pytest
import torch

from zfwidgets import EvolutionScrubber, Inspector
from zfwidgets.cli import main
from zfwidgets.train import Evolution, load_run
from zfwidgets.train.architectures import ALLOWED_CLASSES
from zfwidgets.train.command import ARCHITECTURES
from zfwidgets.zoo import SmallResNet

K = 9
LAYERS = ["stem", "layer1", "layer2", "layer3", "avgpool"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("resnet") / "run"
    argv = ["train", "--arch", "small-resnet", "--data", "demo", "--limit", "64"]
    argv += ["--batch-size", "16", "--epochs", "3", "--snapshot-epochs", "1,2,3"]
    assert main([*argv, "--out", str(out), "--no-progress"]) == 0
    return load_run(out)


def _brute_force(model: SmallResNet, probe: torch.Tensor, k: int) -> dict[str, tuple]:
    """Each stage's output from forward hooks on the model itself, image by image, then the
    k strongest images per map (ties: lower image index first; in a map: first maximum)."""
    outputs: dict[str, list[torch.Tensor]] = {name: [] for name in LAYERS}
    hooks = [
        getattr(model, name).register_forward_hook(
            lambda mod, inp, out, name=name: outputs[name].append(out[0].clone())
        )
        for name in LAYERS
    ]
    try:
        with torch.no_grad():
            for image in probe:
                model(image[None])
    finally:
        for h in hooks:
            h.remove()
    result = {}
    for name, maps in outputs.items():
        acts = torch.stack(maps)  # (N, C, H, W)
        flat = acts.flatten(2)
        best, where = flat.max(2)  # (N, C): first maximum in each map
        values, images, positions = [], [], []
        for c in range(acts.shape[1]):
            order = sorted(range(len(probe)), key=lambda i, c=c: (-float(best[i, c]), i))[:k]
            values.append([float(best[i, c]) for i in order])
            images.append(order)
            positions.append([divmod(int(where[i, c]), acts.shape[-1]) for i in order])
        result[name] = (torch.tensor(values), torch.tensor(images), torch.tensor(positions))
    return result


@pytest.fixture(scope="module")
def evolution(run, tmp_path_factory):
    return Evolution(run, k=K, device="cpu", cache_dir=tmp_path_factory.mktemp("evo-cache"))


@pytest.fixture(scope="module")
def expected(run, evolution):
    probe = torch.stack([evolution.image(i) for i in range(64)])
    return {epoch: _brute_force(run.model(epoch), probe, K) for epoch in run.epochs}


def test_small_resnet_is_listed_everywhere():
    assert ARCHITECTURES["small-resnet"] == ("SmallResNet", None)
    assert "SmallResNet" in ALLOWED_CLASSES


def test_the_run_is_recorded_and_reloads(run):
    assert run.epochs == [1, 2, 3]
    assert run.architecture["class"] == "SmallResNet"
    assert run.architecture["kwargs"] == {"in_channels": 1, "num_classes": 10}
    assert run.manifest["extra"]["arch"] == "small-resnet"
    model = run.model(3)
    assert type(model) is SmallResNet and not model.training
    # The batch norms' running statistics are part of the snapshot, not left at (0, 1).
    assert not torch.equal(model.stem.bn1.running_var, torch.ones(16))
    assert not torch.equal(run.state_dict(1)["fc.weight"], run.state_dict(3)["fc.weight"])


def test_evolution_top9_equals_brute_force(run, evolution, expected):
    assert evolution.layers == LAYERS  # the default: every block with feature maps
    assert len(evolution.probe) == 64  # the manifest's 64 training digits
    for epoch in run.epochs:
        for layer in LAYERS:
            got = evolution.top(epoch, layer)
            values, images, positions = expected[epoch][layer]
            assert got.values.shape == (values.shape[0], K)
            torch.testing.assert_close(got.values, values, rtol=1e-5, atol=1e-6)
            assert torch.equal(got.images, images), (epoch, layer)
            assert torch.equal(got.positions, positions), (epoch, layer)
    assert evolution.changed(3, "layer3").any()  # the weights moved: not a vacuous check


@pytest.mark.parametrize("layer", ["layer2", "avgpool"])
def test_projections_use_each_snapshots_weights(run, evolution, layer):
    channel = 5
    for epoch in run.epochs:
        t = evolution.top(epoch, layer)
        image = evolution.image(int(t.images[channel, 0]))
        y, x = (int(v) for v in t.positions[channel, 0])
        insp = Inspector(run.model(epoch), device="cpu")
        full = insp.project(image, layer, channel, position=(y, x))
        rows, cols = insp.receptive_field(layer, y, x, tuple(image.shape)).slices
        torch.testing.assert_close(evolution.projection(epoch, layer, channel), full[:, rows, cols])
    assert len(evolution.entries(3, layer, channel)) == K


def test_the_scrubber_shows_the_top_images(evolution, expected):
    widget = EvolutionScrubber(evolution, layer="layer3")
    try:
        assert widget.wait(120)
        assert widget._layer_menu.options == tuple(LAYERS)
        for layer in ("stem", "layer3"):
            widget.layer = layer
            assert widget.wait(120)
            for epoch in widget.epochs:
                widget.epoch = epoch
                frame = widget.frame
                _, images, _ = expected[epoch][layer]
                assert frame.sources == tuple(images[:, 0].tolist()), (layer, epoch)
        frame = widget.frame
        index = 3
        widget._on_canvas_click(*frame.geometry.center(index))
        assert widget.selected == frame.maps[index]
        listing = widget._top_caption.help
        shown = [int(part.split(" ")[0]) for part in listing.split("#")[1:]]
        _, images, _ = expected[widget.epoch]["layer3"]
        assert shown == images[frame.maps[index]].tolist() and len(shown) == K
        assert widget.status_line.level != "error"
    finally:
        widget.close()
