"""Training: the paper's recipe, a safe snapshot recorder, and feature evolution (Fig. 4).

Depends on ``zfwidgets.core`` and ``zfwidgets.zoo``; nothing in core imports it.

Example (on 64 digits, so that it is quick; train on all of ``train_set`` for a real run):
    >>> import tempfile
    >>> from zfwidgets.train import SnapshotRecorder, TrainConfig, load_run, train
    >>> from zfwidgets.train.data import demo_data, subset_evenly
    >>> from zfwidgets.zoo import SmallZFNet
    >>> train_set, val_set = demo_data()
    >>> few, some = subset_evenly(train_set, 64), subset_evenly(val_set, 100)
    >>> folder = tempfile.TemporaryDirectory()
    >>> data = {"source": "demo", "split": "train", "limit": 64}   # lets Evolution rebuild it
    >>> rec = SnapshotRecorder(folder.name + "/mine", data=data)
    >>> history = train(SmallZFNet(), few, some, TrainConfig(epochs=2), [rec], progress=False)
    >>> load_run(folder.name + "/mine").epochs
    [1, 2]
    >>> folder.cleanup()
"""

from zfwidgets.train.evolution import Evolution
from zfwidgets.train.recipe import (
    History,
    TrainConfig,
    TrainContext,
    TrainingDiverged,
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
    "TrainingDiverged",
    "load_run",
    "renorm_conv_filters",
    "train",
    "train_briefly",
]
