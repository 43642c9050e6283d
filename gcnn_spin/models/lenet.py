"""The study's LeNet: conv 5x5 (6) -> ReLU -> maxpool 2 -> conv 5x5 (16) -> ReLU -> maxpool 2 -> FC 120 -> FC 84
-> Dropout -> FC 3. The plain one flattens the last feature map; an exported G-LeNet is an instance of the same
:class:`LeNet` class (features + group-pooling head).
"""

from __future__ import annotations

import torch
from torch import nn

from .heads import PooledHead
from .specs import ModelSpec


class LeNet(nn.Module):
    """``features`` then ``head``: ``(B, 3, S, S) -> (B, 3)``."""

    def __init__(self, features: nn.Module, head: nn.Module):
        super().__init__()
        self.features, self.head = features, head

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, S, S) -> (B, C, h, h)``: the convolutions (no dropout here)."""
        return self.features(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, C, h, h) -> (B, 3)``; holds the MC-dropout layer (see :mod:`.mc`)."""
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def build_lenet(spec: ModelSpec, *, image_size: int = 160, dropout: float = 0.5) -> LeNet:
    """Plain LeNet; the first FC layer sees ``16 * h * h`` inputs, ``h = spec.feature_size(image_size)``."""
    c1, c2 = spec.widths
    features = nn.Sequential(
        nn.Conv2d(3, c1, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
    )
    side = spec.feature_size(image_size)
    head = PooledHead(c2 * side * side, spec.backbone_outputs, hidden=spec.head_hidden, dropout=dropout,
                      pool="flatten", dropout_at=spec.dropout_at)
    return LeNet(features, head)
