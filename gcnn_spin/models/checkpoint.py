"""Checkpoints that restore escnn models whichever mode (train/eval) they were saved or are loaded in.

escnn convolutions cache their expanded filter as buffers (``filter``, ``expanded_bias``; ``matrix`` for
``escnn.nn.Linear``) in eval mode and delete them in train mode, so a raw ``state_dict`` has different keys in
the two modes. The canonical state dict (:func:`model_state_dict`) leaves those caches out; loading
(:func:`load_model_state`) accepts a state dict with or without them, checks that nothing else is missing or
unexpected, and rebuilds the caches of modules that are in eval mode from the loaded weights.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gcnn_spin.io import atomic_path

FORMAT_VERSION = 1
_CACHE_BUFFERS = ("filter", "expanded_bias", "matrix")


def _caching_modules(model: nn.Module):
    """``(prefix, module)`` of escnn layers that cache an expanded kernel (they have ``expand_parameters``)."""
    for name, module in model.named_modules(remove_duplicate=False):  # escnn modules may compare equal
        if hasattr(module, "expand_parameters") and type(module).__module__.split(".")[0] == "escnn":
            yield (f"{name}." if name else ""), module


def cache_keys(model: nn.Module) -> set[str]:
    """State-dict keys that escnn may or may not hold depending on the mode."""
    return {prefix + buf for prefix, _ in _caching_modules(model) for buf in _CACHE_BUFFERS}


def model_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model.state_dict()`` without escnn's mode-dependent caches (same keys in train and eval mode)."""
    drop = cache_keys(model)
    return {k: v for k, v in model.state_dict().items() if k not in drop}


def load_model_state(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> nn.Module:
    """Load a canonical or raw (either mode) state dict into ``model``; other mismatches raise, naming keys."""
    drop = cache_keys(model)
    result = model.load_state_dict({k: v for k, v in state_dict.items() if k not in drop}, strict=False)
    missing = sorted(set(result.missing_keys) - drop)
    unexpected = sorted(result.unexpected_keys)
    if missing or unexpected:
        raise KeyError(f"state dict does not fit {type(model).__name__}: missing {missing[:10]}"
                       f"{' ...' if len(missing) > 10 else ''}, unexpected {unexpected[:10]}"
                       f"{' ...' if len(unexpected) > 10 else ''}")
    for _, module in _caching_modules(model):
        if not module.training:  # escnn only re-expands on a train -> eval switch
            module.training = True
            module.train(False)
    return model


def save_checkpoint(path: str | os.PathLike, model: nn.Module, **extra: Any) -> Path:
    """Atomically write ``{"model_state", "model_name", "model_options", "format", **extra}`` with ``torch.save``.

    ``extra`` carries anything else to resume from (optimiser/scheduler state dicts, epoch, RNG states as
    tensors/ints so the file stays loadable with ``weights_only=True``).
    """
    payload = {
        "format": FORMAT_VERSION,
        "model_name": getattr(model, "model_name", None),
        "model_options": dict(getattr(model, "model_options", {}) or {}),
        "model_state": model_state_dict(model),
        **extra,
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_checkpoint(path: str | os.PathLike, model: nn.Module | None = None, *,
                    map_location: str | torch.device = "cpu", weights_only: bool = True
                    ) -> tuple[nn.Module, dict[str, Any]]:
    """Restore ``(model, payload)``; without ``model`` it is rebuilt from the stored name and options.

    The model keeps its current mode (a rebuilt one is returned in eval mode).
    """
    payload = torch.load(path, map_location=map_location, weights_only=weights_only)
    if not isinstance(payload, dict) or "model_state" not in payload:
        raise ValueError(f"{path}: not a gcnn_spin checkpoint (no 'model_state')")
    if model is None:
        name = payload.get("model_name")
        if not name:
            raise ValueError(f"{path}: checkpoint has no model_name; pass the model to load into")
        from .registry import build

        model = build(name, init=False, **payload.get("model_options", {})).eval()
    return load_model_state(model, payload["model_state"]), payload
