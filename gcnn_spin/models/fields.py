"""Field-type factories: how many regular fields a layer gets, the RGB input type and the chiral output type.

Width rule (one place): a layer that torchvision gives ``c`` channels gets ``max(1, round(c / |G|))`` regular
fields, i.e. the same number of channels (``fields * |G|``), activation memory and convolution FLOPs as the plain
network, whatever the group, so C8 and D8 variants cost about the same. Weight sharing leaves about 1/9 (C8) or
1/18 (D8) of the plain ResNet's parameters (ResNet18: 11.2 M; G: 1.24 M; D8: 0.62 M). The ``base_width`` build
option trades compute for parameters (``base_width=192`` gives a C8 ResNet18 about as many parameters as the plain
one, at ~9x the FLOPs); ``bench/bench_models.py`` prints every count.
"""

from __future__ import annotations

from escnn import gspaces
from escnn import nn as enn

#: Order of the chiral output fields; Delta = CW - ACW lives in the D_N irrep (1, 0) (sign of reflections).
CHIRAL_FIELDS = ("other", "spiral", "delta")


def gspace(rotations: int, flips: bool) -> gspaces.GSpace2D:
    """C_N (``rot2dOnR2``) or D_N (``flipRot2dOnR2``) acting on the plane."""
    return gspaces.flipRot2dOnR2(rotations) if flips else gspaces.rot2dOnR2(rotations)


def n_fields(channels: int, group_order: int) -> int:
    """Regular fields standing in for ``channels`` plain channels (the width rule above)."""
    return max(1, round(channels / group_order))


def input_type(space: gspaces.GSpace2D, bands: int = 3) -> enn.FieldType:
    """One trivial field per colour band: a rotated or mirrored image keeps its colours."""
    return enn.FieldType(space, [space.trivial_repr] * bands)


def regular_type(space: gspaces.GSpace2D, fields: int) -> enn.FieldType:
    """``fields`` regular fields (|G| channels each: one per group element)."""
    return enn.FieldType(space, [space.regular_repr] * fields)


def chiral_type(space: gspaces.GSpace2D) -> enn.FieldType:
    """(Other, Spiral) as trivial fields and Delta in the irrep trivial on rotations, -1 on reflections."""
    group = space.fibergroup
    if space.flips_order == 0:
        raise ValueError(f"the chiral output needs reflections in the group, got {group.name}")
    return enn.FieldType(space, [space.trivial_repr, space.trivial_repr, group.irrep(1, 0)])
