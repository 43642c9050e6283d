"""Export any registered model to plain PyTorch (no escnn objects) with the same logits, and save/load it.

escnn layers export to ``torch.nn`` layers (``EquivariantModule.export``); our G-models, blocks, heads and the
two-pass wrapper implement ``export()`` on top, so an exported G-ResNet is a :class:`~.resnet.ResNet` of
torchvision blocks and an exported G-LeNet a :class:`~.lenet.LeNet`. Plain models export as an eval-mode copy.
The model passed in is left in the mode it was in.
"""

from __future__ import annotations

import copy
import io
import os
from pathlib import Path

import torch
from torch import nn

from gcnn_spin.io import atomic_path


def export(model: nn.Module) -> nn.Module:
    """Plain-PyTorch copy of ``model`` in eval mode: same ``(B, 3, S, S) -> (B, 3)`` logits, no shared tensors."""
    was_training = model.training
    try:
        model.eval()
        plain = model.export() if hasattr(model, "export") else model
        plain = copy.deepcopy(plain).eval()
        for tensor in list(plain.parameters()) + list(plain.buffers()):
            # escnn's expanded filters can be strided views; give each tensor its own compact storage
            tensor.data = tensor.data.clone(memory_format=torch.contiguous_format)
        reference = next(model.parameters(), None)
        if reference is not None:  # escnn creates some exported layers in the default dtype/device
            plain.to(device=reference.device, dtype=reference.dtype)
    finally:
        model.train(was_training)
    for attr in ("model_name", "model_options", "image_field"):  # image_field: set by training (gcnn_spin.crop)
        if hasattr(model, attr):
            setattr(plain, attr, copy.deepcopy(getattr(model, attr)))
    leftovers = sorted({type(m).__module__ + "." + type(m).__name__ for m in plain.modules()
                        if type(m).__module__.split(".")[0] == "escnn"})
    if leftovers:
        raise TypeError(f"export left escnn modules in the model: {leftovers}")
    return plain


def save_exported(module: nn.Module, path: str | os.PathLike) -> Path:
    """Atomically ``torch.save`` an exported module (pickled; loading needs torch, torchvision and gcnn_spin)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(module, tmp)
    return path


def load_exported(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> nn.Module:
    """Load a module written by :func:`save_exported`, in eval mode. Only load files this project wrote."""
    module = torch.load(path, map_location=map_location, weights_only=False)
    if not isinstance(module, nn.Module):
        raise TypeError(f"{path}: expected a pickled nn.Module, found {type(module).__name__}")
    return module.eval()


def to_program(module: nn.Module, image_size: int, path: str | os.PathLike | None = None):
    """``torch.export`` program of an exported module (dynamic batch size), saved as ``.pt2`` if ``path``.

    The file loads with ``torch.export.load(path).module()`` and needs neither gcnn_spin nor escnn, but the
    graph is frozen in eval mode (dropout off), so MC dropout needs the pickled module of :func:`save_exported`.
    (``torch.jit.trace`` also works but is deprecated in this torch.)
    """
    device = next(module.parameters()).device
    example = torch.zeros(2, 3, image_size, image_size, device=device)
    program = torch.export.export(module.eval(), (example,), dynamic_shapes=({0: torch.export.Dim.DYNAMIC},))
    if path is not None:
        buffer = io.BytesIO()  # torch.export.save wants a ".pt2" name or a buffer, not our temporary name
        torch.export.save(program, buffer)
        with atomic_path(path) as tmp:
            tmp.write_bytes(buffer.getvalue())
    return program
