"""Plain ResNets from torchvision's blocks, and the stage loop that the escnn ResNets share.

Why not ``torchvision.models.resnet18(weights=None, num_classes=3)``: its stage loop is private to its class, so
the G-ResNets could not share it. Here one loop (:func:`build_stages`) builds every depth for both the plain and
the escnn builders from the same :class:`~gcnn_spin.models.specs.ModelSpec`; the plain blocks are torchvision's
``BasicBlock``/``Bottleneck`` (their ``expansion`` attribute drives the loop), the init is torchvision's, and the
resulting parameter tensors match torchvision's ResNet with 3 outputs one to one (tested). An exported G-ResNet
is an instance of the same :class:`ResNet` class.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, conv1x1

from .heads import PooledHead
from .mc import SplitForward
from .specs import ModelSpec

BLOCKS: dict[str, type[nn.Module]] = {"basic": BasicBlock, "bottleneck": Bottleneck}


def stage_plan(spec: ModelSpec, base_width: int = 64) -> list[tuple[int, int, int]]:
    """``(n_blocks, planes, stride)`` per stage, widths scaled by ``base_width / stem_width``."""
    return [(n, width * base_width // spec.stem_width, 1 if i == 0 else 2)
            for i, (n, width) in enumerate(zip(spec.layers, spec.widths))]


def build_stages(make_block: Callable[[Any, int, int], tuple[nn.Module, Any]], inplanes: Any,
                 plan: Sequence[tuple[int, int, int]]) -> tuple[list[list[nn.Module]], Any]:
    """The one stage loop: ``make_block(inplanes, planes, stride) -> (block, next_inplanes)``.

    ``inplanes`` is a channel count for plain blocks and an escnn ``FieldType`` for equivariant ones. The first
    block of a stage carries its stride (and a projection shortcut when the shape changes).
    """
    stages = []
    for n_blocks, planes, stride in plan:
        blocks = []
        for b in range(n_blocks):
            block, inplanes = make_block(inplanes, planes, stride if b == 0 else 1)
            blocks.append(block)
        stages.append(blocks)
    return stages, inplanes


class ResNet(SplitForward, nn.Module):
    """Stem, stages ``layer1..layerK``, head: ``(B, 3, S, S) -> (B, n_out)``. Built from finished parts."""

    def __init__(self, conv1: nn.Module, bn1: nn.Module, maxpool: nn.Module, stages: Sequence[nn.Module],
                 head: nn.Module):
        super().__init__()
        self.conv1, self.bn1 = conv1, bn1
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = maxpool
        self.stage_names = tuple(f"layer{i}" for i in range(1, len(stages) + 1))
        for name, stage in zip(self.stage_names, stages):
            self.add_module(name, stage)
        self.head = head

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, S, S) -> (B, C, h, h)``: everything before the head (no dropout here)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (B, C0, S/4, S/4)
        for name in self.stage_names:
            x = getattr(self, name)(x)
        return x



def build_resnet(spec: ModelSpec, *, dropout: float = 0.5, base_width: int = 64, init: bool = True,
                 head_activation: str = "relu") -> ResNet:
    """Plain ResNet of ``spec`` with ``spec.backbone_outputs`` outputs (2 for CE-ResNet's two-pass predict)."""
    block_cls = BLOCKS[spec.block]

    def make_block(inplanes: int, planes: int, stride: int) -> tuple[nn.Module, int]:
        out = planes * block_cls.expansion
        downsample = None
        if stride != 1 or inplanes != out:
            downsample = nn.Sequential(conv1x1(inplanes, out, stride), nn.BatchNorm2d(out))
        return block_cls(inplanes, planes, stride, downsample), out

    stages, width = build_stages(make_block, base_width, stage_plan(spec, base_width))
    model = ResNet(
        conv1=nn.Conv2d(3, base_width, kernel_size=7, stride=2, padding=3, bias=False),
        bn1=nn.BatchNorm2d(base_width),
        maxpool=nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        stages=[nn.Sequential(*blocks) for blocks in stages],
        head=PooledHead(width, spec.backbone_outputs, hidden=spec.head_hidden, dropout=dropout,
                        dropout_at=spec.dropout_at, activation=head_activation),
    )
    if init:  # torchvision's ResNet init
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
    return model


class PreActForward:
    """The pre-activation residual step, shared by the escnn block and its plain export.

    ``x_n = pre(x)`` (batch norm, ReLU); ``body(x_n) + shortcut(x_n)``, or ``+ x`` without a shortcut. Works on
    tensors and on escnn ``GeometricTensor``s alike.
    """

    def forward(self, x):
        x_n = self.pre(x)
        return self.body(x_n) + (x if self.shortcut is None else self.shortcut(x_n))


class PreActBlock(PreActForward, nn.Module):
    """Plain pre-activation block (an exported :class:`~.g_resnet_study.GPreActBlock`)."""

    def __init__(self, pre: nn.Module, body: nn.Module, shortcut: nn.Module | None):
        super().__init__()
        self.pre, self.body, self.shortcut = pre, body, shortcut


class PreActResNet(SplitForward, nn.Module):
    """Stem conv, stages, final batch norm + ReLU (``post``), head: the study's G-ResNet layout, exported."""

    def __init__(self, conv1: nn.Module, stages: Sequence[nn.Module], post: nn.Module, head: nn.Module):
        super().__init__()
        self.conv1 = conv1
        self.stage_names = tuple(f"layer{i}" for i in range(1, len(stages) + 1))
        for name, stage in zip(self.stage_names, stages):
            self.add_module(name, stage)
        self.post, self.head = post, head

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        for name in self.stage_names:
            x = getattr(self, name)(x)
        return self.post(x)

