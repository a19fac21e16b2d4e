"""What Fig. 2 shows for one feature map: each top image's projection beside its patch.

Example:
    >>> import torch
    >>> from zfwidgets import Inspector, demo
    >>> from zfwidgets.core.mining import mine
    >>> d = demo.load()
    >>> insp = Inspector(d.model)
    >>> some = torch.utils.data.Subset(d.dataset, range(200))
    >>> top = mine(insp, some, layers=["conv2"], k=9, progress=False)
    >>> entries = top_projections(insp, top, some, "conv2", channel=5)
    >>> len(entries), entries[0].projection.shape  # a patch is the unit's receptive field
    (9, torch.Size([1, 28, 28]))
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from zfwidgets.core.inspector import Inspector
from zfwidgets.core.mining import TopK, as_indexable, image_of
from zfwidgets.core.receptive import Box

__all__ = ["TopEntry", "top_projections"]


@dataclass(frozen=True)
class TopEntry:
    """One of a feature map's top activations.

    Attributes:
        value: the activation.
        image_index: index of the image in the data set.
        position: (y, x) of the unit in the layer (``None`` for a fully connected layer).
        image: the whole input image (C, H, W).
        projection: the unit projected to pixels (C, H, W), same size as the image.
        box: the unit's receptive field in the image.
        patch: the image inside the box (C, h, w).
        projection_patch: the projection inside the box (C, h, w).
    """

    value: float
    image_index: int
    position: tuple[int, int] | None
    image: Tensor
    projection: Tensor
    box: Box
    patch: Tensor
    projection_patch: Tensor


def top_projections(
    insp: Inspector, top: TopK, data, layer: str, channel: int, method: str = "deconvnet"
) -> list[TopEntry]:
    """Projections (batched, one pass) and receptive-field patches of a map's top entries."""
    name = insp.layer_name(layer)
    if name not in top.layers:
        raise ValueError(f"layer '{layer}' was not mined; mined layers: {', '.join(top.layers)}")
    t = top.layers[name]
    if not 0 <= channel < t.values.shape[0]:
        raise ValueError(
            f"channel {channel} is out of range for layer '{layer}': 0..{t.values.shape[0] - 1}"
        )
    images = as_indexable(data)
    if len(images) < top.count:
        # entries name images by index (a longer data set mined on its first images is fine)
        raise ValueError(
            f"data has {len(images)} images but these results were mined over {top.count}: "
            "pass the data set they were mined on (TopK.load(path, insp, data) checks it)"
        )
    keep = [j for j in range(top.k) if int(t.images[channel, j]) >= 0]
    pictures = [insp.image(image_of(images[int(t.images[channel, j])])) for j in keep]
    # the shape from an entry's image: only the shown images are read
    shape = tuple(pictures[0].shape[1:]) if pictures else tuple(image_of(images[0]).shape)
    spatial = len(insp.shapes(shape)[insp.layer_index(name)]) == 4
    positions = [tuple(int(v) for v in t.positions[channel, j]) if spatial else None for j in keep]
    projections = insp.project_units(pictures, name, [channel] * len(keep), positions, method)
    entries = []
    for j, img, pos, proj in zip(keep, pictures, positions, projections, strict=True):
        box = insp.receptive_field(name, *(pos or (0, 0)), tuple(img.shape[1:]))
        rows, cols = box.slices
        entries.append(
            TopEntry(
                value=float(t.values[channel, j]),
                image_index=int(t.images[channel, j]),
                position=pos,
                image=img[0],
                projection=proj,
                box=box,
                patch=img[0][:, rows, cols],
                projection_patch=proj[:, rows, cols],
            )
        )
    return entries
