"""A feature map's top 9 as two pictures: projections beside the image patches they see.

The paper's Fig. 2 layout, shared by the LayerBrowser (top 9 in a data set) and the
EvolutionScrubber (top 9 at one training epoch). Every tile is the layer's nominal receptive
field, so the patches of one layer line up; a box cut short by the image border keeps its
content on the side away from that border.

Example:
    >>> from zfwidgets import Inspector, demo
    >>> from zfwidgets.core.mining import mine
    >>> from zfwidgets.core.top_views import top_projections
    >>> d = demo.load()
    >>> insp, data = Inspector(d.model), d.dataset.images[:60]
    >>> top = mine(insp, data, layers=["conv2"], k=TOP_K, progress=False)
    >>> entries = top_projections(insp, top, data, "conv2", channel=5)
    >>> side = patch_side(insp, "conv2", tuple(entries[0].image.shape))
    >>> pictures = top_nine_pictures(entries, "deconvnet", d.mean, side)
    >>> pictures.projections[:4]              # PNG bytes, for an Image widget's value
    b'\x89PNG'
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from torch import Tensor

from zfwidgets.core import Inspector, render
from zfwidgets.core.preprocess import Preprocessing
from zfwidgets.core.top_views import TopEntry
from zfwidgets.widgets.parts import COLOURS, FONT, fit_patch, zoom_for

__all__ = [
    "TOP_K",
    "TOP_TILE",
    "TopPictures",
    "patch_side",
    "switch_note",
    "tile_labels_html",
    "tile_pixels",
    "tiles_note",
    "top_nine_pictures",
    "unit_picture",
    "unit_view",
]

TOP_K = 9
TOP_TILE = 84  # about how big each top-9 tile is on screen, in pixels
# The largest a tile gets: a deep layer of a 224-pixel model sees the whole image, and nine
# such patches at full size would make a pair wider than the notebook.
MAX_TILE = 112


def unit_picture(projection: Tensor, method: str) -> np.ndarray:
    """How a projection is drawn: |gradient| for saliency, signed grey (0 = grey) otherwise,
    each on its own peak (:func:`unit_view` also stretches a faint one, for a captioned panel)."""
    if method == "saliency":
        return render.saliency_image(projection)
    return render.projection_image(projection)


def unit_view(
    projection: Tensor, method: str, empty: str = "no unit of this map fired"
) -> render.Shown:
    """A projection drawn as :func:`unit_picture` does (a faint one stretched further), with
    the note its caption needs: ``"all zero: <empty>"`` or ``"x40 contrast: ..."`` (see
    :func:`zfwidgets.core.render.shown_projection`).

    Example:
        >>> import torch
        >>> unit_view(torch.zeros(1, 3, 3), "deconvnet").note
        'all zero: no unit of this map fired'
    """
    return render.shown_projection(projection, saliency=method == "saliency", empty=empty)


def switch_note(inspector: Inspector, layer: str, method: str) -> str:
    """What a deconvnet caption must add when no max pool lies below ``layer`` (no switches:
    the picture is the filters' pattern, the same for any image), else ``""``.

    Example:
        >>> from torch import nn
        >>> net = Inspector(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()))
        >>> switch_note(net, "1", "deconvnet").split(":")[0]
        'no max pooling'
    """
    if method != "deconvnet" or inspector.pools_below(layer):
        return ""
    # short: it sits in a caption beside the picture (guided backprop follows the image)
    return "no max pooling: no switches; it shows the filters' pattern"


def patch_side(inspector: Inspector, layer: str, image_shape: tuple[int, ...]) -> tuple[int, int]:
    """Tile size (h, w) for ``layer``'s patches: its nominal receptive field, within the image."""
    row = inspector.describe(tuple(image_shape))[inspector.layer_index(layer)]
    h, w = int(image_shape[-2]), int(image_shape[-1])
    size = row["rf_size"] or max(h, w)
    return min(size, h), min(size, w)


def tile_pixels(
    side: tuple[int, int], tile: int = TOP_TILE, largest: int = MAX_TILE
) -> tuple[int, int]:
    """On-screen size (h, w) of a tile of ``side`` pixels: small patches are enlarged by a
    whole number (crisp pixels), large ones shrink to at most ``largest`` (default
    ``MAX_TILE``) on their long side.

    Example:
        >>> tile_pixels((10, 10)), tile_pixels((224, 224))
        ((80, 80), (112, 112))
    """
    zoom = zoom_for(max(side), tile)
    if max(side) * zoom <= largest:
        return side[0] * zoom, side[1] * zoom
    scale = largest / max(side)
    return max(1, round(side[0] * scale)), max(1, round(side[1] * scale))


@dataclass(frozen=True)
class TopPictures:
    """PNG bytes of the projections grid and the patches grid, and a text listing.

    Attributes:
        projections: 3x3 grid of the entries' projections, strongest first.
        patches: 3x3 grid of the image patches, same order.
        listing: ``"#12 (3.41), #7 (3.02), ..."``: image index and activation of each entry.
        note: what the caption must add: tiles drawn with more contrast (and by how much) or
            all zero; ``""`` when every tile is drawn as usual.
    """

    projections: bytes
    patches: bytes
    listing: str
    note: str = ""


def top_nine_pictures(
    entries: Sequence[TopEntry],
    method: str,
    mean: Preprocessing | Tensor | None,
    side: tuple[int, int],
    tile: int = TOP_TILE,
    largest: int = MAX_TILE,
) -> TopPictures:
    """Draws ``entries`` (from :func:`~zfwidgets.core.top_views.top_projections`) as Fig. 2 does.

    ``mean`` is the model's :class:`~zfwidgets.core.preprocess.Preprocessing` (the patches are
    drawn in their true colours, ``x * std + mean``), or the older mean image (added back); None
    stretches each patch min..max. ``side`` comes from :func:`patch_side`; ``tile`` is about
    how many screen pixels each tile gets, ``largest`` the most (see :func:`tile_pixels`).
    """
    if not entries:
        raise ValueError("no top entries to draw (the map never fired on the data set)")
    size = tile_pixels(side, tile, largest)
    views = [unit_view(e.projection, method) for e in entries]
    projections = [fit_patch(v.picture, e.box, side) for v, e in zip(views, entries, strict=True)]
    patches = [fit_patch(render.input_image(e.image, mean), e.box, side) for e in entries]
    pngs = []
    for tiles in (projections, patches):
        big = [render.resize(t, size) for t in tiles]
        pngs.append(render.to_png(render.grid(big, cols=3, background=render.BACKGROUND)))
    listing = ", ".join(f"#{e.image_index} ({e.value:.3g})" for e in entries)
    return TopPictures(pngs[0], pngs[1], listing, tiles_note(views))


def tiles_note(views: Sequence[render.Shown]) -> str:
    """One caption line for the tiles drawn unusually: ``"tiles 2, 5: more contrast (x12,
    x40), values near the peak clipped"`` and ``"tile 9: all zero"``; ``""`` if none.

    Example:
        >>> from zfwidgets.core.render import Shown
        >>> plain, faint = Shown(np.zeros((1, 1))), Shown(np.zeros((1, 1)), 12.0, "x12 ...")
        >>> tiles_note([plain, faint, Shown(np.zeros((1, 1)), 1.0, "all zero: ...")])
        'tile 2: more contrast (x12), values near the peak clipped; tile 3: all zero'
    """

    def tiles(numbers: list[int]) -> str:
        return ("tile " if len(numbers) == 1 else "tiles ") + ", ".join(map(str, numbers))

    faint = [(i + 1, v.gain) for i, v in enumerate(views) if v.gain > 1]
    empty = [i + 1 for i, v in enumerate(views) if v.note.startswith("all zero")]
    parts = []
    if faint:
        gains = ", ".join(f"x{g:g}" for _, g in faint)
        parts.append(
            f"{tiles([i for i, _ in faint])}: more contrast ({gains}), values near the peak clipped"
        )
    if empty:
        parts.append(f"{tiles(empty)}: all zero")
    return "; ".join(parts)


def tile_labels_html(texts: Sequence[str], width: int, cols: int = 3) -> str:
    """One short line per tile (``"#298 · cats · 0.132"``) in a grid of ``cols`` columns of
    ``width`` pixels, under the tiles of :func:`top_nine_pictures`; a line too long for its
    column wraps (an ellipsis cut ImageNet names to "spider monk…"), and shows on hover too.

    Example:
        >>> page = tile_labels_html(["#3 · cats · 1.5", "#7 · dogs · 1.2"], 84)
        >>> page.count('title="#')
        2
    """
    cells = "".join(
        f'<div title="{html.escape(t)}" style="white-space: normal; '
        f'overflow-wrap: anywhere">{html.escape(t)}</div>'
        for t in texts
    )
    return (
        f'<div style="display: grid; grid-template-columns: repeat({cols}, {width}px); '
        f"column-gap: 2px; color: {COLOURS['muted']}; font-family: {FONT}; "
        f'font-size: var(--jp-ui-font-size0, 11px); line-height: 1.3">{cells}</div>'
    )
