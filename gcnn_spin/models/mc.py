"""MC-dropout sampling that runs the backbone once and only the head ``n_passes`` times.

Every model here keeps its dropout layers in its head (``spec.dropout_at``; the study's G-ResNet drops on the last
feature map, still inside the head), and the backbone is deterministic in eval mode. So the ``n`` stochastic
passes of an image share one backbone forward: ``forward_head(repeat(forward_features(x), n))`` draws the same
masks, in the same order, from the same random stream as ``model(repeat(x, n))``, and gives the same logits
(up to float rounding). Models without the split (or with a dropout layer outside their head) are sampled whole.

A model offers the split with ``forward_features(x) -> f`` and ``forward_head(f) -> logits`` (timm's names) and a
``head`` module; ``f.repeat_interleave(n, 0)`` must equal ``forward_features(x.repeat_interleave(n, 0))`` (true
for one row per image, and for :class:`~.chiral.TwoPass`, whose rows are the images then their mirrors).
"""

from __future__ import annotations

import torch
from torch import nn

_ESCNN_DROPOUTS = ("PointwiseDropout", "FieldDropout")


class SplitForward:
    """Mixin: ``forward(x) = forward_head(forward_features(x))`` with ``forward_head = self.head``; the class
    defines ``forward_features`` and a ``head`` module holding its dropout layers."""

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Features -> logits; holds the MC-dropout layer."""
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def is_dropout(module: nn.Module) -> bool:
    """A torch or escnn dropout layer (or our field dropout)."""
    return isinstance(module, nn.modules.dropout._DropoutNd) or type(module).__name__ in _ESCNN_DROPOUTS


def _active_dropouts(module: nn.Module) -> set[int]:
    return {id(m) for m in module.modules() if is_dropout(m) and getattr(m, "p", 1.0) > 0}


def splits_at_head(model: nn.Module) -> bool:
    """Whether ``model`` offers ``forward_features``/``forward_head`` and every dropout layer with ``p > 0`` lies
    in its ``head``, so that head-only passes sample it exactly."""
    head = getattr(model, "head", None)
    if not (hasattr(model, "forward_features") and hasattr(model, "forward_head") and isinstance(head, nn.Module)):
        return False
    return _active_dropouts(model) <= _active_dropouts(head)


@torch.no_grad()
def sample_logits(model: nn.Module, x: torch.Tensor, n_passes: int, head_only: bool = True) -> torch.Tensor:
    """``n_passes`` logits per image ``(B·n, n_out)``, image-major, as ``model(x.repeat_interleave(n, 0))``.

    The caller puts ``model`` in MC-dropout mode (eval + dropout on). ``head_only`` (default) reuses one backbone
    pass per image when :func:`splits_at_head`; ``False`` runs every pass whole (the reference it is tested
    against).
    """
    if head_only and splits_at_head(model):
        return model.forward_head(model.forward_features(x).repeat_interleave(n_passes, dim=0))
    return model(x.repeat_interleave(n_passes, dim=0))
