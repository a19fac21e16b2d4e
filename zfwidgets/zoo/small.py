"""A small Zeiler & Fergus style convnet for 28x28 digits (or other small images).

It keeps the parts of the paper's architecture (Fig. 3) that matter to the deconvnet: convolutions
followed by ReLU, overlapping 3x3 stride-2 max pools whose switches must be recorded, local
response normalisation across maps, and a dropout-regularised classifier on top. It is scaled
down so that it trains on a laptop CPU in a couple of minutes and runs at interactive speed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["SmallKrizhevskyNet", "SmallZFNet"]


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    """Spatial size after a convolution or pooling layer (PyTorch's floor rounding)."""
    return (size + 2 * padding - kernel) // stride + 1


class SmallZFNet(nn.Module):
    """ZF-style convnet: three conv layers, two overlapping max pools, two FC layers.

    The layout is torchvision's: ``features`` (an ``nn.Sequential`` of conv/ReLU/pool/LRN) then
    ``torch.flatten`` then ``classifier`` (an ``nn.Sequential`` ending in logits). Nothing is
    special-cased, so tools that work on torchvision's AlexNet work on it too.

    Args:
        in_channels: image channels (1 for digits, 3 for colour images).
        num_classes: number of output logits.
        widths: number of filters in conv1, conv2 and conv3.
        conv1_kernel: conv1 filter size (odd, padded to keep the size at stride 1); default
            ``CONV1[0]``, 5.
        conv1_stride: conv1 stride; default ``CONV1[1]``, 1. The paper shrank AlexNet's conv1
            (11x11 stride 4 to 7x7 stride 2) because a large stride aliases; on 28x28 inputs
            stride 1 is the natural choice, and the parameter lets the architecture-selection
            comparison be redone.
        image_size: side of the (square) input, needed to size the first linear layer.

    Example:
        >>> net = SmallZFNet()
        >>> net(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """

    #: conv1's (kernel, stride) when the arguments are left out; a subclass changes only this.
    CONV1: tuple[int, int] = (5, 1)

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        widths: Sequence[int] = (32, 64, 64),
        conv1_kernel: int | None = None,
        conv1_stride: int | None = None,
        image_size: int = 28,
    ) -> None:
        super().__init__()
        if len(widths) != 3:
            raise ValueError(f"widths must have 3 entries (conv1..conv3), got {tuple(widths)}")
        w0, w1, w2 = (int(w) for w in widths)
        conv1_kernel, conv1_stride = self._conv1(conv1_kernel, conv1_stride)
        pad1 = conv1_kernel // 2

        self.features = nn.Sequential(
            nn.Conv2d(in_channels, w0, conv1_kernel, stride=conv1_stride, padding=pad1),
            nn.ReLU(inplace=True),
            # 3x3 windows at stride 2 overlap, as in the paper (and AlexNet): one input can be
            # the max of two windows, which the deconvnet's unpooling has to respect.
            nn.MaxPool2d(3, 2),
            # Contrast normalisation across 5 neighbouring maps, after the pool as in ZF Fig. 3.
            nn.LocalResponseNorm(5),
            nn.Conv2d(w0, w1, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
            nn.LocalResponseNorm(5),
            # No pool after conv3: on 28x28 inputs a third pool would leave a 2x2 map, too coarse
            # for projections of the top layer to say anything about where a feature is.
            nn.Conv2d(w1, w2, 3, padding=1),
            nn.ReLU(inplace=True),
        )

        side = self.feature_size(image_size, conv1_kernel, conv1_stride)
        if side < 1:
            raise ValueError(f"image_size={image_size} is too small for this network")
        # Dropout 0.5 before each fully connected layer, as in the paper's FC6/FC7.
        self.classifier = nn.Sequential(
            nn.Dropout(0.5),
            nn.Linear(w2 * side * side, 128),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(128, num_classes),
        )

    @classmethod
    def _conv1(cls, kernel: int | None, stride: int | None) -> tuple[int, int]:
        """conv1's (kernel, stride): the ones given, else the class's ``CONV1``."""
        default_kernel, default_stride = cls.CONV1
        return (
            default_kernel if kernel is None else kernel,
            default_stride if stride is None else stride,
        )

    @classmethod
    def feature_size(
        cls, image_size: int = 28, conv1_kernel: int | None = None, conv1_stride: int | None = None
    ) -> int:
        """Side of the conv3 feature map for a square input (6 for 28x28 at the default 5x5/1).

        Example:
            >>> SmallZFNet.feature_size(28), SmallKrizhevskyNet.feature_size(28)
            (6, 2)
        """
        conv1_kernel, conv1_stride = cls._conv1(conv1_kernel, conv1_stride)
        s = _conv_out(image_size, conv1_kernel, conv1_stride, conv1_kernel // 2)  # conv1
        s = _conv_out(s, 3, 2, 0)  # pool1
        s = _conv_out(s, 3, 1, 1)  # conv2 keeps the size
        s = _conv_out(s, 3, 2, 0)  # pool2
        return _conv_out(s, 3, 1, 1)  # conv3 keeps the size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map images ``(N, in_channels, H, W)`` to logits ``(N, num_classes)``.

        Returns logits, not probabilities: the softmax lives in the loss (cross-entropy) and in
        whatever code wants probabilities.
        """
        x = self.features(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


class SmallKrizhevskyNet(SmallZFNet):
    """The Krizhevsky-style counterpart of :class:`SmallZFNet`: a larger, more strided conv1.

    The body (pools, LRN, conv2, conv3, classifier) is :class:`SmallZFNet`'s; only the first
    layer changes, in the direction the paper changed back: Krizhevsky's 11x11 stride-4 conv1
    against Zeiler & Fergus's 7x7 stride 2 (Fig. 6). Here the demo's 5x5 stride 1 becomes
    9x9 stride 2 (padding 4):

    - the stride doubles, as 2 -> 4 does in the paper, so layer 1 samples its responses at half
      the rate and anything its filters pass above 1/4 cycle per pixel (the stride's Nyquist
      frequency) aliases;
    - the kernel grows by about the paper's factor (11/7, about 1.6; 5 x 1.6 = 8), rounded up to
      the odd 9 so the padding is symmetric and conv1 halves the input exactly
      (28 -> 14, 32 -> 16);
    - stride 2 is the largest that leaves the body a spatial top map: conv3 is 2x2 on 28x28
      inputs and 3x3 on 32x32 (stride 3 or 4 would leave 1x1).

    The smaller top map also shrinks the first fully connected layer (64*2*2 inputs instead of
    64*6*6), so an accuracy difference between the two is not due to conv1 alone.

    Args:
        in_channels, num_classes, widths, image_size: as for :class:`SmallZFNet`.
        conv1_kernel, conv1_stride: the first layer (default ``CONV1``: 9x9 stride 2).

    Example:
        >>> net = SmallKrizhevskyNet(in_channels=3, image_size=32)
        >>> net(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    CONV1 = (9, 2)  # everything else is SmallZFNet's
