"""Hand-worked examples for the two deconvnet operations, checked exactly."""

from __future__ import annotations

import torch
from torch import nn

from zfwidgets.core.backward import transposed_conv, unpool
from zfwidgets.core.layers import pool_geometry
from zfwidgets.core.record import decode_switches, encode_switches


def test_transposed_convolution_student_example():
    """Seed 004: map [[4,3],[2,0]] with kernel [[1,1,1],[1,2,1],[1,1,1]] at stride 3 -> 6x6
    whose 3x3 blocks are 4x, 3x, 2x and 0x the kernel."""
    kernel = torch.tensor([[1.0, 1, 1], [1, 2, 1], [1, 1, 1]]).view(1, 1, 3, 3)
    fmap = torch.tensor([[4.0, 3], [2, 0]]).view(1, 1, 2, 2)
    conv = nn.Conv2d(1, 1, 3, stride=3, bias=False)
    out = transposed_conv(fmap, kernel, conv, (6, 6))[0, 0]
    k = kernel[0, 0]
    expected = torch.cat(
        [torch.cat([4 * k, 3 * k], dim=1), torch.cat([2 * k, 0 * k], dim=1)], dim=0
    )
    assert out.shape == (6, 6)
    assert torch.equal(out, expected)
    assert out[1, 1] == 8  # the circled centre of the slide: 4 x 2


def test_transposed_convolution_lands_on_exact_input_size():
    """AlexNet conv1 (11x11, stride 4, pad 2): 224 -> 55 -> 224, not 223; last row is real."""
    conv = nn.Conv2d(1, 1, 11, stride=4, padding=2, bias=False)
    torch.manual_seed(0)
    x = torch.randn(1, 1, 224, 224, requires_grad=True)
    y = conv(x)
    g = torch.randn_like(y)
    (ref,) = torch.autograd.grad(y, x, g)
    ours = transposed_conv(g, conv.weight.detach(), conv, (224, 224))
    assert ours.shape == (1, 1, 224, 224)
    assert torch.allclose(ours, ref, atol=1e-5)
    assert ref[0, 0, -1].abs().sum() > 0  # padding with zeros instead would be wrong here


def test_unpool_overlapping_windows_adds_where_one_input_wins_twice():
    """3x3 stride-2 windows on a 5x5 input: the centre of the middle column is in two windows.

    Input has its maximum 9 at (2, 2), which lies in all four windows; every window's switch
    points there, so unpooling must put the sum of the four pooled signals at (2, 2).
    """
    x = torch.tensor(
        [
            [1.0, 0, 0, 0, 2],
            [0, 0, 0, 0, 0],
            [0, 0, 9, 0, 0],
            [0, 0, 0, 0, 0],
            [3, 0, 0, 0, 4],
        ]
    ).view(1, 1, 5, 5)
    pool = nn.MaxPool2d(3, 2)
    g = pool_geometry(pool)
    y, idx = nn.functional.max_pool2d(x, 3, 2, return_indices=True)
    assert y.flatten().tolist() == [9, 9, 9, 9]
    switches = encode_switches(idx, g, 5)
    assert switches.dtype == torch.uint8
    assert switches.flatten().tolist() == [8, 6, 2, 0]  # offset of (2,2) inside each window
    assert torch.equal(decode_switches(switches, g, 5), idx)
    signal = torch.tensor([[1.0, 10], [100, 1000]]).view(1, 1, 2, 2)
    out = unpool(signal, idx, x.shape)
    expected = torch.zeros(5, 5)
    expected[2, 2] = 1111
    assert torch.equal(out[0, 0], expected)


def test_unpool_two_windows_different_winners():
    """Where windows overlap but the maxima differ, each value goes to its own switch."""
    x = torch.tensor([[1.0, 2, 3, 0, 5], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]]).view(1, 1, 3, 5)
    y, idx = nn.functional.max_pool2d(x, 3, 2, return_indices=True)
    assert y.flatten().tolist() == [3, 5]
    out = unpool(torch.tensor([[[[7.0, 8.0]]]]), idx, x.shape)[0, 0]
    assert out[0, 2] == 7 and out[0, 4] == 8 and out.sum() == 15


def test_switch_round_trip_with_padding_dilation_and_ceil_mode():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 17, 19)
    for pool in (nn.MaxPool2d(3, 2, padding=1), nn.MaxPool2d(3, 2, dilation=2, ceil_mode=True)):
        g = pool_geometry(pool)
        _, idx = nn.functional.max_pool2d(
            x, g.kernel, g.stride, g.padding, g.dilation, g.ceil_mode, return_indices=True
        )
        assert torch.equal(decode_switches(encode_switches(idx, g, 19), g, 19), idx)
