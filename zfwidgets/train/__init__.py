"""Training: the paper's recipe, a safe snapshot recorder, and feature evolution (Fig. 4).

Depends on ``zfwidgets.core`` and ``zfwidgets.zoo``; nothing in core imports it.

Example:
    >>> from zfwidgets.train import SnapshotRecorder, TrainConfig, load_run, train
    >>> from zfwidgets.train.data import demo_data
    >>> from zfwidgets.zoo import SmallZFNet
    >>> train_set, val_set = demo_data()
    >>> rec = SnapshotRecorder("runs/mine", data={"source": "demo", "split": "train"})
    >>> train(SmallZFNet(), train_set, val_set, TrainConfig(epochs=2), [rec])  # doctest: +SKIP
    >>> load_run("runs/mine").epochs                                          # doctest: +SKIP
    [1, 2]
"""

from zfwidgets.train.evolution import Evolution
from zfwidgets.train.recipe import (
    History,
    TrainConfig,
    TrainContext,
    renorm_conv_filters,
    train,
    train_briefly,
)
from zfwidgets.train.snapshots import Run, SnapshotError, SnapshotRecorder, load_run

__all__ = [
    "Evolution",
    "History",
    "Run",
    "SnapshotError",
    "SnapshotRecorder",
    "TrainConfig",
    "TrainContext",
    "load_run",
    "renorm_conv_filters",
    "train",
    "train_briefly",
]
