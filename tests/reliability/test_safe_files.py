"""Files never run code when read; a full disk while saving leaves earlier files intact."""

from __future__ import annotations

import errno
import pickle

import pytest
import torch
from reliability_cases import malicious_file

from zfwidgets import Inspector, demo
from zfwidgets.core.mining import TopK, mine


@pytest.fixture(scope="module")
def mined():
    d = demo.load()
    insp = Inspector(d.model, device="cpu")
    return insp, mine(insp, d.dataset.images[:30], ["conv1"], progress=False)


@pytest.mark.parametrize("kind", ["torch", "pickle"])
def test_topk_load_refuses_pickled_code(tmp_path, kind):
    marker = tmp_path / "marker"
    path = malicious_file(tmp_path / "evil.pt", marker, kind)
    with pytest.raises(ValueError) as info:
        TopK.load(path)
    assert str(path) in str(info.value)
    assert not marker.exists(), "loading the file ran its code"
    # The file really is malicious: an unrestricted unpickler would have created the marker.
    if kind == "torch":
        torch.load(path, weights_only=False)
    else:
        pickle.loads(path.read_bytes())
    assert marker.exists()


def _full_disk_after(nbytes: int):
    """A torch.save that writes ``nbytes`` of the file and then finds the disk full."""

    def save(obj, f, *args, **kwargs):
        f.write(b"\0" * nbytes)
        raise OSError(errno.ENOSPC, "No space left on device")

    return save


def test_full_disk_during_topk_save_keeps_the_earlier_file(tmp_path, mined, monkeypatch):
    insp, top = mined
    path = tmp_path / "top.pt"
    top.save(path)
    before = path.read_bytes()
    monkeypatch.setattr(torch, "save", _full_disk_after(4096))
    with pytest.raises(OSError) as info:
        top.save(path)
    monkeypatch.undo()
    assert info.value.errno == errno.ENOSPC
    assert str(path) in str(info.value) and "No space left" in str(info.value)
    assert "earlier file is unchanged" in str(info.value)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["top.pt"], "a temporary file was left"
    back = TopK.load(path, insp)
    assert torch.equal(back.layers["features.1"].images, top.layers["features.1"].images)


def test_full_disk_during_a_first_topk_save_leaves_nothing(tmp_path, mined, monkeypatch):
    _, top = mined
    monkeypatch.setattr(torch, "save", _full_disk_after(100))
    with pytest.raises(OSError, match="could not save top-k results"):
        top.save(tmp_path / "new.pt")
    assert list(tmp_path.iterdir()) == []


def test_full_disk_during_snapshot_save_keeps_earlier_snapshots(tmp_path, monkeypatch):
    from zfwidgets.train import SnapshotError, SnapshotRecorder, TrainConfig, load_run, train
    from zfwidgets.train import snapshots as snapshot_module
    from zfwidgets.zoo.small import SmallZFNet

    d = demo.load()
    data = torch.utils.data.TensorDataset(d.dataset.images[:32], d.dataset.labels[:32])
    run_dir = tmp_path / "run"
    kwargs = {"widths": (4, 8, 8)}

    files: dict[str, bytes] = {}
    real = snapshot_module._write_chunks
    written = []

    def full_disk(f, data):
        f.write(data[: len(data) // 2])
        written.append(len(data))
        raise OSError(errno.ENOSPC, "No space left on device")

    def disk_fills_at_epoch_2(epoch, model, metrics):  # runs before the recorder's callback
        if epoch == 2:
            files.update({p.name: p.read_bytes() for p in run_dir.iterdir()})
            monkeypatch.setattr(snapshot_module, "_write_chunks", full_disk)

    torch.manual_seed(0)
    recorder = SnapshotRecorder(run_dir, epochs=(1, 2), model_kwargs=kwargs)
    config = TrainConfig(epochs=2, batch_size=16)
    with pytest.raises(SnapshotError, match="disk is full") as info:
        train(
            SmallZFNet(**kwargs),
            data,
            None,
            config,
            [disk_fills_at_epoch_2, recorder],
            "cpu",
            False,
        )
    monkeypatch.setattr(snapshot_module, "_write_chunks", real)
    assert written and str(run_dir) in str(info.value)
    assert "epoch_0001.pt" in files
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == files, "earlier files changed"
    run = load_run(run_dir)
    assert run.epochs == [1]
    assert run.model(1) is not None  # checksums and shapes of the kept snapshot still pass
