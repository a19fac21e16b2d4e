"""Architecture selection (paper Fig. 6): numbers that make the filter comparison objective.

Zeiler & Fergus chose their first layer (7x7 stride 2 instead of Krizhevsky's 11x11 stride 4)
by looking at pictures: Krizhevsky's layer-1 filters are "a mix of extremely high and low
frequency information, with little coverage of the mid frequencies", some are dead, and the
layer-2 projections show aliasing artifacts caused by the large stride. Without renormalising
filters whose RMS grows past a radius, a few layer-1 filters dominate. This module turns each of
those observations into a number:

- :func:`filter_health`: fraction of dead and of dominating layer-1 filters;
- :func:`spectral_energy`: how each filter's energy is spread over low / mid / high spatial
  frequencies (the paper's point is the *mid* share);
- :func:`aliasing`: the share of the layer-2 projections' energy above the Nyquist frequency of
  the layer-1 stride, made of the stride's spectral copies (the stuff of aliasing artifacts);
- :func:`compare_architectures`: all of them for several trained models, plus the layer-1
  filters and layer-2 projections as tensors to draw with :mod:`zfwidgets.core.render`.

Frequencies are in cycles per pixel: 0 is a constant, 0.5 a pattern that flips sign every pixel.

Example:
    >>> import torch
    >>> w = torch.zeros(2, 1, 8, 8)
    >>> w[0, 0] = torch.cos(2 * torch.pi * 2 / 8 * torch.arange(8.0))  # 0.25 cycles/pixel
    >>> w[1, 0] = 1.0                                                    # a constant
    >>> spectral_energy(w, size=8).per_filter.round(decimals=6)
    tensor([[0., 1., 0.],
            [1., 0., 0.]])
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from zfwidgets.core.checks import as_int
from zfwidgets.core.filters import filter_images
from zfwidgets.core.inspector import Inspector
from zfwidgets.core.panels import crop_to_support
from zfwidgets.core.render import grid, projection_image, upscale

__all__ = [
    "DEFAULT_BANDS",
    "AliasingEnergy",
    "ArchitectureComparison",
    "FilterHealth",
    "SpectralEnergy",
    "aliasing",
    "compare_architectures",
    "filter_health",
    "filter_spectrum",
    "spectral_energy",
]

# Radial frequency bands in cycles/pixel, [lo, hi): the pixel grid's Nyquist range [0, 0.5]
# cut into thirds; the corners of the spectrum (radius above 0.5, diagonal patterns) count as
# high. DC (a filter's mean) is in "low".
DEFAULT_BANDS: dict[str, tuple[float, float]] = {
    "low": (0.0, 1 / 6),
    "mid": (1 / 6, 1 / 3),
    "high": (1 / 3, math.inf),
}


def _conv_weight(weight, what: str = "weight") -> Tensor:
    """A conv weight (out, in, kh, kw) as a float64 CPU tensor, or a clear error."""
    if isinstance(weight, nn.Conv2d):
        weight = weight.weight
    if isinstance(weight, np.ndarray):
        weight = torch.from_numpy(weight)
    if not isinstance(weight, Tensor):
        raise TypeError(
            f"{what} must be a conv weight tensor (out, in, kh, kw) or an nn.Conv2d; "
            f"got {type(weight).__name__}"
        )
    if weight.ndim != 4 or weight.numel() == 0:
        raise ValueError(
            f"{what} must be a non-empty conv weight shaped (out, in, kh, kw); "
            f"got shape {tuple(weight.shape)}"
        )
    w = weight.detach().to("cpu", torch.float64)
    if not torch.isfinite(w).all():
        raise ValueError(f"{what} contains NaN or infinite values")
    return w


def _positive(name: str, value: float) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
        raise ValueError(f"{name} must be a positive number; got {value!r}")
    return float(value)


# ----- dead and dominating filters ------------------------------------------------------------
@dataclass(frozen=True)
class FilterHealth:
    """Which layer-1 filters are dead or dominating (see :func:`filter_health`).

    Attributes:
        rms: (F,) root mean square of each filter's weights.
        contrast: (F,) standard deviation over the filter's weights divided by its RMS (0 for
            a constant filter, 1 for a zero-mean one).
        median_rms: the median of ``rms``, the yardstick for both flags.
        dead: (F,) bool, RMS below ``dead_below`` x median or contrast below ``flat_below``.
        dominating: (F,) bool, RMS above ``dominate_above`` x median.
        dead_fraction, dominating_fraction: the flags' means.
        thresholds: the three thresholds used.
    """

    rms: Tensor
    contrast: Tensor
    median_rms: float
    dead: Tensor
    dominating: Tensor
    dead_fraction: float
    dominating_fraction: float
    thresholds: dict[str, float]


def filter_health(
    weight,
    dead_below: float = 0.1,
    flat_below: float = 0.05,
    dominate_above: float = 3.0,
) -> FilterHealth:
    """Fractions of dead and of dominating filters in a conv layer (paper Fig. 6a, b).

    Measured against the layer's own median filter RMS, so the result does not depend on the
    weights' overall scale:

    - *dead*: RMS below ``dead_below`` (default 0.1) times the median: the filter barely
      responds next to its neighbours; or near-constant, standard deviation over its weights
      below ``flat_below`` (default 0.05) times its RMS: it only measures the local mean
      brightness (a constant filter, or one that never moved from a constant). A filter that is
      constant per input channel with different values across channels is a colour detector,
      not flat, because the standard deviation is taken over all its weights.
    - *dominating*: RMS above ``dominate_above`` (default 3) times the median; with the paper's
      RMS renormalisation (every filter capped at radius 0.1) this can only happen when the
      median filter is far below the cap.

    Args:
        weight: conv weight (out, in, kh, kw) or the ``nn.Conv2d`` itself.

    Example:
        >>> w = torch.randn(8, 1, 5, 5, generator=torch.Generator().manual_seed(0))
        >>> w[0] *= 10    # one filter much stronger than the rest
        >>> w[1] = 0      # one dead filter
        >>> h = filter_health(w)
        >>> h.dominating.nonzero().flatten().tolist(), h.dead.nonzero().flatten().tolist()
        ([0], [1])
    """
    w = _conv_weight(weight)
    dead_below = _positive("dead_below", dead_below)
    flat_below = _positive("flat_below", flat_below)
    dominate_above = _positive("dominate_above", dominate_above)
    flat = w.flatten(1)
    rms = flat.pow(2).mean(1).sqrt()
    std = flat.std(1, correction=0)
    contrast = torch.where(rms > 0, std / rms.clamp_min(1e-300), torch.zeros_like(rms))
    # torch.median picks the lower middle value for an even count; the mean of the two middle
    # values is the textbook median and does not depend on that convention.
    median = float(np.median(rms.numpy()))
    dead = (rms <= dead_below * median) | (contrast < flat_below)
    dominating = rms > dominate_above * median
    return FilterHealth(
        rms=rms.float(),
        contrast=contrast.float(),
        median_rms=median,
        dead=dead,
        dominating=dominating,
        dead_fraction=float(dead.double().mean()),
        dominating_fraction=float(dominating.double().mean()),
        thresholds={
            "dead_below": dead_below,
            "flat_below": flat_below,
            "dominate_above": dominate_above,
        },
    )


# ----- spectra of layer-1 filters -------------------------------------------------------------
def filter_spectrum(weight, size: int | None = None) -> tuple[Tensor, Tensor]:
    """Power spectrum of each filter, zero-padded to ``size`` x ``size``, and its frequencies.

    The filter (out, in, kh, kw) is placed in a ``size`` x ``size`` field of zeros and
    transformed with the 2-D DFT; the power ``|DFT|^2`` is summed over input channels. Padding
    samples the filter's frequency response on a grid that does not depend on the filter's own
    size, so 5x5 and 9x9 filters (or 7x7 and 11x11) are measured on the same frequencies.
    Padding does not change the total energy's proportions (Parseval) but shows the spread
    that a small filter necessarily has: a 5x5 filter cannot respond to one frequency only.

    Args:
        weight: conv weight (out, in, kh, kw) or an ``nn.Conv2d``.
        size: DFT size; default ``max(32, kh, kw)``. ``size == kh == kw`` gives the plain,
            unpadded DFT.

    Returns:
        ``(power, radius)``: power (F, size, size) float64 in ``torch.fft`` order (DC at
        [0, 0]), and the radial frequency sqrt(fx^2 + fy^2) in cycles/pixel of every bin.
    """
    w = _conv_weight(weight)
    kh, kw = w.shape[-2:]
    if size is None:
        size = max(32, kh, kw)
    size = as_int(size)
    if not isinstance(size, int) or isinstance(size, bool) or size < max(kh, kw):
        raise ValueError(f"size must be an int at least the filter size {kh}x{kw}; got {size!r}")
    power = torch.fft.fft2(w, s=(size, size)).abs().pow(2).sum(1)
    f = torch.fft.fftfreq(size, dtype=torch.float64)
    radius = torch.sqrt(f[:, None] ** 2 + f[None, :] ** 2)
    return power, radius


@dataclass(frozen=True)
class SpectralEnergy:
    """Share of each filter's spectral energy per frequency band (see :func:`spectral_energy`).

    Attributes:
        bands: band names, in column order.
        edges: ``(lo, hi)`` of each band in cycles/pixel (``lo <= radius < hi``).
        per_filter: (F, B) energy fractions; a row of NaN for an all-zero filter.
        mean: band name -> mean fraction over the filters that are not all zero.
    """

    bands: tuple[str, ...]
    edges: tuple[tuple[float, float], ...]
    per_filter: Tensor
    mean: dict[str, float]


def _check_bands(bands: Mapping[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
    if not isinstance(bands, Mapping) or not bands:
        raise ValueError(
            f"bands must be a non-empty mapping name -> (lo, hi) in cycles/pixel; got {bands!r}"
        )
    out = {}
    for name, edges in bands.items():
        try:
            lo, hi = (float(v) for v in edges)
        except (TypeError, ValueError) as err:
            raise ValueError(f"band {name!r} must be a pair (lo, hi); got {edges!r}") from err
        if not 0 <= lo < hi:
            raise ValueError(f"band {name!r} needs 0 <= lo < hi; got ({lo}, {hi})")
        out[str(name)] = (lo, hi)
    return out


def spectral_energy(
    weight,
    bands: Mapping[str, tuple[float, float]] = DEFAULT_BANDS,
    size: int | None = None,
) -> SpectralEnergy:
    """How each filter's energy splits over radial frequency bands (paper Fig. 6b, c).

    For every filter, the power of its zero-padded 2-D DFT (:func:`filter_spectrum`) is summed
    over each band ``lo <= sqrt(fx^2 + fy^2) < hi`` and divided by the filter's total power, so
    every filter counts equally whatever its scale. The paper's complaint about 11x11 stride-4
    filters is a small *mid* share: energy sits at the very low end (blobs, the mean) or the
    very high end (pixel-level checkerboards), the two things a coarse stride cannot use well.

    Args:
        weight: conv weight (out, in, kh, kw) or an ``nn.Conv2d``.
        bands: name -> (lo, hi) in cycles/pixel; default :data:`DEFAULT_BANDS` (thirds of the
            Nyquist range, corners counted as high). Bands may leave gaps; a row then sums to
            less than 1.
        size: DFT size (see :func:`filter_spectrum`).
    """
    edges = _check_bands(bands)
    power, radius = filter_spectrum(weight, size)
    total = power.flatten(1).sum(1)
    columns = [power[:, (radius >= lo) & (radius < hi)].sum(1) for lo, hi in edges.values()]
    per_filter = torch.stack(columns, 1) / total[:, None]
    per_filter[total <= 0] = math.nan
    live = per_filter[total > 0]
    mean = {
        name: float(live[:, i].mean()) if len(live) else math.nan for i, name in enumerate(edges)
    }
    return SpectralEnergy(
        bands=tuple(edges),
        edges=tuple(edges.values()),
        per_filter=per_filter.float(),
        mean=mean,
    )


# ----- aliasing in layer-2 projections --------------------------------------------------------
@dataclass(frozen=True)
class AliasingEnergy:
    """Share of projection energy above a stride's Nyquist frequency (see :func:`aliasing`).

    Attributes:
        per_projection: (N,) fractions; NaN for an all-zero projection.
        mean: mean over the non-zero projections (NaN if there are none).
        nyquist: the cut-off, ``1 / (2 * stride)`` cycles/pixel.
    """

    per_projection: Tensor
    mean: float
    nyquist: float


def _projection_list(projections) -> list[Tensor]:
    if isinstance(projections, np.ndarray):
        projections = torch.from_numpy(projections)
    if isinstance(projections, Tensor):
        if projections.ndim == 4:
            items = list(projections)
        elif projections.ndim in (2, 3):
            items = [projections]
        else:
            raise ValueError(
                "projections must be (N, C, H, W), one (C, H, W) or one (H, W); "
                f"got shape {tuple(projections.shape)}"
            )
    elif isinstance(projections, Sequence) and not isinstance(projections, str):
        items = [torch.as_tensor(p) for p in projections]
    else:
        raise TypeError(
            "projections must be a tensor (N, C, H, W) or a sequence of (C, H, W) tensors; "
            f"got {type(projections).__name__}"
        )
    if not items:
        raise ValueError("projections is empty; give at least one")
    out = []
    for i, p in enumerate(items):
        if p.ndim == 2:
            p = p[None]
        if p.ndim != 3 or min(p.shape) == 0:
            raise ValueError(f"projection {i} must be (C, H, W) or (H, W); got {tuple(p.shape)}")
        p = p.detach().to("cpu", torch.float64)
        if not torch.isfinite(p).all():
            raise ValueError(f"projection {i} contains NaN or infinite values")
        out.append(p)
    return out


def aliasing(projections, stride: int) -> AliasingEnergy:
    """Share of the projections' energy above the Nyquist frequency of a layer-1 ``stride``.

    A layer-1 stride ``s`` keeps one response every ``s`` pixels, so layer 1 represents
    patterns only up to ``1 / (2s)`` cycles/pixel along each axis. Projecting a layer-2 unit
    down runs that sampling backwards: the transposed strided convolution repeats the sampled
    spectrum every ``1 / s`` (spectral images) and only the layer-1 filters' response above
    ``1 / (2s)`` limits those copies. Projection energy found there is therefore made of such
    copies: where several layer-1 units add up, they print the periodic, grid-like artifacts of
    the paper's Fig. 6d. For one isolated unit the copies are simply the filter's own sharp
    shape, so read the number as how much a layer lets its stride show through (its
    susceptibility to aliasing), not as a count of visible artifacts. A stride-1 layer cannot
    alias: its Nyquist frequency is the pixel grid's, and the measure is 0 by construction.

    For each projection, the plain (unpadded) 2-D DFT power, summed over channels, is split at
    ``max(|fx|, |fy|) > 1 / (2s)`` (a square, because the sampling grid is square; a bin exactly
    at the Nyquist frequency counts as below). DC stays in the total.

    Args:
        projections: (N, C, H, W), one (C, H, W) or (H, W), or a sequence of (C, H, W) tensors
            of any sizes (e.g. cropped to receptive fields).
        stride: the layer-1 stride, a positive int.

    Example:
        >>> x = torch.arange(16.0)
        >>> fine = torch.cos(2 * torch.pi * 6 / 16 * x).expand(16, 16)    # 0.375 c/px
        >>> coarse = torch.cos(2 * torch.pi * 2 / 16 * x).expand(16, 16)  # 0.125 c/px
        >>> energy = aliasing(torch.stack([fine, coarse])[:, None], stride=2)
        >>> energy.per_projection.round(decimals=6)
        tensor([1., 0.])
    """
    stride = as_int(stride)
    if not isinstance(stride, int) or isinstance(stride, bool) or stride < 1:
        raise ValueError(f"stride must be a positive int; got {stride!r}")
    nyquist = 1 / (2 * stride)
    items = _projection_list(projections)
    # Projections of one shape go through one batched FFT; mixed sizes one at a time.
    if len({p.shape for p in items}) == 1:
        groups = [torch.stack(items)]
    else:
        groups = [p[None] for p in items]
    fractions = []
    for batch in groups:
        h, w = batch.shape[-2:]
        power = torch.fft.fft2(batch).abs().pow(2).sum(1)  # (B, h, w), summed over channels
        fy = torch.fft.fftfreq(h, dtype=torch.float64).abs()[:, None]
        fx = torch.fft.fftfreq(w, dtype=torch.float64).abs()[None, :]
        # The tolerance keeps a bin that sits exactly on the Nyquist frequency below it.
        above = torch.maximum(fy, fx) > nyquist + 1e-12
        total = power.flatten(1).sum(1)
        high = power[:, above].sum(1)
        fractions += [float(a / t) if t > 0 else math.nan for a, t in zip(high, total, strict=True)]
    per = torch.tensor(fractions, dtype=torch.float32)
    live = per[~torch.isnan(per)]
    return AliasingEnergy(
        per_projection=per,
        mean=float(live.mean()) if len(live) else math.nan,
        nyquist=nyquist,
    )


# ----- several models side by side ------------------------------------------------------------
@dataclass
class ArchitectureComparison:
    """What :func:`compare_architectures` returns.

    Attributes:
        rows: one dict per model (the table; see :func:`compare_architectures` for the keys).
        filters: model name -> layer-1 weights (F, C, kh, kw), float32 CPU copies.
        projections: model name -> layer-2 projections (K, C, H, W), one per feature map, of
            its strongest activation over ``images``.
        sources: model name -> (K,) index into ``images`` of each projection's image.
        health, spectra, aliasing: model name -> the full :class:`FilterHealth`,
            :class:`SpectralEnergy` and :class:`AliasingEnergy` behind the row.
    """

    rows: list[dict]
    filters: dict[str, Tensor] = field(default_factory=dict)
    projections: dict[str, Tensor] = field(default_factory=dict)
    sources: dict[str, Tensor] = field(default_factory=dict)
    health: dict[str, FilterHealth] = field(default_factory=dict)
    spectra: dict[str, SpectralEnergy] = field(default_factory=dict)
    aliasing: dict[str, AliasingEnergy] = field(default_factory=dict)

    def _name(self, name: str) -> str:
        if name not in self.filters:
            raise ValueError(f"unknown model {name!r}; compared: {', '.join(self.filters)}")
        return name

    def filter_grid(
        self, name: str, cols: int = 8, per_filter: bool = False, scale: int = 4
    ) -> np.ndarray:
        """The layer-1 filters of ``name`` as one uint8 RGB picture.

        ``per_filter=False`` (default) draws every filter on the layer's common scale, as the
        paper does, so dead filters are flat grey and dominating ones saturate.
        """
        tiles = filter_images(self.filters[self._name(name)], per_filter=per_filter)
        return grid([upscale(t, scale) for t in tiles], cols)

    def projection_grid(
        self,
        name: str,
        cols: int = 8,
        scale: int = 2,
        crop: bool = False,
        count: int | None = None,
    ) -> np.ndarray:
        """The layer-2 projections of ``name``, each stretched on its own, as one picture.

        ``count`` keeps only the first maps' projections; ``crop`` cuts each to one common
        square around its non-zero pixels (:func:`~zfwidgets.core.panels.crop_to_support`),
        so that ``scale`` can enlarge the detail, and any aliasing grid, to judge it.
        """
        projections = self.projections[self._name(name)][:count]
        if crop:
            projections = crop_to_support(projections)
        tiles = [projection_image(p) for p in projections]
        return grid([upscale(t, scale) for t in tiles], cols)

    def table(self, digits: int = 3) -> str:
        """The rows as a fixed-width text table (numbers rounded to ``digits``)."""
        if not self.rows:
            return ""
        keys = list(self.rows[0])

        def cell(v) -> str:
            return f"{v:.{digits}f}" if isinstance(v, float) else str(v)

        cells = [[cell(r.get(k, "")) for k in keys] for r in self.rows]
        widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
        lines = ["  ".join(k.rjust(w) for k, w in zip(keys, widths, strict=True))]
        lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
        return "\n".join(lines)


def _first_conv(insp: Inspector, name: str) -> nn.Conv2d:
    for step in insp.chain:
        if step.kind == "conv":
            return step.module
    raise ValueError(f"model {name!r} has no conv layer to take layer-1 filters from")


def _check_images(images, labels) -> tuple[Tensor, Tensor | None]:
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if not isinstance(images, Tensor) or images.ndim != 4 or len(images) == 0:
        got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images must be a non-empty float tensor (N, C, H, W); got {got}")
    if not images.is_floating_point():
        raise TypeError(f"images dtype is {images.dtype}; a floating dtype is needed")
    if labels is not None:
        labels = torch.as_tensor(labels)
        if labels.shape != (len(images),):
            raise ValueError(
                f"labels must be shaped ({len(images)},) to match images; got {tuple(labels.shape)}"
            )
    return images, labels


def compare_architectures(
    models: Mapping[str, nn.Module],
    images,
    labels=None,
    layer2: str = "conv2",
    max_units: int | None = None,
    common_stride: int | None = None,
    bands: Mapping[str, tuple[float, float]] = DEFAULT_BANDS,
    device: str | torch.device = "auto",
    batch_size: int = 256,
) -> ArchitectureComparison:
    """Layer-1 filter health and spectra, layer-2 aliasing, for several models side by side.

    For every model: the weights of its first conv layer go through :func:`filter_health`
    and :func:`spectral_energy`; for every feature map of ``layer2`` (the first ``max_units``
    if given), the image of ``images`` that activates it most is found and that strongest
    activation is projected to pixels with the deconvnet; the projections go through
    :func:`aliasing` at the model's own layer-1 stride. The models are not modified.

    Row keys: ``model``, ``conv1`` (e.g. ``"9x9/2"``), ``dead``, ``dominating`` (fractions of
    layer-1 filters), ``median_rms``, one key per band (mean spectral share), ``aliasing``
    (projection energy above the model's own stride's Nyquist frequency; 0 for stride 1),
    ``hf_common`` (projection energy above the Nyquist frequency of ``common_stride``, default
    the largest layer-1 stride compared: the same cut-off for every model, to tell aliasing
    from high-frequency content the data simply has) and, with ``labels``, ``accuracy`` on
    ``images``.

    Args:
        models: name -> model (each a chain the deconvnet can invert).
        images: (N, C, H, W) float tensor the models take (e.g. held-out digits).
        labels: optional (N,) class indices, for the accuracy column.
        layer2: the layer whose projections are measured (a name or alias).
        max_units: project only the first this many feature maps of ``layer2``.
        common_stride: stride whose Nyquist frequency gives ``hf_common``.
        bands: frequency bands for :func:`spectral_energy`.
        device: where to run the models.
        batch_size: images per forward pass when searching for the strongest activations.

    Example:
        >>> from torch import nn
        >>> def net(kernel, stride):
        ...     return nn.Sequential(nn.Conv2d(1, 8, kernel, stride, kernel // 2), nn.ReLU(),
        ...                          nn.MaxPool2d(3, 2), nn.Conv2d(8, 4, 3), nn.ReLU())
        >>> images = torch.randn(20, 1, 28, 28)
        >>> report = compare_architectures({"5x5/1": net(5, 1), "9x9/2": net(9, 2)}, images)
        >>> [row["conv1"] for row in report.rows], report.rows[0]["aliasing"]
        (['5x5/1', '9x9/2'], 0.0)
        >>> report.projections["9x9/2"].shape       # one per conv2 map, shaped like the images
        torch.Size([4, 1, 28, 28])
        >>> report.filter_grid("9x9/2", cols=4).shape  # uint8 RGB, for render.to_png
        (78, 154, 3)
    """
    images, labels = _check_comparison(models, images, labels, max_units, batch_size)
    # A small record cache: one image is often the strongest for several maps, and its
    # forward pass is then reused for each of their projections.
    inspectors = {
        name: Inspector(m, device=device, cache_bytes=32 * 2**20) for name, m in models.items()
    }
    conv1s = {name: _first_conv(insp, name) for name, insp in inspectors.items()}
    if common_stride is None:
        common_stride = max(max(c.stride) for c in conv1s.values())

    result = ArchitectureComparison(rows=[])
    for name, insp in inspectors.items():
        conv1 = conv1s[name]
        weight = conv1.weight.detach().to("cpu", torch.float32).clone()
        health = filter_health(weight)
        spectrum = spectral_energy(weight, bands=bands)
        projections, sources, accuracy = _layer2_projections(
            insp, images, labels, layer2, max_units, batch_size
        )
        own = aliasing(projections, max(conv1.stride))  # the coarser axis decides where it starts
        common = aliasing(projections, common_stride)
        result.rows.append(_row(name, conv1, health, spectrum, own, common, accuracy))
        result.filters[name], result.projections[name] = weight, projections
        result.sources[name], result.health[name] = sources, health
        result.spectra[name], result.aliasing[name] = spectrum, own
    return result


def _check_comparison(
    models, images, labels, max_units, batch_size
) -> tuple[Tensor, Tensor | None]:
    """Refuse bad arguments of :func:`compare_architectures`; returns the images and labels."""
    if not isinstance(models, Mapping) or not models:
        raise ValueError("models must be a non-empty dict name -> nn.Module")
    for name, model in models.items():
        if not isinstance(model, nn.Module):
            raise TypeError(f"model {name!r} must be a torch.nn.Module; got {type(model).__name__}")
    images, labels = _check_images(images, labels)
    max_units = as_int(max_units)
    if max_units is not None and (not isinstance(max_units, int) or max_units < 1):
        raise ValueError(f"max_units must be a positive int or None; got {max_units!r}")
    batch_size = as_int(batch_size)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int; got {batch_size!r}")
    return images, labels


def _row(
    name: str,
    conv1: nn.Conv2d,
    health: FilterHealth,
    spectrum: SpectralEnergy,
    own: AliasingEnergy,
    common: AliasingEnergy,
    accuracy: float | None,
) -> dict:
    """One model's line of the comparison table (the keys :func:`compare_architectures` lists)."""
    kh, kw = conv1.kernel_size
    row = {
        "model": name,
        "conv1": f"{kh}x{kw}/{max(conv1.stride)}",
        "dead": health.dead_fraction,
        "dominating": health.dominating_fraction,
        "median_rms": health.median_rms,
        **spectrum.mean,
        "aliasing": own.mean,
        "hf_common": common.mean,
    }
    if accuracy is not None:  # only with labels
        row["accuracy"] = accuracy
    return row


def _layer2_projections(
    insp: Inspector,
    images: Tensor,
    labels: Tensor | None,
    layer: str,
    max_units: int | None,
    batch_size: int,
) -> tuple[Tensor, Tensor, float | None]:
    """One deconvnet projection per feature map of ``layer``: of its strongest activation over
    ``images``; also the accuracy on ``images`` when ``labels`` are given."""
    name = insp.layer_name(layer)
    last = insp.layers[-1]
    want = [name, last] if labels is not None else [name]
    best_value, best_image, hits = None, None, 0
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        out = insp.run_batch(batch, want)
        act = out[name]
        if act.ndim != 4:
            raise ValueError(f"layer {layer!r} is not a convolutional feature map layer")
        peak = act.flatten(2).amax(2).cpu()  # (B, C): each image's strongest unit per map
        value, index = peak.max(0)  # the first image wins ties, as in top-k mining
        index = index + start
        if best_value is None:
            best_value, best_image = value, index
        else:
            better = value > best_value
            best_value = torch.where(better, value, best_value)
            best_image = torch.where(better, index, best_image)
        if labels is not None:
            hits += int(
                (
                    insp.class_scores(out[last]).argmax(1).cpu()
                    == labels[start : start + len(batch)]
                ).sum()
            )
    channels = list(range(len(best_image)))[:max_units]
    sources = best_image[: len(channels)]
    projections = insp.project_units(
        [images[int(i)] for i in sources], layer, channels, ["max"] * len(channels)
    )
    accuracy = hits / len(images) if labels is not None else None
    return projections.detach().to("cpu", torch.float32), sources, accuracy
