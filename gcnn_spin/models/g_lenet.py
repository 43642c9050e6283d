"""G-LeNet in escnn (C8, or D8 with ``flips``): the study's LeNet with regular fields, then group pooling.

``architecture="classic"``: conv 5x5 (6 regular fields) -> ReLU -> maxpool 2 -> conv 5x5 (16) -> ReLU -> maxpool 2
-> group pooling -> spatial mean -> FC 120 -> FC 84 -> Dropout -> FC 3. Widths: the study's channel numbers count
*fields* here (48 and 128 channels for C8), because a field is the G-CNN's unit of one feature in every
orientation; the mean over space replaces LeNet's flatten (which is not rotation-invariant), so the FC layers see
16 inputs instead of ``16 * 37 * 37`` at S=160: 29 k parameters against the plain LeNet's 2.6 M
(``bench/bench_models.py``).

``architecture="study_code"``: the study's ``Steerable_LeNet.py`` as its code built it: both convolutions padded by 1,
without bias and with escnn's default band limit; escnn's anti-aliased max-pool (:class:`AntialiasedMaxPool`: a
dense 2x2 max, then a 5x5 Gaussian blur of sigma 0.6 at stride 2); the group-pooled ``(16, 38, 38)`` map (S = 160)
*flattened* into FC 120, so 2.79 M parameters. The convolutions and pools are C8-equivariant (exactly at rot90
when ``S % 4 == 2``, :meth:`~.specs.ModelSpec.is_exact_size`), but the flatten lets FC 120 see positions: the
logits are not rotation-invariant. The study's module also builds an input mask it never applies; ours has none.
"""

from __future__ import annotations

import torch
from escnn import nn as enn
from torch import nn

from .fields import gspace, input_type, regular_type
from .g_layers import e2wrn_cutoff, own_bases_, r2conv
from .heads import PooledHead
from .lenet import BlurMaxPool2d, LeNet
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


class AntialiasedMaxPool(enn.PointwiseMaxPoolAntialiased2D):
    """escnn's anti-aliased pointwise max-pool, with the plain-PyTorch export escnn lacks."""

    def export(self) -> BlurMaxPool2d:
        self.eval()
        return BlurMaxPool2d(self.filter, self.kernel_size, self.stride, self.padding, self._pad).eval()


def build_g_lenet(spec: ModelSpec, *, image_size: int = 160, dropout: float = 0.5, init: bool = True) -> GLeNet:
    """The classic G-LeNet (spatial mean) or, with ``spec.architecture == "study_code"``, the study's (flatten)."""
    space = gspace(spec.rotations, spec.flips)
    in_type = input_type(space)
    t1, t2 = (regular_type(space, width) for width in spec.widths)
    study = spec.architecture == "study_code"
    conv = dict(padding=1, bias=False, frequencies_cutoff=None) if study else \
        dict(padding=0, bias=True, frequencies_cutoff=e2wrn_cutoff)
    pool = AntialiasedMaxPool if study else enn.PointwiseMaxPool2D
    features = enn.SequentialModule(
        r2conv(in_type, t1, 5, init=init, **conv), enn.ReLU(t1, inplace=True), pool(t1, 2),
        r2conv(t1, t2, 5, init=init, **conv), enn.ReLU(t2, inplace=True), pool(t2, 2),
    )
    side = spec.feature_size(image_size) if study else 1
    head = PooledHead(len(t2) * side * side, spec.backbone_outputs, hidden=spec.head_hidden, dropout=dropout,
                      group_size=spec.group_order, dropout_at=spec.dropout_at, pool="flatten" if study else "mean")
    return own_bases_(GLeNet(in_type, features, head))
