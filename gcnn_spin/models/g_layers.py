"""escnn layer settings in one helper, and a fast exact version of escnn's generalized He init.

``escnn.nn.init.generalized_he_init`` (what ``R2Conv(initialize=True)`` runs) walks every basis element of a layer
in Python: 15 s for one 3x3 C8 layer of 256 x 256 fields, 15 s for a whole ``g_resnet50`` at the default width and
minutes at wider ones. The variance it gives a weight only depends on the (input repr, output repr) block and the
element's irreps, and on how many input fields of each type feed the layer, so :func:`he_variances` computes it
once per block type and tiles it: the same numbers (tested against escnn's), ``g_resnet50`` built in ~2 s.
"""

from __future__ import annotations

import copy
import math
from collections import defaultdict
from collections.abc import Callable

import torch
from escnn import nn as enn
from escnn.nn.modules.basismanager import BlocksBasisExpansion
from escnn.nn.modules.basismanager.basisexpansion_singleblock import SingleBlockBasisExpansion


#: id(block expansion) -> (block, [(in_irrep, out_irrep_idx) per basis element]). escnn re-derives basis
#: attributes (Clebsch-Gordan look-ups on disk) on every ``get_basis_info`` call; its own cache hands the same
#: block to every layer of a kind, so remembering them per block makes a ResNet50 init cost one look-up per kind.
_BLOCK_IRREPS: dict[int, tuple[object, list[tuple]]] = {}


def _block_irreps(block) -> list[tuple]:
    if id(block) not in _BLOCK_IRREPS:
        _BLOCK_IRREPS[id(block)] = (block, [(a["in_irrep"], a["out_irrep_idx"]) for a in block.get_basis_info()])
    return _BLOCK_IRREPS[id(block)][1]


def he_variances(expansion) -> torch.Tensor:
    """Per-weight scale of escnn's generalized He init for a ``BlocksBasisExpansion``. ``(dim,)``."""
    pairs = expansion._representations_pairs  # [(in_repr_name, out_repr_name)], in weight order
    block_attrs = {
        pair: _block_irreps(getattr(expansion, f"block_expansion_{expansion._escape_pair(pair)}"))
        for pair in pairs
    }
    # Per output repr type and output irrep index: distinct input irreps, and basis elements per input irrep
    # (summed over every input field of the layer).
    inputs = defaultdict(set)
    counts = defaultdict(int)
    for (in_name, out_name), attrs in block_attrs.items():
        n_in = expansion._in_count[in_name]
        for in_irrep, out_idx in attrs:
            inputs[out_name, out_idx].add(in_irrep)
            counts[out_name, out_idx, in_irrep] += n_in
    scales = torch.empty(expansion.dimension())
    for pair in pairs:
        out_name = pair[1]
        block = torch.tensor([1.0 / math.sqrt(len(inputs[out_name, out_idx]) * counts[out_name, out_idx, in_irrep])
                              for in_irrep, out_idx in block_attrs[pair]])
        start, stop = expansion._weights_ranges[pair]
        scales[start:stop] = block.repeat((stop - start) // len(block))
    return scales


def he_init_(conv: enn.R2Conv) -> None:
    """In place: ``weights ~ N(0, 1) * scale`` with escnn's generalized He scales."""
    with torch.no_grad():
        scales = he_variances(conv.basisexpansion).to(conv.weights)
        conv.weights.copy_(torch.randn_like(conv.weights) * scales)


def e2wrn_cutoff(radius: float) -> float:
    """escnn's ``e2wrn.py`` band limit: frequencies up to 3 per pixel of ring radius."""
    return 3 * radius


def r2conv(in_type: enn.FieldType, out_type: enn.FieldType, kernel_size: int, *, stride: int = 1,
           padding: int | None = None, bias: bool = False, init: bool = True,
           frequencies_cutoff: Callable[[float], float] | None = e2wrn_cutoff) -> enn.R2Conv:
    """The one place with kernel settings: 'same' padding by default, e2wrn's frequency cutoff (``None``: escnn's
    default band limit, as the study's G-LeNet), fast He init."""
    conv = enn.R2Conv(in_type, out_type, kernel_size, stride=stride,
                      padding=kernel_size // 2 if padding is None else padding, bias=bias,
                      frequencies_cutoff=frequencies_cutoff, initialize=False)
    if init:
        he_init_(conv)
    return conv


def own_bases_(model: torch.nn.Module) -> torch.nn.Module:
    """Give ``model`` private copies of escnn's sampled kernel bases; returns ``model``.

    escnn caches one sampled-basis module per kernel type for the whole process and hands the same instance to
    every layer of every model (``recompute=False``), so ``.double()`` or ``.to(device)`` on one model would
    change the others. Keeping the cache keeps builds fast (``recompute=True`` re-derives every layer's basis);
    copying the few small sampled tensors afterwards restores isolation. Layers of the same model keep
    sharing one copy, as escnn intended.
    """
    copies: dict[int, SingleBlockBasisExpansion] = {}
    # escnn's basis managers compare equal by value, so ``modules()`` (which de-duplicates with a set) would
    # skip equal layers: walk every occurrence instead.
    parents = [m for _, m in model.named_modules(remove_duplicate=False) if isinstance(m, BlocksBasisExpansion)]
    for parent in parents:
        for name, child in list(parent.named_children()):
            if isinstance(child, SingleBlockBasisExpansion):
                if id(child) not in copies:  # the analytical basis is read-only: share it, copy the samples
                    copies[id(child)] = copy.deepcopy(child, {id(child.basis): child.basis})
                setattr(parent, name, copies[id(child)])
    return model
