"""Shared helpers for the training tests: a tiny model on a few digits, trained in seconds."""

from __future__ import annotations

import torch

from zfwidgets.train import SnapshotRecorder, TrainConfig, train
from zfwidgets.train.data import PixelDataset, demo_data
from zfwidgets.zoo import SmallZFNet

WIDTHS = (4, 8, 8)


def tiny_data(n_train: int = 96, n_val: int = 40) -> tuple[PixelDataset, PixelDataset]:
    """A class-mixed slice of the demo digits (pixels in [0, 1])."""
    train_set, val_set = demo_data()
    # The splits are sorted by class: take every k-th digit so that all classes appear.
    ti = torch.arange(0, len(train_set), len(train_set) // n_train)[:n_train]
    vi = torch.arange(0, len(val_set), len(val_set) // n_val)[:n_val]
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
