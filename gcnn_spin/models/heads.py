"""Plain-PyTorch heads shared by the plain models, the G-models and their exported copies (no escnn here).

Keeping the heads free of escnn means an exported model (see :mod:`gcnn_spin.models.export`) pickles and loads
with torch alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class MCDropout(nn.Dropout):
    """``nn.Dropout`` that can be kept for MC sampling only (``sample_only``), as the study's ResNets had it.

    Ordinary (``sample_only=False``): drops in training mode, like ``nn.Dropout``. ``sample_only=True``: off in
    training and in eval, on only after :func:`~.registry.enable_mc_dropout` (which sets ``sampling``); any
    ``train()``/``eval()`` call switches sampling off again. Holds no tensors, so state dicts are unchanged.
    """

    sample_only: bool = False
    sampling: bool = False

    def train(self, mode: bool = True):
        self.sampling = False
        return super().train(mode)

    def is_active(self) -> bool:
        return self.training and self.p > 0 and (self.sampling or not self.sample_only)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) if self.is_active() else x

    def extra_repr(self) -> str:
        return f"p={self.p}, sample_only={self.sample_only}"


#: Activations between the MLP layers of a head: ReLU, or Tanh as the study's CE-ResNet code (``CE_ResNet.py``).
HEAD_ACTIVATIONS = {"relu": lambda: nn.ReLU(inplace=True), "tanh": nn.Tanh}

#: Where a head's (MC-)dropout layer can sit: before the last linear layer, before the MLP, on the feature map.
DROPOUT_PLACES = ("last", "head", "map")


class PooledHead(nn.Module):
    """Features ``(B, C, H, W)`` -> logits ``(B, n_out)``.

    ``pool="mean"``: max over the ``group_size`` channels of each regular field (group pooling; ``group_size=1``
    skips it), then the spatial mean; ``pool="flatten"``: flatten as a classic LeNet. Then an MLP (``hidden``,
    ``activation`` between its layers: ReLU, or Tanh as the study's CE-ResNet) and the last linear layer. The
    MC-dropout layer sits where the study put it: ``dropout_at="last"`` before the last linear layer (LeNets:
    FC 84 -> Dropout -> FC 3; ResNets), ``"head"`` before the MLP (the CE ResNet50 drops the pooled 2048
    features), ``"map"`` elementwise on the feature map before the spatial mean (the study's G-ResNet code:
    ``PointwiseDropout`` after group pooling, then ``avg_pool2d``; each MC sample averages another subset of
    positions). Without ``hidden``, "last" and "head" are the same place.
    """

    def __init__(self, in_features: int, n_out: int = 3, *, hidden: Sequence[int] = (), dropout: float = 0.5,
                 group_size: int = 1, pool: str = "mean", dropout_at: str = "last", activation: str = "relu"):
        super().__init__()
        if pool not in ("mean", "flatten"):
            raise ValueError(f"pool must be 'mean' or 'flatten', got {pool!r}")
        if dropout_at not in DROPOUT_PLACES:
            raise ValueError(f"dropout_at must be one of {DROPOUT_PLACES}, got {dropout_at!r}")
        self.group_size, self.pool, self.dropout_at = group_size, pool, dropout_at
        layers: list[nn.Module] = []
        width = in_features
        if activation not in HEAD_ACTIVATIONS:
            raise ValueError(f"activation must be one of {tuple(HEAD_ACTIVATIONS)}, got {activation!r}")
        for h in hidden:
            layers += [nn.Linear(width, h), HEAD_ACTIVATIONS[activation]()]
            width = h
        self.mlp = nn.Sequential(*layers)
        self.dropout = MCDropout(dropout)
        self.fc = nn.Linear(width, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.group_size > 1:
            b, c, h, w = x.shape
            x = x.reshape(b, c // self.group_size, self.group_size, h, w).amax(dim=2)
        if self.dropout_at == "map":
            x = self.dropout(x)
        x = x.mean(dim=(2, 3)) if self.pool == "mean" else x.flatten(1)
        if self.dropout_at == "head":
            return self.fc(self.mlp(self.dropout(x)))
        if self.dropout_at == "map":
            return self.fc(self.mlp(x))
        return self.fc(self.dropout(self.mlp(x)))

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}, pool={self.pool!r}, dropout_at={self.dropout_at!r}"


class FieldDropout(MCDropout):
    """Dropout of whole regular fields: ``(B, F * G, H, W)``, each field's ``G`` channels kept or dropped together.

    A mask on whole fields commutes with the group action, so with MC dropout on, every sample (every mask) is
    itself an exactly equivariant model; channel-wise dropout would break that inside each field.
    """

    def __init__(self, group_size: int, p: float = 0.5):
        super().__init__(p)
        self.group_size = group_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.is_active():
            return x
        b, c = x.shape[:2]
        fields = c // self.group_size
        keep = torch.empty(b, fields, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(1 - self.p) / (1 - self.p)
        return (x.reshape(b, fields, self.group_size, -1) * keep).reshape(x.shape)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}, {super().extra_repr()}"
