"""Shared helpers for the training tests: a tiny model on a few digits, trained in seconds."""

from __future__ import annotations

import torch
from torch import nn

from zfwidgets.train import SnapshotRecorder, TrainConfig, train
from zfwidgets.train.data import PixelDataset, demo_data
from zfwidgets.zoo import SmallZFNet

WIDTHS = (4, 8, 8)


def tiny_data(n_train: int = 96, n_val: int = 40) -> tuple[PixelDataset, PixelDataset]:
    """A class-mixed slice of the demo digits (pixels in [0, 1])."""
    train_set, val_set = demo_data()
    # The training split is sorted by class: take every k-th digit so that all classes appear.
    # The held-out split is interleaved by class (digit i is an i % 10): its first n_val will do.
    ti = torch.arange(0, len(train_set), len(train_set) // n_train)[:n_train]
    vi = torch.arange(n_val)
    return (
        PixelDataset(train_set.images[ti], train_set.labels[ti]),
        PixelDataset(val_set.images[vi], val_set.labels[vi]),
    )


def tiny_model(seed: int = 0, widths=WIDTHS) -> SmallZFNet:
    torch.manual_seed(seed)
    return SmallZFNet(widths=widths)


def tiny_config(epochs: int = 3, **kw) -> TrainConfig:
    kw.setdefault("batch_size", 32)
    kw.setdefault("schedule", "milestones")
    kw.setdefault("milestones", (2,))
    return TrainConfig(epochs=epochs, **kw)


def recorder(run_dir, epochs=(1, 2, 3, 4), **kw) -> SnapshotRecorder:
    kw.setdefault("model_kwargs", {"widths": WIDTHS})
    kw.setdefault("data", {"source": "demo", "split": "train"})
    return SnapshotRecorder(run_dir, epochs=epochs, **kw)


def tiny_run(run_dir, epochs: int = 3, snapshot_epochs=(1, 2, 3, 4), **rec_kw):
    """Train the tiny model with a recorder; returns (model, history)."""
    train_set, val_set = tiny_data()
    model = tiny_model()
    history = train(
        model,
        train_set,
        val_set,
        tiny_config(epochs),
        [recorder(run_dir, snapshot_epochs, **rec_kw)],
        device="cpu",
        progress=False,
    )
    return model, history


def brute_force(model: nn.Module, probe: torch.Tensor, k: int) -> dict[str, tuple]:
    """Loop over every image and map: argmax of each map, then sort images per map."""
    relus = {"conv1": model.features[1], "conv2": model.features[5], "conv3": model.features[9]}
    per_image = {name: [] for name in relus}
    for i in range(len(probe)):
        out = {}
        hooks = [
            m.register_forward_hook(lambda mod, inp, o, n=n, out=out: out.__setitem__(n, o.clone()))
            for n, m in relus.items()
        ]
        try:
            with torch.no_grad():
                model(probe[i : i + 1])
        finally:
            for h in hooks:
                h.remove()
        for name, act in out.items():
            rows = []
            for c in range(act.shape[1]):
                fmap = act[0, c]
                flat = int(torch.argmax(fmap))
                rows.append((float(fmap.flatten()[flat]), divmod(flat, fmap.shape[1])))
            per_image[name].append(rows)
    result = {}
    for name, table in per_image.items():
        channels = len(table[0])
        values, images, positions = [], [], []
        for c in range(channels):
            order = sorted(range(len(probe)), key=lambda i: (-table[i][c][0], i))[:k]
            values.append([table[i][c][0] for i in order])
            images.append(order)
            positions.append([table[i][c][1] for i in order])
        result[name] = (torch.tensor(values), torch.tensor(images), torch.tensor(positions))
    return result
