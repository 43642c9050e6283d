"""The model registry: name -> :class:`~.specs.ModelSpec` -> ``nn.Module``, as timm's ``list_models``/``create``.

Every model maps ``(B, 3, S, S)`` to logits ``(B, 3)`` in (CW, ACW, Other) order, two-pass ones included, so
callers treat all models alike. escnn builders are imported on first use, so that loading an exported
(plain-PyTorch) model never imports escnn.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Callable, Iterable
from typing import Any

from torch import nn

from .heads import MCDropout
from .mc import is_dropout
from .specs import ARCHITECTURES, SPECS, WIDTH_RULES, ModelSpec

_SPECS: dict[str, ModelSpec] = {s.name: s for s in SPECS}

#: Options every model takes, with defaults (``image_size``: the spec's ``input_size``). ``init=False`` skips weight
#: init (use before loading weights).
COMMON_OPTIONS: dict[str, Any] = {"dropout": 0.5, "init": True}


def names(filter: str | Iterable[str] = "") -> list[str]:
    """Registered names in registry order, optionally filtered by wildcards (``"g_*"``, ``["lenet", "*_c"]``)."""
    patterns = [filter] if isinstance(filter, str) else list(filter)
    patterns = [p for p in patterns if p]
    return [n for n in _SPECS if not patterns or any(fnmatch.fnmatchcase(n, p) for p in patterns)]


def spec(name: str) -> ModelSpec:
    """The frozen description of ``name``; an unknown name raises, listing the valid ones."""
    try:
        return _SPECS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(_SPECS)}") from None


def options(name: str) -> dict[str, Any]:
    """Build options ``name`` accepts, with their defaults."""
    s = spec(name)
    valid = {"image_size": s.input_size, **COMMON_OPTIONS}
    if s.family == "resnet":
        valid["base_width"] = 64
        valid["dropout_in_training"] = True  # False: the study's ResNets, dropout for MC sampling only
        if s.equivariant:
            valid["width"] = "channels"  # or "fixparams" (the study's); see gcnn_spin.models.fields
        if s.head_hidden:
            valid["head_activation"] = "relu"  # or "tanh" (the study's CE-ResNet code)
    if s.family == "lenet":
        valid["architecture"] = "classic"  # or "study_code" (the study's LeNet.py / Steerable_LeNet.py); see ModelSpec
    if s.equivariant and s.output in ("invariant", "two_pass"):
        valid["flips"] = False  # True: D_N instead of C_N
        if s.family == "resnet":
            valid["architecture"] = "torchvision"  # or "study_code" (the study's layout); see ModelSpec
    return valid


def resolve(name: str, **opts: Any) -> tuple[ModelSpec, dict[str, Any]]:
    """The spec with ``flips`` applied and the full option dict; a misspelt option raises with the valid list."""
    valid = options(name)
    unknown = sorted(set(opts) - set(valid))
    if unknown:
        raise TypeError(f"{name}: unknown option(s) {unknown}; valid options: {sorted(valid)}")
    resolved = {**valid, **opts}
    s = spec(name)
    if resolved.get("flips"):
        s = dataclasses.replace(s, flips=True)
    if "architecture" in resolved:
        if resolved["architecture"] not in ARCHITECTURES[s.family]:
            raise ValueError(f"{name}: unknown architecture {resolved['architecture']!r}; valid: "
                             f"{', '.join(ARCHITECTURES[s.family])}")
        s = dataclasses.replace(s, architecture=resolved["architecture"])
    if "width" in resolved and resolved["width"] not in WIDTH_RULES:
        raise ValueError(f"{name}: unknown width rule {resolved['width']!r}; valid: {', '.join(WIDTH_RULES)}")
    if not 0.0 <= resolved["dropout"] < 1.0:
        raise ValueError(f"{name}: dropout must be in [0, 1), got {resolved['dropout']}")
    s.feature_size(resolved["image_size"])  # raises when the input is too small for the model
    return s, resolved


def _build_resnet(s: ModelSpec, o: dict[str, Any]) -> nn.Module:
    if s.equivariant and s.architecture == "study_code":
        from .g_resnet_study import build_g_resnet_study

        return build_g_resnet_study(s, dropout=o["dropout"], base_width=o["base_width"], init=o["init"],
                                    width=o["width"])
    if s.equivariant:
        from .g_resnet import build_g_resnet

        return build_g_resnet(s, dropout=o["dropout"], base_width=o["base_width"], init=o["init"], width=o["width"])
    from .resnet import build_resnet

    return build_resnet(s, dropout=o["dropout"], base_width=o["base_width"], init=o["init"],
                        **({"head_activation": o["head_activation"]} if "head_activation" in o else {}))


def _build_lenet(s: ModelSpec, o: dict[str, Any]) -> nn.Module:
    if s.equivariant:
        from .g_lenet import build_g_lenet

        return build_g_lenet(s, image_size=o["image_size"], dropout=o["dropout"], init=o["init"])
    from .lenet import build_lenet

    return build_lenet(s, image_size=o["image_size"], dropout=o["dropout"])  # s.architecture: padding, mask


_FAMILY_BUILDERS: dict[str, Callable[[ModelSpec, dict[str, Any]], nn.Module]] = {
    "resnet": _build_resnet,
    "lenet": _build_lenet,
}


def build(name: str, image_size: int | None = None, dropout: float = 0.5, **opts: Any) -> nn.Module:
    """Build model ``name``: ``(B, 3, S, S) -> (B, 3)`` logits (CW, ACW, Other), in training mode.

    Options: ``image_size`` (S, default the spec's ``input_size``; the plain LeNet's FC layer depends on it),
    ``dropout`` (the MC-dropout layer, placed by ``spec.dropout_at``), ``init``, and per family ``base_width``
    (ResNets: stem channels, 64 as torchvision; stages get 1, 2, 4, 8 times it), ``dropout_in_training`` (ResNets;
    ``False``: the dropout layer stays off in training and only MC sampling switches it on, as the study trained its
    ResNets and switched dropout on at test time; LeNets always train with it, as the study's), ``width``
    (G-ResNets: ``"channels"`` or the study's ``"fixparams"``, see :mod:`.fields`), ``flips`` (``g_`` models: D8
    instead of C8), ``head_activation`` (ResNets with an MLP head, ``ce_resnet50``: ``"relu"`` or the study's
    ``"tanh"``) and ``architecture`` (``g_`` ResNets: ``"torchvision"`` or the study's ``"study_code"``, see
    :mod:`.g_resnet_study`; LeNets: ``"classic"`` or ``"study_code"``, see :mod:`.lenet` and :mod:`.g_lenet`). ``model.model_name`` and
    ``model.model_options`` record how it was built (checkpoints store them).
    """
    if image_size is not None:
        opts["image_size"] = image_size
    s, o = resolve(name, dropout=dropout, **opts)
    model = _FAMILY_BUILDERS[s.family](s, o)
    if not o.get("dropout_in_training", True):
        for module in model.modules():
            if isinstance(module, MCDropout):
                module.sample_only = True
    if s.two_pass:
        from .chiral import TwoPass

        model = TwoPass(model)
    model.model_name = name
    model.model_options = {k: v for k, v in o.items() if k != "init"}
    return model.train()


def enable_mc_dropout(model: nn.Module) -> int:
    """Switch on every dropout layer (and only those) for MC-dropout sampling; returns how many.

    Call it after ``model.eval()`` (which switches them off again): batch norm keeps its running statistics and
    escnn keeps its cached filters, while each forward pass draws a new dropout mask. Works on escnn models and
    on exported ones alike.
    """
    n = 0
    for module in model.modules():
        if is_dropout(module):
            module.train(True)
            if isinstance(module, MCDropout):
                module.sampling = True  # also for sample-only dropout (after train(), which clears it)
            n += 1
    return n
