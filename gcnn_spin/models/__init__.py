"""Model registry: the study's models and the one-pass chirality-equivariant G-ResNets.

``names("g_*")``, ``spec(name)``, ``build(name, image_size=spec.input_size, dropout=0.5, **options)`` ->
``nn.Module`` mapping ``(B, 3, S, S)`` to logits ``(B, 3)`` in (CW, ACW, Other) order; ``export(model)`` -> plain
PyTorch with the same logits; ``save_checkpoint``/``load_checkpoint`` work across escnn's train/eval state-dict
difference; ``enable_mc_dropout(model)`` turns the dropout layers back on after ``model.eval()``.

Importing this package does not import escnn (the escnn builders load on first use).
"""

from .checkpoint import load_checkpoint, load_model_state, model_state_dict, save_checkpoint
from .export import export, load_exported, save_exported
from .registry import build, enable_mc_dropout, names, options, spec
from .specs import ModelSpec

__all__ = [
    "ModelSpec", "build", "enable_mc_dropout", "export", "load_checkpoint", "load_exported", "load_model_state",
    "model_state_dict", "names", "options", "save_checkpoint", "save_exported", "spec",
]
