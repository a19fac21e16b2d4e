"""Model definitions and the bundled offline demo's data and weights."""

from zfwidgets.zoo.efficientnet_lite import EfficientNetLite0
from zfwidgets.zoo.residual import SmallResNet
from zfwidgets.zoo.small import SmallKrizhevskyNet, SmallZFNet
from zfwidgets.zoo.zfnet import KrizhevskyNet, ZFNet

__all__ = [
    "EfficientNetLite0",
    "KrizhevskyNet",
    "SmallKrizhevskyNet",
    "SmallResNet",
    "SmallZFNet",
    "ZFNet",
]
