"""A small torchvision-style residual network for 28x28 digits (or other small images).

The layout is torchvision's ResNet scaled down: a ``stem`` (3x3 conv, batch norm, ReLU), three
stages ``layer1``..``layer3`` of :class:`BasicBlock` s, the last two halving the map side
(28 -> 14 -> 7 on the digits), then ``avgpool`` (global average pooling) and one linear
layer ``fc``. There is no max pool: the deconvnet's switches are not needed here, only its
rectification rule at every ReLU and the adjoint of each residual addition (the projection
splits into the block's convolutions and the identity path, and the two are summed).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["BasicBlock", "SmallResNet"]


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding 1 and no bias (a batch norm follows it)."""
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 conv + batch-norm layers with a shortcut around them, as torchvision's.

    ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``: the shortcut is the identity, or
    a 1x1 stride-``stride`` conv + batch norm (``downsample``) when the block changes the
    width or the side. One ``relu`` module is applied twice, as in torchvision; the engine
    names its calls ``relu`` and ``relu#2``.

    Example:
        >>> block = BasicBlock(8, 16, stride=2)
        >>> block(torch.zeros(1, 8, 14, 14)).shape
        torch.Size([1, 16, 7, 7])
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The block's output, same batch, ``out_channels`` maps, side divided by ``stride``."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class _Stem(nn.Module):
    """3x3 conv, batch norm, ReLU: the first layer, at full resolution."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_channels, out_channels)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn1(self.conv1(x)))


class SmallResNet(nn.Module):
    """ResNet-style convnet: stem, three stages of residual blocks, global pool, one FC layer.

    Module names follow torchvision (``layer1``..``layer3``, ``avgpool``, ``fc``), so the
    Inspector's blocks read ``stem, layer1, layer2, layer3, avgpool, fc``. With the defaults it
    has 77,754 parameters (a quarter of :class:`~zfwidgets.zoo.SmallZFNet`'s) and its maps
    are 16x28x28 (stem, layer1), 32x14x14 (layer2) and 64x7x7 (layer3) for 28x28 inputs; an
    epoch on the 4,000 demo digits takes about 2 s on two CPU cores.

    The batch norms' running statistics start at mean 0, variance 1 and follow the batches
    with momentum 0.1. With ``zfwidgets train``'s batch of 128 (32 steps an epoch on the
    digits) they have not caught up by the end of epoch 1, so that snapshot is near chance in
    eval mode (measured: 10 %, then about 40 % and 70 % after epochs 2 and 3, as small-zf
    does under the same settings); ``--batch-size 32`` gives 40 % after epoch 1 and 81 %
    after epoch 2.

    Args:
        in_channels: image channels (1 for digits, 3 for colour images).
        num_classes: number of output logits.
        widths: maps of the stem and ``layer1``, of ``layer2``, and of ``layer3``; the last
            two stages halve the side.
        blocks: residual blocks in each stage.

    Example:
        >>> net = SmallResNet()
        >>> net(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
        >>> [name for name, _ in net.named_children()]
        ['stem', 'layer1', 'layer2', 'layer3', 'avgpool', 'fc']
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        widths: Sequence[int] = (16, 32, 64),
        blocks: Sequence[int] = (1, 1, 1),
    ) -> None:
        super().__init__()
        if len(widths) != 3 or len(blocks) != 3:
            raise ValueError(
                f"widths and blocks must have 3 entries (layer1..layer3); got {tuple(widths)} "
                f"and {tuple(blocks)}"
            )
        if min(blocks) < 1:
            raise ValueError(f"every stage needs at least one block; got {tuple(blocks)}")
        w = [int(v) for v in widths]
        self.stem = _Stem(in_channels, w[0])
        self.layer1 = self._stage(w[0], w[0], int(blocks[0]), stride=1)
        self.layer2 = self._stage(w[0], w[1], int(blocks[1]), stride=2)
        self.layer3 = self._stage(w[1], w[2], int(blocks[2]), stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(w[2], num_classes)

    @staticmethod
    def _stage(in_channels: int, out_channels: int, count: int, stride: int) -> nn.Sequential:
        """``count`` blocks; the first one changes the width and the side."""
        first = BasicBlock(in_channels, out_channels, stride)
        rest = [BasicBlock(out_channels, out_channels) for _ in range(count - 1)]
        return nn.Sequential(first, *rest)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map images ``(N, in_channels, H, W)`` to logits ``(N, num_classes)``."""
        x = self.stem(x)
        x = self.layer3(self.layer2(self.layer1(x)))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)
