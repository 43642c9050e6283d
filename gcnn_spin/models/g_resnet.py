"""G-ResNets in escnn: torchvision's ResNet block for block, over C8 or D8, regular fields throughout.

Each block mirrors torchvision's (``conv1 bn1 relu conv2 bn2 [conv3 bn3] downsample``, stride on the 3x3 conv)
and exports to that very torchvision block, so an exported G-ResNet is a plain :class:`~.resnet.ResNet`. Field
widths follow :func:`~.fields.n_fields` under the ``width`` rule (``"fixparams"``: the study's; ``"channels"``);
each layer is built from the previous one's ``out_type``, so a wiring mistake fails at construction. Heads (by
``spec.output``):

- ``invariant``: group pooling (max over each regular field) + spatial mean -> dropout -> a free linear layer to
  (CW, ACW, Other), as the study's. With ``flips`` (D8) every pooled feature is mirror-invariant, so the CW and
  ACW logits are learnt separately but both ignore a mirror: the reflection study's model, which spreads a spiral
  over CW and ACW. ``two_pass``: the same with 2 outputs (Z, Other) inside :class:`TwoPass`;
- ``chiral``: :class:`~.chiral.ChiralHead` on the D8 regular fields (group pooling would leave only invariant
  fields, which cannot carry Delta).
"""

from __future__ import annotations

import torch
from escnn import nn as enn
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from .chiral import ChiralHead
from .fields import Width, gspace, input_type, n_fields, regular_type
from .g_layers import own_bases_, r2conv
from .heads import PooledHead
from .mc import SplitForward
from .resnet import ResNet, build_stages, stage_plan
from .specs import ModelSpec


def _shortcut(in_type: enn.FieldType, out_type: enn.FieldType, stride: int, init: bool):
    if stride == 1 and in_type == out_type:
        return None
    return enn.SequentialModule(r2conv(in_type, out_type, 1, stride=stride, padding=0, init=init),
                                enn.InnerBatchNorm(out_type))


class _GBlock(enn.EquivariantModule):
    """Shared parts of the residual blocks; subclasses set ``expansion``, ``plain_block`` and the convs."""

    expansion: int = 1
    plain_block: type[nn.Module] = BasicBlock

    def _residual(self, x: enn.GeometricTensor) -> enn.GeometricTensor:
        raise NotImplementedError

    def forward(self, x: enn.GeometricTensor) -> enn.GeometricTensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu_out(self._residual(x) + identity)

    def evaluate_output_shape(self, input_shape: tuple) -> tuple:
        b, _, h, w = input_shape
        s = self.stride
        return (b, self.out_type.size, (h - 1) // s + 1, (w - 1) // s + 1)

    def export(self) -> nn.Module:
        """The torchvision block with the same structure, holding this block's exported layers."""
        self.eval()
        planes = self.conv1.out_type.size
        block = self.plain_block(self.in_type.size, planes, self.stride)
        for name, module in self.named_children():
            if name != "relu_out":
                setattr(block, name, module.export())
        return block.eval()


class GBasicBlock(_GBlock):
    """3x3 -> 3x3 plus the shortcut, ``fields`` regular fields: ``(B, C_in, H, W) -> (B, C_out, H/s, W/s)``."""

    expansion = 1
    plain_block = BasicBlock

    def __init__(self, in_type: enn.FieldType, fields: int, stride: int = 1, init: bool = True):
        super().__init__()
        inner = regular_type(in_type.gspace, fields)
        self.in_type, self.out_type, self.stride = in_type, inner, stride
        self.conv1 = r2conv(in_type, inner, 3, stride=stride, init=init)
        self.bn1 = enn.InnerBatchNorm(inner)
        self.relu = enn.ReLU(inner, inplace=True)
        self.conv2 = r2conv(inner, inner, 3, init=init)
        self.bn2 = enn.InnerBatchNorm(inner)
        self.downsample = _shortcut(in_type, inner, stride, init)
        self.relu_out = enn.ReLU(inner, inplace=True)

    def _residual(self, x):
        return self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))


class GBottleneck(_GBlock):
    """1x1 -> 3x3 (stride) -> 1x1 with 4x expansion, as torchvision's ResNet v1.5 bottleneck."""

    expansion = 4
    plain_block = Bottleneck

    def __init__(self, in_type: enn.FieldType, fields: int, stride: int = 1, init: bool = True):
        super().__init__()
        inner = regular_type(in_type.gspace, fields)
        out = regular_type(in_type.gspace, fields * self.expansion)
        self.in_type, self.out_type, self.stride = in_type, out, stride
        self.conv1 = r2conv(in_type, inner, 1, init=init)
        self.bn1 = enn.InnerBatchNorm(inner)
        self.conv2 = r2conv(inner, inner, 3, stride=stride, init=init)
        self.bn2 = enn.InnerBatchNorm(inner)
        self.conv3 = r2conv(inner, out, 1, init=init)
        self.bn3 = enn.InnerBatchNorm(out)
        self.relu = enn.ReLU(inner, inplace=True)
        self.downsample = _shortcut(in_type, out, stride, init)
        self.relu_out = enn.ReLU(out, inplace=True)

    def _residual(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        return self.bn3(self.conv3(x))


G_BLOCKS: dict[str, type[_GBlock]] = {"basic": GBasicBlock, "bottleneck": GBottleneck}


class GResNet(SplitForward, nn.Module):
    """``(B, 3, S, S) -> (B, n_out)``: wrap once, stem, stages, unwrap, head; the parts of :class:`~.resnet.ResNet`."""

    def __init__(self, in_type, conv1, bn1, relu, maxpool, stages, head):
        super().__init__()
        self.in_type = in_type
        self.conv1, self.bn1, self.relu, self.maxpool = conv1, bn1, relu, maxpool
        self.stage_names = tuple(f"layer{i}" for i in range(1, len(stages) + 1))
        for name, stage in zip(self.stage_names, stages):
            self.add_module(name, stage)
        self.head = head

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = enn.GeometricTensor(x, self.in_type)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for name in self.stage_names:
            x = getattr(self, name)(x)
        return x.tensor


    def export(self) -> ResNet:
        """Plain-PyTorch :class:`~.resnet.ResNet` with the same logits (eval mode)."""
        self.eval()
        head = self.head.export() if hasattr(self.head, "export") else self.head
        return ResNet(self.conv1.export(), self.bn1.export(), self.maxpool.export(),
                      [getattr(self, name).export() for name in self.stage_names], head).eval()


def build_g_resnet(spec: ModelSpec, *, dropout: float = 0.5, base_width: int = 64, init: bool = True,
                   width: Width = "channels") -> GResNet:
    """G-ResNet of ``spec`` (C_N, or D_N when ``spec.flips``) with the head its ``output`` asks for."""
    space = gspace(spec.rotations, spec.flips)
    order = spec.group_order
    block_cls = G_BLOCKS[spec.block]

    def make_block(in_type, planes, stride):
        block = block_cls(in_type, n_fields(planes, order, width), stride, init=init)
        return block, block.out_type

    in_type = input_type(space)
    stem = regular_type(space, n_fields(base_width, order, width))
    stages, last = build_stages(make_block, stem, stage_plan(spec, base_width))
    if spec.output == "chiral":
        head = ChiralHead(last, dropout=dropout, init=init)
    else:
        head = PooledHead(len(last), spec.backbone_outputs, hidden=spec.head_hidden, dropout=dropout,
                          group_size=order, dropout_at=spec.dropout_at)
    return own_bases_(GResNet(
        in_type,
        conv1=r2conv(in_type, stem, 7, stride=2, padding=3, init=init),
        bn1=enn.InnerBatchNorm(stem),
        relu=enn.ReLU(stem, inplace=True),
        maxpool=enn.PointwiseMaxPool2D(stem, kernel_size=3, stride=2, padding=1),
        stages=[enn.SequentialModule(*blocks) for blocks in stages],
        head=head,
    ))
