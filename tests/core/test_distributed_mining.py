"""mine(..., distributed=True) under torchrun with 2 CPU processes (gloo) equals one process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from models import zf_like

from zfwidgets import Inspector
from zfwidgets.core.mining import TopK, mine

HERE = Path(__file__).resolve().parent

SCRIPT = """
import sys, torch, torch.distributed as dist
sys.path.insert(0, {tests!r})
from models import zf_like
from torch.utils.data import TensorDataset
from zfwidgets import Inspector
from zfwidgets.core.mining import mine

dist.init_process_group("gloo")
images = torch.load({images!r})
insp = Inspector(zf_like(), device="cpu")
for kind, data in (("tensor", images), ("dataset", TensorDataset(images, torch.zeros(23)))):
    top = mine(insp, data, layers=["conv1", "conv2", "fc3"], k=5, batch_size=4, progress=False,
               distributed=True)
    if dist.get_rank() == 1:  # every rank holds the merged result: save a non-zero rank's copy
        top.save({out!r} + kind)
dist.barrier()  # no rank tears gloo down while another still works (it aborts)
dist.destroy_process_group()
"""


def _data() -> torch.Tensor:
    images = torch.randn(23, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    images[17] = images[2]  # a tie across the two shards: the lower index must win
    return images


def test_two_gloo_processes_give_the_single_process_result(tmp_path):
    images = _data()
    torch.save(images, tmp_path / "images.pt")
    script = tmp_path / "mine_ddp.py"
    out = tmp_path / "top.pt"
    script.write_text(
        SCRIPT.format(tests=str(HERE), images=str(tmp_path / "images.pt"), out=str(out))
    )
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node=2",
        "--master-port=0",
        "--rdzv-backend=c10d",
        "--rdzv-endpoint=localhost:0",
        str(script),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    want = mine(
        Inspector(zf_like(), device="cpu"),
        images,
        layers=["conv1", "conv2", "fc3"],
        k=5,
        batch_size=4,  # the same batches as the shards': batched kernels round by batch
        progress=False,
    )
    for kind in ("tensor", "dataset"):
        got = TopK.load(f"{out}{kind}")
        assert got.count == want.count == 23
        for name, t in want.layers.items():
            assert torch.equal(got.layers[name].images, t.images), (kind, name)
            assert torch.equal(got.layers[name].values, t.values)
            assert torch.equal(got.layers[name].positions, t.positions)


def test_distributed_without_a_process_group_is_refused():
    with pytest.raises(ValueError, match="initialised torch.distributed process group"):
        mine(Inspector(zf_like(), device="cpu"), _data(), k=3, progress=False, distributed=True)
