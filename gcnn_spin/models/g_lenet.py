"""G-LeNet in escnn (C8, or D8 with ``flips``): the study's LeNet with regular fields, then group pooling.

conv 5x5 (6 regular fields) -> ReLU -> maxpool 2 -> conv 5x5 (16) -> ReLU -> maxpool 2 -> group pooling ->
spatial mean -> FC 120 -> FC 84 -> Dropout -> FC 3. Widths: the study's channel numbers count *fields* here
(48 and 128 channels for C8), because a field is the G-CNN's unit of one feature in every orientation; the mean
over space replaces LeNet's flatten (which is not rotation-invariant), so the FC layers see 16 inputs instead of
``16 * 37 * 37`` at S=160: 29 k parameters against the plain LeNet's 2.6 M (``bench/bench_models.py``).
"""

from __future__ import annotations

import torch
from escnn import nn as enn
from torch import nn

from .fields import gspace, input_type, regular_type
from .g_layers import own_bases_, r2conv
from .heads import PooledHead
from .lenet import LeNet
from .mc import SplitForward
from .specs import ModelSpec


class GLeNet(SplitForward, nn.Module):
    """``(B, 3, S, S) -> (B, 3)``: wrap once, equivariant features, unwrap, invariant head."""

    def __init__(self, in_type: enn.FieldType, features: enn.SequentialModule, head: nn.Module):
        super().__init__()
        self.in_type, self.features, self.head = in_type, features, head

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(enn.GeometricTensor(x, self.in_type)).tensor


    def export(self) -> LeNet:
        self.eval()
        return LeNet(self.features.export(), self.head).eval()


def build_g_lenet(spec: ModelSpec, *, dropout: float = 0.5, init: bool = True) -> GLeNet:
    space = gspace(spec.rotations, spec.flips)
    in_type = input_type(space)
    t1, t2 = (regular_type(space, width) for width in spec.widths)
    features = enn.SequentialModule(
        r2conv(in_type, t1, 5, padding=0, bias=True, init=init), enn.ReLU(t1, inplace=True),
        enn.PointwiseMaxPool2D(t1, 2),
        r2conv(t1, t2, 5, padding=0, bias=True, init=init), enn.ReLU(t2, inplace=True),
        enn.PointwiseMaxPool2D(t2, 2),
    )
    head = PooledHead(len(t2), spec.backbone_outputs, hidden=spec.head_hidden, dropout=dropout,
                      group_size=spec.group_order, dropout_at=spec.dropout_at)
    return own_bases_(GLeNet(in_type, features, head))
