"""Resumable mining (bit for bit), cancel keeping partial work, and the data fingerprint over
every item: a swapped pair of items is caught for tensors, Datasets and image folders."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    RandomSampler,
    SubsetRandomSampler,
    TensorDataset,
    WeightedRandomSampler,
)

from zfwidgets import Inspector
from zfwidgets.core.fingerprint import data_fingerprint
from zfwidgets.core.mining import MiningCancelled, TopK, checkpoint_progress, mine


def tiny_rgb() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 2),
    ).eval()


class Items(Dataset):
    """A generic Dataset (no tensor, no files): the fingerprint must read its items."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images[i].clone(), 0


def image_folder(root, n: int = 40, side: int = 32):
    """``n`` random RGB PNGs in two class folders."""
    rng = torch.Generator().manual_seed(1)
    for i in range(n):
        folder = root / ("a" if i % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        pixels = (torch.rand(side, side, 3, generator=rng) * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    return root


def _to_tensor(picture) -> torch.Tensor:
    return torch.from_numpy(np.array(picture)).permute(2, 0, 1).float() / 255


def folder_set(root, loader=None):
    from torchvision.datasets import ImageFolder
    from torchvision.datasets.folder import default_loader

    return ImageFolder(str(root), transform=_to_tensor, loader=loader or default_loader)


@pytest.fixture(scope="module")
def insp():
    return Inspector(tiny_rgb(), device="cpu")


@pytest.fixture(scope="module")
def images():
    return torch.randn(37, 3, 16, 16, generator=torch.Generator().manual_seed(0))


LAYERS = ["1", "4", "7"]


def assert_same(a: TopK, b: TopK) -> None:
    assert a.count == b.count and a.k == b.k and list(a.layers) == list(b.layers)
    assert a.model_fingerprint == b.model_fingerprint
    assert a.data_fingerprint == b.data_fingerprint
    for name in a.layers:
        assert torch.equal(a.layers[name].values, b.layers[name].values), name
        assert torch.equal(a.layers[name].images, b.layers[name].images), name
        assert torch.equal(a.layers[name].positions, b.layers[name].positions), name


def stop_after(n: int):
    seen = []
    return (lambda done, total: seen.append(done)), (lambda: bool(seen) and seen[-1] >= n)


@pytest.mark.parametrize("kind", ["tensor", "dataset", "loader"])
def test_cancel_then_resume_equals_an_uninterrupted_pass(insp, images, kind, tmp_path):
    data = {
        "tensor": images,
        "dataset": Items(images),
        "loader": DataLoader(TensorDataset(images), batch_size=5),
    }[kind]
    whole = mine(insp, data, LAYERS, k=4, batch_size=5, progress=False)
    state = tmp_path / "top.partial"
    callback, should_stop = stop_after(15)
    with pytest.raises(MiningCancelled, match="after 15 of 37") as caught:
        mine(
            insp, data, LAYERS, k=4, batch_size=5, progress=False, callback=callback,
            should_stop=should_stop, checkpoint=state, checkpoint_every=10,
        )  # fmt: skip
    partial = caught.value.partial
    assert partial.count == 15 and checkpoint_progress(state) == (15, 37)
    first = mine(insp, images[:15], LAYERS, k=4, batch_size=5, progress=False)
    for name in LAYERS:  # the partial result is the first 15 images' result
        assert torch.equal(partial.layers[name].images, first.layers[name].images)
    resumed = mine(insp, data, LAYERS, k=4, batch_size=5, progress=False, checkpoint=state)
    assert_same(resumed, whole)
    assert not state.exists()  # deleted once the pass has finished
    assert whole.data_fingerprint == data_fingerprint(data)


def test_ctrl_c_keeps_the_last_whole_batch(insp, images, tmp_path):
    state = tmp_path / "top.partial"
    calls = []
    real = insp.run_batch

    def interrupted(batch, names):
        calls.append(len(batch))
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(batch, names)

    insp.run_batch = interrupted
    try:
        with pytest.raises(KeyboardInterrupt):
            mine(insp, images, LAYERS, k=3, batch_size=4, progress=False, checkpoint=state)
    finally:
        del insp.run_batch
    assert checkpoint_progress(state) == (12, 37)
    resumed = mine(insp, images, LAYERS, k=3, batch_size=4, progress=False, checkpoint=state)
    assert_same(resumed, mine(insp, images, LAYERS, k=3, batch_size=4, progress=False))


def test_periodic_checkpoints_land_on_batch_boundaries(insp, images, tmp_path):
    state = tmp_path / "top.partial"
    seen = []

    def look(done, total):
        seen.append(checkpoint_progress(state)[0] if state.exists() else 0)

    mine(insp, images, ["1"], k=3, batch_size=4, progress=False, callback=look,
         checkpoint=state, checkpoint_every=10)  # fmt: skip
    # callbacks see the checkpoint written after the previous batch: at 12, 20, 32 images
    assert seen == [0, 0, 0, 12, 12, 20, 20, 20, 32, 32]
    assert not state.exists()


def test_a_different_pass_is_refused(insp, images, tmp_path):
    state = tmp_path / "top.partial"
    with pytest.raises(MiningCancelled):
        mine(insp, images, ["1"], k=3, batch_size=4, progress=False,
             should_stop=lambda: True, checkpoint=state)  # fmt: skip
    cases = [
        (dict(k=4), "different k"),
        (dict(layers=["4"]), "different layers"),
        (dict(batch_size=8), "different batch size"),
        (dict(data=images + 1), "different data set"),
        (dict(data=images[:30]), "different data set"),
        (dict(insp=Inspector(tiny_rgb().requires_grad_(False)[:5], device="cpu")), "model"),
    ]
    for change, message in cases:
        args = dict(insp=insp, data=images, layers=["1"], k=3, batch_size=4)
        with pytest.raises(ValueError, match=message):
            mine(**{**args, **change}, progress=False, checkpoint=state)
    items = Items(images)  # item data: the images done are read again and compared
    with pytest.raises(MiningCancelled):
        mine(insp, items, ["1"], k=3, batch_size=4, progress=False,
             should_stop=lambda: True, checkpoint=tmp_path / "items")  # fmt: skip
    with pytest.raises(ValueError, match="different number of images"):
        mine(insp, Items(images[:30]), ["1"], k=3, batch_size=4, progress=False,
             checkpoint=tmp_path / "items")  # fmt: skip
    with pytest.raises(ValueError, match="images 0 to 3 differ"):
        mine(insp, Items(images.flip(0)), ["1"], k=3, batch_size=4, progress=False,
             checkpoint=tmp_path / "items")  # fmt: skip
    (tmp_path / "junk").write_bytes(b"junk")
    with pytest.raises(ValueError, match="junk"):
        mine(insp, images, ["1"], progress=False, checkpoint=tmp_path / "junk")


def test_image_folder_resume_and_fingerprint_read_no_image(insp, tmp_path):
    root = image_folder(tmp_path / "pics")
    reads = []

    def counting(path):
        reads.append(path)
        return Image.open(path).convert("RGB")

    data = folder_set(root, counting)
    fp = data_fingerprint(data)
    assert reads == []  # relative paths, sizes, mtimes and labels only
    whole = mine(insp, data, LAYERS, k=5, batch_size=8, progress=False)
    assert whole.data_fingerprint == fp and len(reads) == 40
    state = tmp_path / "top.partial"
    with pytest.raises(MiningCancelled):
        mine(insp, data, LAYERS, k=5, batch_size=8, progress=False,
             should_stop=lambda: True, checkpoint=state)  # fmt: skip
    reads.clear()
    resumed = mine(insp, data, LAYERS, k=5, batch_size=8, progress=False, checkpoint=state)
    assert len(reads) == 32  # the 8 images done are not read again
    assert_same(resumed, whole)


def _refused(path, insp, data) -> None:
    with pytest.raises(ValueError, match="different data set"):
        TopK.load(path, insp, data)


def test_a_swapped_pair_is_caught(insp, images, tmp_path):
    path = tmp_path / "top.pt"
    swap = list(range(len(images)))
    swap[5], swap[30] = 30, 5
    mine(insp, images, ["1"], progress=False).save(path)
    TopK.load(path, insp, images)
    _refused(path, insp, images[swap])
    mine(insp, Items(images), ["1"], progress=False).save(path)
    TopK.load(path, insp, Items(images))
    _refused(path, insp, Items(images[swap]))
    root = image_folder(tmp_path / "pics")
    mine(insp, folder_set(root), ["1"], progress=False).save(path)
    TopK.load(path, insp, folder_set(root))
    a, b = root / "a" / "001.png", root / "a" / "003.png"
    stat_a = a.stat()
    bytes_a, bytes_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(bytes_b)  # same size (random pixels do not compress): caught by the mtimes
    b.write_bytes(bytes_a)
    assert len(bytes_a) == len(bytes_b) and a.stat().st_mtime_ns != stat_a.st_mtime_ns
    _refused(path, insp, folder_set(root))
    a.write_bytes(bytes_a)
    b.write_bytes(bytes_b)
    mine(insp, folder_set(root), ["1"], progress=False).save(path)
    a.rename(root / "a" / "zzz.png")  # same contents under another name: another order
    _refused(path, insp, folder_set(root))


def test_load_warns_about_what_was_not_checked(insp, images, tmp_path):
    path = tmp_path / "top.pt"
    mine(insp, images[:5], ["1"], progress=False).save(path)
    with pytest.warns(UserWarning, match="nothing was checked .*insp=.* and data="):
        TopK.load(path)
    with pytest.warns(UserWarning, match="the data was not checked"):
        TopK.load(path, insp)
    with pytest.warns(UserWarning, match="the model was not checked"):
        TopK.load(path, data=images[:5])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TopK.load(path, insp, images[:5])


def test_version_1_files_are_refused_with_the_way_out(tmp_path):
    path = tmp_path / "old.pt"
    torch.save({"format": "zfwidgets.topk/1", "k": 1, "count": 0, "model": "", "data": "",
                "layers": {}}, path)  # fmt: skip
    with pytest.raises(ValueError, match="32 images only.*mine again"):
        TopK.load(path)


@pytest.mark.parametrize(
    "loader, named",
    [
        (lambda d: DataLoader(d, sampler=SubsetRandomSampler(range(10))), "SubsetRandomSampler"),
        (
            lambda d: DataLoader(d, batch_sampler=BatchSampler(RandomSampler(d), 4, False)),
            "BatchSampler over a RandomSampler",
        ),
        (
            lambda d: DataLoader(d, sampler=WeightedRandomSampler([1.0] * 10, 10)),
            "WeightedRandomSampler",
        ),
        (lambda d: DataLoader(d, shuffle=True), "RandomSampler"),
    ],
)
def test_unordered_loaders_are_refused(insp, images, loader, named):
    with pytest.raises(ValueError, match=f"fixed order.*{named}.*shuffle=False"):
        mine(insp, loader(TensorDataset(images[:10])), ["1"], progress=False)


def test_fingerprint_and_mining_leave_the_global_random_state():
    """Starting a DataLoader draws a seed: ours must not move the caller's random state."""

    class Plain(torch.utils.data.Dataset):
        def __len__(self):
            return 6

        def __getitem__(self, i):
            return torch.full((1, 6, 6), float(i)), i % 2

    insp = Inspector(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()), device="cpu")
    state = torch.get_rng_state()
    data_fingerprint(Plain())
    mine(
        insp,
        Plain(),
        k=2,
        progress=False,
    )
    assert torch.equal(state, torch.get_rng_state())
