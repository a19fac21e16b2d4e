"""Model definitions and the bundled offline demo's data and weights."""

from zfwidgets.zoo.small import SmallZFNet

__all__ = ["SmallZFNet"]
