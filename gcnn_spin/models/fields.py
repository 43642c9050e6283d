"""Field-type factories: how many regular fields a layer gets, the RGB input type and the chiral output type.

Width rules (one place, :data:`WIDTH_RULES`): a layer that torchvision gives ``c`` channels gets

- ``"fixparams"`` (the study's, from escnn's ``e2wrn.py`` example): ``int(c * sqrt(|G|) / |G|)`` regular fields.
  A regular-to-regular kernel has ``|G|`` free weights per pair of fields and position, so a layer keeps about the
  plain network's parameters (``(c / sqrt|G|)^2 * |G| = c^2``) at ``sqrt|G|`` times its channels, i.e. about
  ``|G|`` times its FLOPs: C8 ~8x, D8 ~16x. It is the study config's default;
- ``"channels"``: ``max(1, round(c / |G|))`` fields, the plain network's channels and FLOPs whatever the group,
  at about 1/|G| of its parameters (C8 ResNet18: 1.24 M against 11.2 M). Cheap: the demo and the tests use it,
  and it is the build default, so checkpoints written before the rule existed rebuild at their width.

The ``gc_`` (D8, one pass) against ``_c`` (C8, two passes) comparison is fair under ``"fixparams"``: both keep
the plain ResNet's parameter count, and one D8 pass costs what two C8 passes cost (2 x 8x = 16x). Under
``"channels"`` a ``gc_`` model has half the parameters and half the FLOPs per prediction of its ``_c`` twin.
``make bench-models`` prints parameters and FLOPs of every model under both rules.
"""

from __future__ import annotations

import math

from escnn import gspaces
from escnn import nn as enn

from .specs import WIDTH_RULES, Width

#: Order of the chiral output fields; Delta = CW - ACW lives in the D_N irrep (1, 0) (sign of reflections).
CHIRAL_FIELDS = ("other", "spiral", "delta")


def gspace(rotations: int, flips: bool) -> gspaces.GSpace2D:
    """C_N (``rot2dOnR2``) or D_N (``flipRot2dOnR2``) acting on the plane."""
    return gspaces.flipRot2dOnR2(rotations) if flips else gspaces.rot2dOnR2(rotations)


def n_fields(channels: int, group_order: int, width: Width = "channels") -> int:
    """Regular fields standing in for ``channels`` plain channels under width rule ``width`` (see above)."""
    if width == "fixparams":
        return max(1, int(channels * math.sqrt(group_order) / group_order))
    if width == "channels":
        return max(1, round(channels / group_order))
    raise ValueError(f"unknown width rule {width!r}; valid: {', '.join(WIDTH_RULES)}")


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
