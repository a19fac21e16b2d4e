"""Small models for the core tests, built with fixed seeds."""

from __future__ import annotations

import torch
from torch import nn


def zf_like(seed: int = 0) -> nn.Sequential:
    """Every supported layer kind once: conv, ReLU, overlapping 3x3/2 pools, LRN, BN, avg pool,
    dropout, flatten, linear. Input (3, 32, 32)."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 5, stride=2, padding=2),  # 16x16
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2),  # 7x7
        nn.LocalResponseNorm(5),
        nn.Conv2d(8, 12, 3, padding=1, dilation=1),
        nn.BatchNorm2d(12),
        nn.ReLU(),
        nn.MaxPool2d(3, 2, padding=1),  # 4x4
        nn.AvgPool2d(2),  # 2x2
        nn.Dropout(0.5),
        nn.Flatten(),
        nn.Linear(48, 20),
        nn.ReLU(),
        nn.Linear(20, 5),
    )
    bn = model[5]
    bn.running_mean.uniform_(-0.2, 0.2)
    bn.running_var.uniform_(0.5, 2.0)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.1, 0.1)
    return model.eval()
