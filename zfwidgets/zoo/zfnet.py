"""The paper's ImageNet architecture (Fig. 3) and Krizhevsky's, for the comparison of Fig. 6.

Both take 224x224 crops and use the paper's 3x3 stride-2 overlapping max pools with local
response normalisation after the first two, dense connections (no 2-GPU split), and two
4096-unit fully connected layers with dropout 0.5. The pools round up (``ceil_mode``), as the
original Caffe-style implementations did, which gives the paper's map sizes exactly:
ZFNet 110 -> 55 -> 26 -> 13 -> 13 -> 13 -> 6.

Example:
    >>> model = ZFNet(num_classes=10)
    >>> model(torch.zeros(1, 3, 224, 224)).shape
    torch.Size([1, 10])
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["KrizhevskyNet", "ZFNet"]


def _classifier(features: int, num_classes: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Dropout(0.5),
        nn.Linear(features, 4096),
        nn.ReLU(inplace=True),
        nn.Dropout(0.5),
        nn.Linear(4096, 4096),
        nn.ReLU(inplace=True),
        nn.Linear(4096, num_classes),
    )


def _features(conv1: nn.Conv2d, conv2: nn.Conv2d) -> nn.Sequential:
    return nn.Sequential(
        conv1,
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, ceil_mode=True),
        nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0),
        conv2,
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, ceil_mode=True),
        nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0),
        nn.Conv2d(conv2.out_channels, 384, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(384, 384, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, ceil_mode=True),
    )


class _ImageNetNet(nn.Module):
    """The shared layout; subclasses choose the first two conv layers."""

    def __init__(self, conv1: nn.Conv2d, conv2: nn.Conv2d, num_classes: int) -> None:
        super().__init__()
        self.features = _features(conv1, conv2)
        self.classifier = _classifier(256 * 6 * 6, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores (logits) for a batch of 224x224 crops."""
        return self.classifier(torch.flatten(self.features(x), 1))


class ZFNet(_ImageNetNet):
    """Zeiler & Fergus's model: conv1 96 filters 7x7 stride 2, conv2 256 5x5 stride 2.

    The smaller first-layer filter and stride came from the visualisations (Fig. 6): they
    remove the aliasing and dead filters of Krizhevsky's 11x11 stride-4 layer.
    """

    def __init__(self, num_classes: int = 1000, in_channels: int = 3) -> None:
        conv1 = nn.Conv2d(in_channels, 96, 7, stride=2, padding=1)
        super().__init__(conv1, nn.Conv2d(96, 256, 5, stride=2), num_classes)


class KrizhevskyNet(_ImageNetNet):
    """Krizhevsky et al.'s layout with dense connections: conv1 96 filters 11x11 stride 4."""

    def __init__(self, num_classes: int = 1000, in_channels: int = 3) -> None:
        conv1 = nn.Conv2d(in_channels, 96, 11, stride=4, padding=2)
        super().__init__(conv1, nn.Conv2d(96, 256, 5, padding=2), num_classes)
