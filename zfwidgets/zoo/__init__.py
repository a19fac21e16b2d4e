"""Model definitions and the bundled offline demo's data and weights."""

from zfwidgets.zoo.residual import SmallResNet
from zfwidgets.zoo.small import SmallKrizhevskyNet, SmallZFNet
from zfwidgets.zoo.zfnet import KrizhevskyNet, ZFNet

__all__ = ["KrizhevskyNet", "SmallKrizhevskyNet", "SmallResNet", "SmallZFNet", "ZFNet"]
