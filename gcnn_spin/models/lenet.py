"""The study's LeNet: conv 5x5 (6) -> ReLU -> maxpool 2 -> conv 5x5 (16) -> ReLU -> maxpool 2 -> FC 120 -> FC 84
-> Dropout -> FC 3. The plain one flattens the last feature map; an exported G-LeNet is an instance of the same
:class:`LeNet` class (features + group-pooling head).

``architecture="study_code"`` (the plain LeNet only) builds it as the study's ``LeNet.py``: the input multiplied by
a soft circular mask (:class:`InputMask`) and both convolutions padded by 1 (at S = 160: 16 x 38 x 38 features).
:class:`BlurMaxPool2d` is the plain form of escnn's anti-aliased max-pool, which the study's G-LeNet uses.
"""

from __future__ import annotations

import torch
from torch import nn

from .heads import PooledHead
from .mc import SplitForward
from .specs import ModelSpec


class LeNet(SplitForward, nn.Module):
    """``features`` then ``head``: ``(B, 3, S, S) -> (B, 3)``."""

    def __init__(self, features: nn.Module, head: nn.Module):
        super().__init__()
        self.features, self.head = features, head

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, S, S) -> (B, C, h, h)``: the convolutions (no dropout here)."""
        return self.features(x)



class InputMask(nn.Module):
    """Multiplies ``(B, C, S, S)`` images by a disc: 1 within ``(1 - margin/100)`` of the radius ``(S - 1) / 2``,
    falling off as ``exp(-(r^2 - r0^2) / sigma^2)`` beyond (the study's LeNet: margin 1 %, sigma 2 px)."""

    def __init__(self, image_size: int, margin: float = 1.0, sigma: float = 2.0):
        super().__init__()
        centre = (image_size - 1) / 2
        inner = (centre * (1 - margin / 100)) ** 2
        axis = torch.arange(image_size, dtype=torch.float32) - centre
        r2 = axis[:, None] ** 2 + axis[None, :] ** 2
        mask = torch.where(r2 > inner, torch.exp((inner - r2) / sigma ** 2), torch.ones(()))
        self.register_buffer("mask", mask[None, None], persistent=False)  # derived from the size: not in checkpoints

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask

    def extra_repr(self) -> str:
        return f"size={self.mask.shape[-1]}"


class BlurMaxPool2d(nn.Module):
    """Anti-aliased max-pool (Zhang 2019) in plain PyTorch, as escnn's ``PointwiseMaxPoolAntialiased2D`` computes it:
    a dense ``kernel_size`` max (stride 1, ``padding``), then a depthwise convolution with ``blur`` ``(C, 1, k, k)``
    (a normalised Gaussian) at ``stride`` with ``blur_padding``. ``(B, C, H, W) -> (B, C, H', W')``."""

    def __init__(self, blur: torch.Tensor, kernel_size: tuple[int, int], stride: tuple[int, int],
                 padding: tuple[int, int], blur_padding: tuple[int, int]):
        super().__init__()
        self.register_buffer("blur", blur.detach().clone())
        self.kernel_size, self.stride = tuple(kernel_size), tuple(stride)
        self.padding, self.blur_padding = tuple(padding), tuple(blur_padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.max_pool2d(x, self.kernel_size, 1, self.padding)
        return nn.functional.conv2d(x, self.blur, stride=self.stride, padding=self.blur_padding, groups=x.shape[1])

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, blur={tuple(self.blur.shape[-2:])}"


def build_lenet(spec: ModelSpec, *, image_size: int = 160, dropout: float = 0.5) -> LeNet:
    """Plain LeNet; the first FC layer sees ``16 * h * h`` inputs, ``h = spec.feature_size(image_size)``."""
    c1, c2 = spec.widths
    study = spec.architecture == "study_code"
    pad = 1 if study else 0
    features = nn.Sequential(
        *([InputMask(image_size)] if study else []),
        nn.Conv2d(3, c1, 5, padding=pad), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 5, padding=pad), nn.ReLU(inplace=True), nn.MaxPool2d(2),
    )
    side = spec.feature_size(image_size)
    head = PooledHead(c2 * side * side, spec.backbone_outputs, hidden=spec.head_hidden, dropout=dropout,
                      pool="flatten", dropout_at=spec.dropout_at)
    return LeNet(features, head)
