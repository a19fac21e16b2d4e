"""Bit-packed rectifier masks: the fast packing against a plain loop, and the round trip."""

import pytest
import torch

from zfwidgets.core.layers import pool_geometry
from zfwidgets.core.record import decode_switches, encode_switches, pack_bits, unpack_bits


def _packed_by_loop(mask: torch.Tensor) -> torch.Tensor:
    flat = mask.reshape(mask.shape[0], -1).tolist()
    rows = []
    for values in flat:
        values = values + [False] * (-len(values) % 8)
        rows.append(
            [
                sum(int(v) << j for j, v in enumerate(values[i : i + 8]))
                for i in range(0, len(values), 8)
            ]
        )
    return torch.tensor(rows, dtype=torch.uint8)


@pytest.mark.parametrize("shape", [(1, 1), (1, 8), (2, 3, 5, 7), (3, 16, 4, 4), (1, 13), (4, 9, 3)])
def test_pack_bits_equals_a_loop_and_unpacks(shape):
    mask = torch.rand(shape, generator=torch.Generator().manual_seed(len(shape))) > 0.5
    packed = pack_bits(mask)
    assert torch.equal(packed, _packed_by_loop(mask))
    assert torch.equal(unpack_bits(packed, mask.shape), mask)


def test_pack_bits_reads_non_bool_as_nonzero():
    values = torch.tensor([[0.0, 2.0, -1.0, 0.0, 0.5, 0.0, 0.0, 0.0, 3.0]])
    assert torch.equal(pack_bits(values), pack_bits(values != 0))


def test_relu_mask_from_output_equals_input_sign():
    x = torch.randn(2, 4, 6, 6)
    x[0, 0, 0, :3] = torch.tensor([0.0, -0.0, 1e-30])
    assert torch.equal(torch.relu(x).bool(), x > 0)


@pytest.mark.parametrize(
    "kernel, stride, padding, dilation, ceil",
    [(3, 2, 1, 1, False), (2, 2, 0, 1, False), (3, 2, 0, 1, True), (3, 1, 1, 2, False)],
)
def test_switches_round_trip_to_max_pool_indices(kernel, stride, padding, dilation, ceil):
    pool = torch.nn.MaxPool2d(kernel, stride, padding, dilation, ceil_mode=ceil)
    geometry = pool_geometry(pool)
    x = torch.randn(2, 3, 17, 15, generator=torch.Generator().manual_seed(kernel + dilation))
    _, indices = torch.nn.functional.max_pool2d(
        x, kernel, stride, padding, dilation, ceil, return_indices=True
    )
    offsets = encode_switches(indices, geometry, x.shape[-1])
    assert offsets.dtype == torch.uint8 and int(offsets.max()) < kernel * kernel
    assert torch.equal(decode_switches(offsets, geometry, x.shape[-1]), indices)


def _byte_tensors(rec):
    return [t for group in (rec.switches, rec.masks) for t in group.values()]


def test_record_keeps_its_switches_and_masks_in_one_block(monkeypatch):
    import torchvision

    from zfwidgets import Inspector
    from zfwidgets.core import record

    insp = Inspector(torchvision.models.resnet18(weights=None).eval(), device="cpu")
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    batched = record.record_forward(insp.graph, insp.current_weights(), images, set())
    monkeypatch.setattr(record, "in_one_block", lambda rec: rec)  # the separate blocks
    separate = record.record_forward(insp.graph, insp.current_weights(), images, set())

    blocks = {t.untyped_storage().data_ptr() for t in _byte_tensors(batched)}
    assert len(blocks) == 1 and len(_byte_tensors(batched)) == 18  # 17 ReLU calls, one pool
    for group in ("switches", "masks"):
        mine, theirs = getattr(batched, group), getattr(separate, group)
        assert mine.keys() == theirs.keys()
        assert all(torch.equal(mine[i], theirs[i]) for i in mine)
    monkeypatch.undo()
    for k, one in enumerate(batched.split()):  # a batched pass cached image by image
        assert len({t.untyped_storage().data_ptr() for t in _byte_tensors(one)}) == 1
        assert all(torch.equal(one.masks[i], separate.masks[i][k : k + 1]) for i in one.masks)
