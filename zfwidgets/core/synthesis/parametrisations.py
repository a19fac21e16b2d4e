"""How a synthesised image is made from the tensors Adam changes.

A :class:`Parametrisation` holds settings only (frozen, printable, so a run is reproducible
from them); ``init(generator, device)`` draws the tensors to optimise and ``render(tensors)``
makes the batch of model inputs (N, C, H, W). The extension point: subclass it.

- :class:`Pixels`: the tensor is the model input itself (the lecture's method).
- :class:`Fourier`: Lucid's image (Olah et al., Distill 2017): rfft2 coefficients scaled by
  ``1 / max(f, 1/side)^decay``, colours decorrelated by a 3x3 matrix, squashed into [0, 1] by a
  sigmoid, then normalised as the model expects, ``(pixels - mean) / std``.

Example:
    >>> import torch
    >>> p = Fourier((3, 16, 16), batch=2, mean=0.5, std=0.25)
    >>> x = p.render(p.init(torch.Generator().manual_seed(0)))
    >>> tuple(x.shape), bool(x.min() >= -2) and bool(x.max() <= 2)
    ((2, 3, 16, 16), True)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from zfwidgets.core.checks import as_int

__all__ = [
    "IMAGENET_COLOUR_SQRT",
    "Fourier",
    "Parametrisation",
    "Pixels",
    "colour_matrix",
    "from_spectrum",
    "spectrum_scale",
    "to_spectrum",
]

#: The square root of ImageNet's colour covariance (RGB), as Lucid ships it:
#: ``color_correlation_svd_sqrt`` in lucid/optvis/param/color.py (tensorflow/lucid), whose
#: columns are then divided by the largest column norm (Lucid's ``max_norm_svd_sqrt``).
IMAGENET_COLOUR_SQRT = torch.tensor(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=torch.float32
)


def colour_matrix(channels: int) -> Tensor:
    """The decorrelating colour matrix: ImageNet's (normalised as Lucid does) for 3 channels,
    the identity for 1 (grey).

    Example:
        >>> m = colour_matrix(3)
        >>> torch.allclose(m @ torch.linalg.inv(m), torch.eye(3), atol=1e-5)
        True
        >>> colour_matrix(1).tolist()
        [[1.0]]
    """
    if channels == 3:
        m = IMAGENET_COLOUR_SQRT
        return m / m.norm(dim=0).max()
    if channels == 1:
        return torch.eye(1)
    raise ValueError(f"colour decorrelation needs 1 or 3 channels; got {channels}")


def _frequencies(h: int, w: int) -> Tensor:
    """|f| of every rfft2 coefficient (h, w // 2 + 1), in cycles per pixel."""
    fy = torch.fft.fftfreq(h)[:, None]
    fx = torch.fft.rfftfreq(w)[None, :]
    return torch.sqrt(fx * fx + fy * fy)


def spectrum_scale(h: int, w: int, decay: float = 1.0) -> Tensor:
    """``1 / max(f, 1 / max(h, w))^decay`` for every rfft2 coefficient (h, w // 2 + 1).

    Example:
        >>> spectrum_scale(4, 4).shape, float(spectrum_scale(4, 4)[0, 0])
        (torch.Size([4, 3]), 4.0)
    """
    _check_decay(decay)
    return 1.0 / _frequencies(h, w).clamp_min(1.0 / max(h, w)) ** decay


#: Lucid divides the image by 4 after the inverse transform (its "magic constant").
_FFT_GAIN = 4.0


def from_spectrum(coeffs: Tensor, h: int, w: int, decay: float = 1.0) -> Tensor:
    """Image (..., h, w) from scaled spectrum parameters (..., 2, h, w // 2 + 1): real and
    imaginary parts, multiplied by :func:`spectrum_scale`, inverse rfft2 (orthonormal), / 4.
    """
    scale = spectrum_scale(h, w, decay).to(coeffs)
    spectrum = torch.complex(coeffs[..., 0, :, :], coeffs[..., 1, :, :]) * scale
    return torch.fft.irfft2(spectrum, s=(h, w), norm="ortho") / _FFT_GAIN


def to_spectrum(image: Tensor, decay: float = 1.0) -> Tensor:
    """The inverse of :func:`from_spectrum`: image (..., h, w) -> parameters (..., 2, h, w//2+1).

    Example:
        >>> x = torch.rand(3, 6, 7, generator=torch.Generator().manual_seed(0))
        >>> torch.allclose(from_spectrum(to_spectrum(x), 6, 7), x, atol=1e-5)
        True
    """
    h, w = image.shape[-2:]
    spectrum = torch.fft.rfft2(image * _FFT_GAIN, norm="ortho") / spectrum_scale(h, w, decay).to(
        image
    )
    return torch.stack([spectrum.real, spectrum.imag], dim=-3)


def _check_decay(decay) -> None:
    if isinstance(decay, bool) or not isinstance(decay, int | float) or not 0 <= decay <= 4:
        raise ValueError(f"decay must be a number in [0, 4] (1 is Lucid's); got {decay!r}")


def _check_shape(shape) -> tuple[int, int, int]:
    ok = (
        isinstance(shape, Sequence)
        and len(shape) == 3
        and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)
        and shape[0] in (1, 3)
    )
    if not ok:
        raise ValueError(f"shape must be (C, H, W) with C 1 or 3 and H, W >= 1; got {shape!r}")
    return tuple(shape)


def _check_batch(batch) -> int:
    batch = as_int(batch)
    if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= 256:
        raise ValueError(f"batch must be an int in 1..256; got {batch!r}")
    return batch


def _check_sd(sd) -> None:
    if isinstance(sd, bool) or not isinstance(sd, int | float) or not 0 <= sd <= 10:
        raise ValueError(f"sd must be a number in [0, 10]; got {sd!r}")


def _mean_std(mean, std, preprocessing, channels: int) -> tuple[Tensor, Tensor]:
    """Per-channel (C, 1, 1) mean and std: from ``preprocessing`` when given, else numbers."""
    if preprocessing is not None:
        mean, std = preprocessing._mean, preprocessing._std
        if mean.shape[-2:] != (1, 1):  # a mean image: its per-channel average
            mean = mean.mean(dim=(-2, -1), keepdim=True)
    mean = torch.as_tensor(mean, dtype=torch.float32)
    if mean.ndim == 3 and mean.shape[-2:] != (1, 1):  # a mean image: its channel means
        mean = mean.mean(dim=(-2, -1))
    mean = mean.reshape(-1, 1, 1)
    std = torch.as_tensor(std, dtype=torch.float32).reshape(-1, 1, 1)
    if not (torch.isfinite(mean).all() and torch.isfinite(std).all() and (std > 0).all()):
        raise ValueError(f"mean must be finite and std positive; got {mean.flatten().tolist()}, "
                         f"{std.flatten().tolist()}")  # fmt: skip
    if len(mean) not in (1, channels) or len(std) not in (1, channels):
        raise ValueError(f"mean and std need 1 or {channels} numbers; got {len(mean)}, "
                         f"{len(std)}")  # fmt: skip
    return mean.expand(channels, 1, 1).clone(), std.expand(channels, 1, 1).clone()


class Parametrisation:
    """The extension point: settings, ``init(generator, device)`` and ``render(tensors)``."""

    shape: tuple[int, int, int]
    batch: int

    def init(self, generator: torch.Generator, device: Any = "cpu") -> list[Tensor]:
        """The tensors to optimise, drawn from ``generator`` (CPU), placed on ``device``."""
        raise NotImplementedError

    def render(self, tensors: list[Tensor]) -> Tensor:
        """The batch of model inputs (N, C, H, W) the tensors stand for."""
        raise NotImplementedError

    def pixels(self, tensors: list[Tensor]) -> Tensor | None:
        """The batch as pixels in [0, 1], or None where the parametrisation does not know."""
        return None


@dataclass(frozen=True)
class Pixels(Parametrisation):
    """The model input itself, started from Gaussian noise of ``sd`` (the lecture's method).

    Example:
        >>> p = Pixels((1, 4, 4), batch=2, sd=0.0)
        >>> p.render(p.init(torch.Generator())).abs().sum().item()
        0.0
    """

    shape: tuple[int, int, int]
    batch: int = 1
    sd: float = 0.01

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", _check_shape(self.shape))
        _check_batch(self.batch)
        _check_sd(self.sd)

    def init(self, generator: torch.Generator, device: Any = "cpu") -> list[Tensor]:
        x = self.sd * torch.randn(self.batch, *self.shape, generator=generator)
        return [x.to(device).requires_grad_()]

    def render(self, tensors: list[Tensor]) -> Tensor:
        return tensors[0]


@dataclass(frozen=True)
class Fourier(Parametrisation):
    """Lucid's Fourier image with decorrelated colours, squashed and normalised.

    Attributes:
        shape: (C, H, W), C 1 or 3.
        batch: how many images are optimised at once.
        decay: the spectrum scales as ``1 / f^decay`` (0: white, 1: Lucid's).
        decorrelate: mix colours by :func:`colour_matrix` (identity for grey).
        mean, std: the model's input scaling ``(pixels - mean) / std`` (numbers, or one per
            channel); taken from ``preprocessing`` (:class:`~zfwidgets.core.preprocess.
            Preprocessing`) when that is given; a mean image (C, H, W) counts as its
            channel means.
        sd: standard deviation of the initial spectrum parameters.
    """

    shape: tuple[int, int, int]
    batch: int = 1
    decay: float = 1.0
    decorrelate: bool = True
    mean: Any = 0.0
    std: Any = 1.0
    preprocessing: Any = field(default=None, repr=False)
    sd: float = 0.01

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", _check_shape(self.shape))
        _check_batch(self.batch)
        _check_sd(self.sd)
        _check_decay(self.decay)
        mean, std = _mean_std(self.mean, self.std, self.preprocessing, self.shape[0])
        object.__setattr__(self, "mean", tuple(mean.flatten().tolist()))
        object.__setattr__(self, "std", tuple(std.flatten().tolist()))
        object.__setattr__(self, "preprocessing", None)  # its numbers are kept above

    def init(self, generator: torch.Generator, device: Any = "cpu") -> list[Tensor]:
        c, h, w = self.shape
        size = (self.batch, c, 2, h, w // 2 + 1)
        x = self.sd * torch.randn(size, generator=generator)
        return [x.to(device).requires_grad_()]

    def pixels(self, tensors: list[Tensor]) -> Tensor:
        c, h, w = self.shape
        x = from_spectrum(tensors[0], h, w, self.decay)
        if self.decorrelate:
            m = colour_matrix(c).to(x)
            x = torch.einsum("ij,njhw->nihw", m, x)
        return torch.sigmoid(x)

    def render(self, tensors: list[Tensor]) -> Tensor:
        x = self.pixels(tensors)
        mean = torch.tensor(self.mean).view(-1, 1, 1).to(x)
        std = torch.tensor(self.std).view(-1, 1, 1).to(x)
        return (x - mean) / std
