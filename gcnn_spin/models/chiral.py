"""Chirality readouts: the two-pass predict (CE and ``_c`` models) and the one-pass D_N chiral head (``gc_``).

Both give logits ``(B, 3)`` in (CW, ACW, Other) order with ``logits(mirror(x)) == logits(x)[:, (ACW, CW, Other)]``:

- :class:`TwoPass` (Jia, Zhu & Pen): ``a = f(x)``, ``b = f(mirror(x))`` for a backbone ``f`` with outputs
  (Z, Other); logits ``[a_Z, b_Z, (a_Other + b_Other) / 2]``. Exact for any ``f``, about its own mirror axis
  (a flip of the width axis); two forward passes (run as one batch of ``2B``, so batch-norm statistics in
  training are mirror-symmetric too).
- :class:`ChiralHead`: on D_N features, spatial mean -> field dropout -> 1x1 equivariant conv to the fields
  (Other, Spiral, Delta) with Delta in the sign irrep, then :func:`chiral_logits` ``CW = S + Delta``,
  ``ACW = S - Delta``, ``Other = O``. The conv has no bias on Delta (escnn only biases trivial fields), so a
  mirror flips Delta's sign exactly.

This module imports escnn only when a :class:`ChiralHead` is built, so an exported model (plain PyTorch) that
contains :class:`TwoPass` or :class:`ChiralLogits` loads without escnn.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:  # pragma: no cover
    from escnn import nn as enn

#: The axis the two-pass predict mirrors: the width axis of ``(B, 3, S, S)`` (a mirror about the vertical axis).
MIRROR_DIM = -1


def mirror(x: torch.Tensor) -> torch.Tensor:
    """The two-pass predict's mirror of ``(B, C, S, S)`` images."""
    return x.flip(MIRROR_DIM)


def chiral_logits(osd: torch.Tensor) -> torch.Tensor:
    """``(B, 3)`` fields (Other, Spiral, Delta) -> logits (CW, ACW, Other) = (S + D, S - D, O)."""
    other, spiral, delta = osd.unbind(dim=1)
    return torch.stack([spiral + delta, spiral - delta, other], dim=1)


class ChiralLogits(nn.Module):
    """Module form of :func:`chiral_logits` (kept in exported models). ``(B, 3) -> (B, 3)``."""

    def forward(self, osd: torch.Tensor) -> torch.Tensor:
        return chiral_logits(osd)


class TwoPass(nn.Module):
    """``forward`` IS the chirality-equivariant predict over ``backbone: (B, 3, S, S) -> (B, 2)`` (Z, Other)."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.combine(self.backbone(torch.cat([x, mirror(x)], dim=0)))

    @staticmethod
    def combine(out: torch.Tensor) -> torch.Tensor:
        """Backbone outputs ``(2B, 2)`` of ``[x; mirror(x)]`` -> logits ``(B, 3)``."""
        a, b = out.chunk(2, dim=0)
        return torch.stack([a[:, 0], b[:, 0], (a[:, 1] + b[:, 1]) / 2], dim=1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features of ``[x; mirror(x)]``: ``(2B, ...)``, the images' rows first, then their mirrors'."""
        return self.backbone.forward_features(torch.cat([x, mirror(x)], dim=0))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.combine(self.backbone.forward_head(features))

    @property
    def head(self) -> nn.Module:
        return self.backbone.head

    def export(self) -> TwoPass:
        from .export import export  # deferred: export imports this module

        return TwoPass(export(self.backbone))


class ChiralHead(nn.Module):
    """D_N regular features ``(B, C, H, W)`` (``in_type``) -> logits ``(B, 3)`` via the (Other, Spiral, Delta) fields.

    Spatial mean (keeps the field types) -> field dropout (whole fields, so each MC-dropout sample stays exactly
    chirality-equivariant) -> equivariant 1x1 conv to the chiral fields -> :func:`chiral_logits`.
    """

    def __init__(self, in_type: enn.FieldType, dropout: float = 0.5, init: bool = True):
        super().__init__()
        from .fields import chiral_type
        from .g_layers import r2conv
        from .heads import FieldDropout

        group = in_type.fibergroup
        if any(r != in_type.gspace.regular_repr for r in in_type.representations):
            raise ValueError(f"ChiralHead expects regular fields of {group.name}, got {in_type}")
        self.in_type = in_type
        self.dropout = FieldDropout(group.order(), p=dropout)
        self.conv = r2conv(in_type, chiral_type(in_type.gspace), 1, bias=True, init=init)
        self.logits = ChiralLogits()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from escnn import nn as enn

        pooled = self.dropout(x.mean(dim=(2, 3), keepdim=True))  # (B, C, 1, 1)
        fields = self.conv(enn.GeometricTensor(pooled, self.in_type))  # (B, 3, 1, 1): Other, Spiral, Delta
        return self.logits(fields.tensor.flatten(1))

    def export(self) -> nn.Sequential:
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), copy.deepcopy(self.dropout), self.conv.export(),
                             nn.Flatten(1), copy.deepcopy(self.logits))
