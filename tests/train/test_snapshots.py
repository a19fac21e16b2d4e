"""SnapshotRecorder and load_run: contents, resume, kill-safety, unsafe and broken files."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn
from trainkit import WIDTHS, recorder, tiny_config, tiny_data, tiny_model, tiny_run

import zfwidgets.train.snapshots as snapshots
from zfwidgets.train import SnapshotError, SnapshotRecorder, load_run, train

ROOT = Path(__file__).resolve().parents[2]


def _fix_manifest_entry(run_dir: Path, epoch: int) -> None:
    """Make the manifest's sha256/size agree with the file on disk (what an attacker would do)."""
    path = run_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    for s in manifest["snapshots"]:
        if s["epoch"] == epoch:
            data = (run_dir / s["file"]).read_bytes()
            s["sha256"] = hashlib.sha256(data).hexdigest()
            s["bytes"] = len(data)
    path.write_text(json.dumps(manifest))


def test_manifest_and_weights_round_trip(tmp_path):
    model, history = tiny_run(tmp_path / "run", epochs=3, snapshot_epochs=(1, 2, 5))
    run = load_run(tmp_path / "run")
    # 5 is past the run's end and dropped; the last epoch is always added.
    assert run.epochs == [1, 2, 3]
    assert run.history == history.rows
    assert [r["epoch"] for r in run.history] == [1, 2, 3]
    assert set(run.history[0]) == {"epoch", "loss", "train_acc", "val_acc", "lr", "seconds"}
    m = run.manifest
    assert m["architecture"]["class"] == "SmallZFNet"
    assert m["architecture"]["kwargs"] == {"widths": list(WIDTHS)}
    assert m["architecture"]["parameters"]["features.0.weight"] == [4, 1, 5, 5]
    assert m["data"]["source"] == "demo" and m["data"]["size"] == 96
    assert len(m["data"]["fingerprint"]) == 32
    for s in m["snapshots"]:
        data = (run.path / s["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == s["sha256"]
        assert s["metrics"] == run.history[s["epoch"] - 1]
    assert torch.equal(run.mean, history.mean)
    rebuilt = run.model(3)
    assert not rebuilt.training
    expected = model.state_dict()
    for k, a in rebuilt.state_dict().items():
        assert torch.equal(a, expected[k]), k
    # A fresh model each call: changing one does not change the next.
    with torch.no_grad():
        rebuilt.features[0].weight.zero_()
    assert torch.equal(run.model(3).features[0].weight, model.features[0].weight)


def test_epoch_snapshots_hold_that_epochs_weights(tmp_path):
    seen = {}

    def grab(epoch, model, metrics):
        seen[epoch] = {k: v.clone() for k, v in model.state_dict().items()}

    train_set, val_set = tiny_data()
    train(
        tiny_model(),
        train_set,
        val_set,
        tiny_config(3),
        [grab, recorder(tmp_path / "r", (1, 2, 3))],
        device="cpu",
        progress=False,
    )
    run = load_run(tmp_path / "r")
    for epoch in (1, 2, 3):
        for k, v in run.state_dict(epoch).items():
            assert torch.equal(v, seen[epoch][k]), (epoch, k)
    assert not torch.equal(seen[1]["features.0.weight"], seen[3]["features.0.weight"])


def test_resume_continues_exactly(tmp_path):
    full_model, full_history = tiny_run(tmp_path / "full", epochs=4)
    tiny_run(tmp_path / "part", epochs=2)  # stopped after epoch 2 (keeps its resume state)
    train_set, val_set = tiny_data()
    resumed = tiny_model(seed=123)  # its own weights are replaced by the snapshot's
    history = train(
        resumed,
        train_set,
        val_set,
        tiny_config(4),
        [recorder(tmp_path / "part")],
        device="cpu",
        progress=False,
        resume=tmp_path / "part",
    )
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    for a, b in zip(history.rows, full_history.rows, strict=True):
        assert {k: a[k] for k in a if k != "seconds"} == {k: b[k] for k in b if k != "seconds"}
    expected = full_model.state_dict()
    for k, a in resumed.state_dict().items():
        assert torch.equal(a, expected[k]), k
    run = load_run(tmp_path / "part")
    assert run.epochs == [1, 2, 3, 4]
    # Only the latest snapshot keeps resume state (keep_state="last").
    assert [("state" in s) for s in run.manifest["snapshots"]] == [False, False, False, True]
    assert sorted(p.name for p in run.path.glob("*.state.pt")) == ["epoch_0004.state.pt"]


def test_recording_into_an_existing_run_is_refused(tmp_path):
    tiny_run(tmp_path / "r", epochs=1)
    with pytest.raises(SnapshotError, match="already holds a run"):
        tiny_run(tmp_path / "r", epochs=1)


_CHILD = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {tests!r})
    import torch
    torch.set_num_threads(1)
    from trainkit import recorder, tiny_config, tiny_data, tiny_model
    import zfwidgets.train.snapshots as snapshots
    from zfwidgets.train import train

    state = {{"epoch": 0}}
    real = snapshots._write_chunks

    def write(f, data):
        if state["epoch"] == 3 and len(data) > 4096:  # the epoch-3 weights file
            f.write(data[: len(data) // 2])
            f.flush()
            print("WRITING", flush=True)
            time.sleep(600)
        real(f, data)

    snapshots._write_chunks = write

    def mark(epoch, model, metrics):
        state["epoch"] = epoch

    train_set, val_set = tiny_data()
    train(tiny_model(), train_set, val_set, tiny_config(4), [mark, recorder({run!r})],
          device="cpu", progress=False)
    """
)


def test_killed_while_writing_keeps_completed_snapshots_and_resumes(tmp_path):
    run_dir = tmp_path / "run"
    script = _CHILD.format(tests=str(Path(__file__).parent), run=str(run_dir))
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        line = child.stdout.readline()
        assert line.strip() == "WRITING", child.stderr.read()
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL
    partial = list(run_dir.glob(".epoch_0003.pt.*.partial"))
    assert len(partial) == 1 and partial[0].stat().st_size > 0  # it died mid-write
    assert not (run_dir / "epoch_0003.pt").exists()

    run = load_run(run_dir)
    assert run.epochs == [1, 2]
    assert [r["epoch"] for r in run.history] == [1, 2]
    run.model(1), run.model(2)  # both intact (sha256 checked)

    train_set, val_set = tiny_data()
    resumed = tiny_model(seed=5)
    train(
        resumed,
        train_set,
        val_set,
        tiny_config(4),
        [recorder(run_dir)],
        device="cpu",
        progress=False,
        resume=run_dir,
    )
    assert run.refresh() is True and run.epochs == [1, 2, 3, 4]
    assert not list(run_dir.glob("*.partial"))  # the dead write's leftover was cleaned up
    reference, _ = tiny_run(tmp_path / "reference", epochs=4)
    expected = reference.state_dict()
    for k, a in resumed.state_dict().items():
        torch.testing.assert_close(a, expected[k], rtol=0, atol=1e-5, msg=k)


class _Evil:
    """Unpickling this calls open(marker, "w"): code execution on load."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_pickle_that_runs_code_is_refused(tmp_path):
    tiny_run(tmp_path / "r", epochs=2)
    marker = tmp_path / "pwned"
    target = tmp_path / "r" / "epoch_0002.pt"
    torch.save({"format": "zfwidgets.snapshot/1", "state_dict": _Evil(marker)}, target)
    _fix_manifest_entry(tmp_path / "r", 2)  # the hash matches: only weights-only loading saves us
    run = load_run(tmp_path / "r")
    with pytest.raises(SnapshotError, match="epoch_0002.pt.*weights-only loading refused"):
        run.model(2)
    assert not marker.exists()
    run.model(1)  # the rest of the run still loads
    # The file really is malicious: a plain pickle load runs its code.
    torch.load(target, weights_only=False)
    assert marker.exists()


def test_a_truncated_file_is_refused_by_name(tmp_path):
    tiny_run(tmp_path / "r", epochs=2)
    target = tmp_path / "r" / "epoch_0002.pt"
    target.write_bytes(target.read_bytes()[:1000])
    with pytest.raises(SnapshotError, match="epoch_0002.pt is corrupt or truncated"):
        load_run(tmp_path / "r").model(2)
    # Even with a manifest that agrees with the truncated file, loading fails by name.
    _fix_manifest_entry(tmp_path / "r", 2)
    with pytest.raises(SnapshotError, match="epoch_0002.pt is not a plain tensor file"):
        load_run(tmp_path / "r").model(2)


def test_a_file_of_another_architecture_is_refused_naming_both(tmp_path):
    tiny_run(tmp_path / "r", epochs=2)
    other = tiny_model(widths=(2, 4, 4))
    payload = {
        "format": "zfwidgets.snapshot/1",
        "epoch": 2,
        "architecture": "SmallZFNet(widths=[2, 4, 4])",
        "state_dict": other.state_dict(),
    }
    torch.save(payload, tmp_path / "r" / "epoch_0002.pt")
    _fix_manifest_entry(tmp_path / "r", 2)
    with pytest.raises(SnapshotError) as err:
        load_run(tmp_path / "r").model(2)
    msg = str(err.value)
    assert "epoch_0002.pt" in msg
    assert "SmallZFNet(widths=[2, 4, 4])" in msg and "SmallZFNet(widths=[4, 8, 8])" in msg
    assert "features.0.weight: file [2, 1, 5, 5] vs run [4, 1, 5, 5]" in msg


def test_a_full_disk_leaves_earlier_files_intact(tmp_path, monkeypatch):
    real = snapshots._write_chunks
    calls = {"epoch": 0}

    def full_disk(f, data):
        if calls["epoch"] >= 2:
            f.write(data[:100])
            raise OSError(errno.ENOSPC, "No space left on device")
        real(f, data)

    def mark(epoch, model, metrics):
        calls["epoch"] = epoch

    monkeypatch.setattr(snapshots, "_write_chunks", full_disk)
    train_set, val_set = tiny_data()
    with pytest.raises(SnapshotError, match="could not write .*epoch_0002.pt: the disk is full"):
        train(
            tiny_model(),
            train_set,
            val_set,
            tiny_config(3),
            [mark, recorder(tmp_path / "r")],
            device="cpu",
            progress=False,
        )
    monkeypatch.setattr(snapshots, "_write_chunks", real)
    run = load_run(tmp_path / "r")
    assert run.epochs == [1]
    run.model(1)
    assert not list((tmp_path / "r").glob("*.partial"))


def test_rebuilding_is_limited_to_the_allow_list(tmp_path):
    class Custom(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())
            self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(2 * 26 * 26, 10))

        def forward(self, x):
            return self.classifier(self.features(x))

    train_set, val_set = tiny_data()
    torch.manual_seed(0)
    model = Custom()
    rec = SnapshotRecorder(tmp_path / "c", epochs=(1,))
    train(model, train_set, None, tiny_config(1), [rec], device="cpu", progress=False)
    run = load_run(tmp_path / "c")
    assert run.architecture["kwargs"] is None
    with pytest.raises(SnapshotError, match="model_factory"):
        run.model(1)
    rebuilt = load_run(tmp_path / "c", model_factory=Custom).model(1)
    assert torch.equal(rebuilt.features[0].weight, model.features[0].weight)

    # A manifest naming some importable callable is never imported.
    path = tmp_path / "c" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["architecture"].update({"class": "system", "module": "os", "kwargs": {}})
    path.write_text(json.dumps(manifest))
    with pytest.raises(SnapshotError, match=r"names system\(\)"):
        load_run(tmp_path / "c").model(1)


def test_load_run_errors_name_the_path(tmp_path):
    with pytest.raises(SnapshotError, match="manifest.json does not exist"):
        load_run(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(SnapshotError, match="cannot read the manifest .*manifest.json"):
        load_run(tmp_path)
    tiny_run(tmp_path / "r", epochs=1)
    with pytest.raises(ValueError, match="no snapshot at epoch 7"):
        load_run(tmp_path / "r").model(7)


def test_float16_snapshots_without_state(tmp_path):
    model, _ = tiny_run(tmp_path / "r", epochs=2, dtype=torch.float16, keep_state="none")
    run = load_run(tmp_path / "r")
    weights = run.model(2).features[0].weight
    assert weights.dtype == torch.float32
    assert torch.equal(weights, model.features[0].weight.half().float())
    with pytest.raises(SnapshotError, match="cannot be resumed"):
        run.training_state()


def test_recording_does_not_change_the_training(tmp_path):
    """The recorder draws no random numbers: a recorded run equals an unrecorded one."""
    train_set, val_set = tiny_data()
    plain = tiny_model()
    train(plain, train_set, val_set, tiny_config(2), device="cpu", progress=False)
    recorded = tiny_model()
    rec = recorder(tmp_path / "r")
    train(recorded, train_set, val_set, tiny_config(2), [rec], device="cpu", progress=False)
    expected = plain.state_dict()
    for k, v in recorded.state_dict().items():
        assert torch.equal(v, expected[k]), k
