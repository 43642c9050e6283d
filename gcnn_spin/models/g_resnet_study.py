"""The study's G-ResNet as its code built it (``architecture = "study_code"``): escnn's wide-ResNet layout.

What differs from the torchvision layout of :mod:`.g_resnet` (the study's ``custom_models/G_ResNet.py``):

- stem: one 7x7 stride-2 convolution to regular fields, no batch norm, ReLU or max-pool after it;
- pre-activation blocks (:class:`GPreActBlock`): ``x_n = relu(bn(x))``, the residual path and the projection
  shortcut (a bare 1x1 convolution) both read ``x_n``; the stride sits on the block's 3x3 convolution (the
  BasicBlock's second, the Bottleneck's middle one);
- the Bottleneck has no x4 expansion: its three convolutions keep the stage's width;
- the last block of the last stage maps to *trivial* fields (``int(c * sqrt|G|)`` of them under ``fixparams``),
  followed by batch norm (``momentum=0.9``, as the study's) and ReLU; group pooling of trivial fields changes nothing;
- the MC-dropout layer acts elementwise on that last feature map, before the spatial mean (``dropout_at="map"``),
  then a free linear layer.

Widths follow :func:`~.fields.n_fields` (the study's ``fixparams``). The parameter count equals the study's
module for ResNet18 and ResNet50 (tested). The exported model is a plain :class:`~.resnet.PreActResNet`.
"""

from __future__ import annotations

import math

import torch
from escnn import nn as enn
from torch import nn

from .fields import Width, gspace, input_type, n_fields, regular_type
from .g_layers import own_bases_, r2conv
from .heads import PooledHead
from .mc import SplitForward
from .resnet import PreActBlock, PreActForward, PreActResNet, stage_plan
from .specs import ModelSpec


def trivial_type(space, channels: int, width: Width) -> enn.FieldType:
    """The study's last-stage type: ``int(c * sqrt|G|)`` trivial fields (``fixparams``), or ``c`` of them."""
    n = int(channels * math.sqrt(space.fibergroup.order())) if width == "fixparams" else channels
    return enn.FieldType(space, [space.trivial_repr] * max(1, n))


def _bn_relu(field_type: enn.FieldType, momentum: float = 0.1) -> list[enn.EquivariantModule]:
    return [enn.InnerBatchNorm(field_type, momentum=momentum), enn.ReLU(field_type, inplace=True)]


#: The study's last batch norm has ``momentum=0.9`` (torch's convention: the running statistics keep 10 % of the
#: old value per batch, so they follow the last few training batches); its others keep torch's 0.1.
FINAL_BN_MOMENTUM = 0.9


class GPreActBlock(PreActForward, enn.EquivariantModule):
    """Pre-activation block: BasicBlock (3x3, 3x3 with the stride) or Bottleneck (1x1, 3x3 with the stride, 1x1)
    at one width ``inner`` throughout; ``(B, C_in, H, W) -> (B, C_out, H/s, W/s)``."""

    def __init__(self, in_type: enn.FieldType, inner: enn.FieldType, out_type: enn.FieldType, stride: int,
                 bottleneck: bool, init: bool = True):
        super().__init__()
        self.in_type, self.out_type, self.stride = in_type, out_type, stride
        self.pre = enn.SequentialModule(*_bn_relu(in_type))
        if bottleneck:
            body = [r2conv(in_type, inner, 1, init=init), *_bn_relu(inner),
                    r2conv(inner, inner, 3, stride=stride, init=init), *_bn_relu(inner),
                    r2conv(inner, out_type, 1, init=init)]
        else:
            body = [r2conv(in_type, inner, 3, init=init), *_bn_relu(inner),
                    r2conv(inner, out_type, 3, stride=stride, init=init)]
        self.body = enn.SequentialModule(*body)
        self.shortcut = (r2conv(in_type, out_type, 1, stride=stride, padding=0, init=init)
                         if stride != 1 or in_type != out_type else None)

    def evaluate_output_shape(self, input_shape: tuple) -> tuple:
        b, _, h, w = input_shape
        return (b, self.out_type.size, (h - 1) // self.stride + 1, (w - 1) // self.stride + 1)

    def export(self) -> PreActBlock:
        self.eval()
        return PreActBlock(self.pre.export(), self.body.export(),
                           None if self.shortcut is None else self.shortcut.export()).eval()


class GPreActResNet(SplitForward, nn.Module):
    """``(B, 3, S, S) -> (B, n_out)``: wrap once, stem conv, stages, batch norm + ReLU, unwrap, head."""

    def __init__(self, in_type, conv1, stages, post, head):
        super().__init__()
        self.in_type, self.conv1 = in_type, conv1
        self.stage_names = tuple(f"layer{i}" for i in range(1, len(stages) + 1))
        for name, stage in zip(self.stage_names, stages):
            self.add_module(name, stage)
        self.post, self.head = post, head

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(enn.GeometricTensor(x, self.in_type))
        for name in self.stage_names:
            x = getattr(self, name)(x)
        return self.post(x).tensor


    def export(self) -> PreActResNet:
        self.eval()
        return PreActResNet(self.conv1.export(), [getattr(self, n).export() for n in self.stage_names],
                            self.post.export(), self.head).eval()


def build_g_resnet_study(spec: ModelSpec, *, dropout: float = 0.5, base_width: int = 64, init: bool = True,
                         width: Width = "fixparams") -> GPreActResNet:
    """The study's G-ResNet of ``spec`` (C_N, or D_N with ``spec.flips``), ``spec.backbone_outputs`` outputs."""
    if spec.output not in ("invariant", "two_pass"):
        raise ValueError(f"{spec.name}: the study's layout ends in trivial fields, which cannot carry the "
                         f"{spec.output!r} output; use architecture='torchvision'")
    space = gspace(spec.rotations, spec.flips)
    order = spec.group_order
    in_type = input_type(space)
    stem = regular_type(space, n_fields(base_width, order, width))
    plan = stage_plan(spec, base_width)
    stages, current = [], stem
    for s, (n_blocks, planes, stride) in enumerate(plan):
        main = regular_type(space, n_fields(planes, order, width))
        last = trivial_type(space, planes, width) if s == len(plan) - 1 else main
        blocks = []
        for b in range(n_blocks):
            out = last if b == n_blocks - 1 else main
            blocks.append(GPreActBlock(current, main, out, stride if b == 0 else 1, spec.block == "bottleneck",
                                       init=init))
            current = out
        stages.append(enn.SequentialModule(*blocks))
    head = PooledHead(current.size, spec.backbone_outputs, hidden=spec.head_hidden, dropout=dropout,
                      dropout_at="map")
    if init:
        torch.nn.init.zeros_(head.fc.bias)  # as the study's init loop
    return own_bases_(GPreActResNet(in_type, r2conv(in_type, stem, 7, stride=2, padding=3, init=init), stages,
                                    enn.SequentialModule(*_bn_relu(current, FINAL_BN_MOMENTUM)), head))
