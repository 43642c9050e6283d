"""One description per model variant, as data. The registry and every builder read these and nothing else.

A :class:`ModelSpec` names the family (``lenet`` or ``resnet``), the block and stage layout, the symmetry group
and how the logits ``(B, 3)`` in (CW, ACW, Other) order are formed (``output``):

- ``plain``: an ordinary CNN, no symmetry built in;
- ``invariant``: a G-CNN whose features are group-pooled, so the logits do not change under the group, read out
  by a free linear layer (CW, ACW and Other learnt separately), as the study's. With reflections in the group
  (``flips``) every logit is mirror-invariant although CW and ACW are not tied: a spiral and its mirror image
  get the same (CW, ACW) pair, so the model spreads spirals over both and calls most of them Other (the
  reflection study, the study's Fig. 8);
- ``two_pass``: the chirality-equivariant predict of Jia, Zhu & Pen: a backbone with 2 outputs (Z, Other) run on
  ``x`` and on its mirror (see :mod:`gcnn_spin.models.chiral`);
- ``chiral``: one D_N pass whose last fields are (Other, Spiral, Delta = CW - ACW), Delta in the sign irrep.

Exactness on the pixel grid: a 90 deg rotation or a mirror maps pixel centres onto pixel centres, and an
equivariant filter commutes with it, but a strided layer only does so when its sampling grid is symmetric about
the image centre, i.e. when ``(n + 2 * padding - kernel) % stride == 0`` for its input side ``n``.
:meth:`ModelSpec.is_exact_size` checks that for every downsampling layer; ResNets need ``S % 32 == 1`` (33, 65,
..., 161), LeNets ``S % 4 == 0`` (32, ..., 160), the study-code LeNets (padding 1) ``S % 4 == 2`` (34, ..., 162).
At ``S = 160`` the ResNets' first stride-2 layer samples a grid shifted by half a pixel, so G-ResNets are
equivariant only up to that shift: for an untrained ``gc_resnet18`` the mirror-swap and rot90 errors are ~0.08 in
the logits at 160 (as large as its CW - ACW differences) and ~4e-7 at 161.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

Output = Literal["plain", "invariant", "two_pass", "chiral"]
#: G-ResNet width rules (regular fields per torchvision channel count), defined in :mod:`.fields`.
Width = Literal["fixparams", "channels"]
WIDTH_RULES: tuple[str, ...] = ("fixparams", "channels")
#: Layouts per family (the ``architecture`` build option; see :attr:`ModelSpec.architecture`), default first.
ARCHITECTURES: dict[str, tuple[str, ...]] = {"resnet": ("torchvision", "study_code"),
                                             "lenet": ("classic", "study_code")}

#: Downsampling layers (kernel, stride, padding) on the main path, in order; shortcuts see the same input with
#: the same symmetry condition (1x1, stride 2, no padding).
_RESNET_STEM = ((7, 2, 3), (3, 2, 1))  # conv1, maxpool
_RESNET_STAGE = (3, 2, 1)  # first 3x3 conv of stages 2.. (torchvision puts the stride there)
_LENET = ((5, 1, 0), (2, 2, 0), (5, 1, 0), (2, 2, 0))
_LENET_STUDY = ((5, 1, 1), (2, 2, 0), (5, 1, 1), (2, 2, 0))  # padding 1, as the study's LeNet.py
#: escnn's anti-aliased max-pool (``PointwiseMaxPoolAntialiased``, kernel 2, sigma 0.6): a dense 2x2 max
#: (stride 1), then a 5x5 Gaussian blur with stride 2 and padding 2; see :mod:`.g_lenet`.
_AA_POOL = ((2, 1, 0), (5, 2, 2))
_G_LENET_STUDY = ((5, 1, 1), *_AA_POOL, (5, 1, 1), *_AA_POOL)  # the study's Steerable_LeNet.py


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What a model name means. ``widths`` are channels per stage at ``stem_width`` (torchvision's counting)."""

    name: str
    family: Literal["lenet", "resnet"]
    block: Literal["basic", "bottleneck", "lenet"]
    layers: tuple[int, ...]
    widths: tuple[int, ...]
    stem_width: int = 64
    rotations: int = 0  # N of C_N / D_N; 0 = not a G-CNN
    flips: bool = False
    output: Output = "plain"
    #: Hidden widths of the MLP between pooling and the last linear layer.
    head_hidden: tuple[int, ...] = ()
    #: Where the (MC-)dropout layer sits, as in the study's code: ``"last"`` before the last linear layer
    #: (LeNets' FC 84 -> Dropout -> FC 3; G-ResNets after group pooling), ``"head"`` before the MLP head
    #: (CE-ResNet50: on the pooled 2048 features). See :class:`~.heads.PooledHead`.
    dropout_at: Literal["last", "head", "map"] = "last"
    #: Layout. G-ResNets: ``"torchvision"`` (torchvision's blocks, max-pooled stem, regular fields to the end) or
    #: ``"study_code"`` (the study's escnn wide-ResNet: no max-pool, pre-activation blocks, Bottleneck without
    #: the x4 expansion, last stage in trivial fields, dropout on the last map; :mod:`.g_resnet_study`). The plain
    #: LeNet: ``"classic"`` (unpadded 5x5 convolutions) or ``"study_code"`` (padding 1 and a soft circular input
    #: mask, as the study's ``LeNet.py``). The G-LeNet: ``"classic"`` (:mod:`.g_lenet`: spatial mean, invariant) or
    #: ``"study_code"`` (the study's ``Steerable_LeNet.py``: padding 1, anti-aliased max-pools, no convolution
    #: bias, the group-pooled map flattened into FC 120).
    architecture: Literal["torchvision", "classic", "study_code"] = "torchvision"
    description: str = ""
    #: Default crop side S (timm's per-model ``input_size``): exact for the family, the crop of 161 px stores.
    input_size: int = 161

    @property
    def two_pass(self) -> bool:
        """Whether ``forward`` runs the backbone on the image and on its mirror."""
        return self.output == "two_pass"

    @property
    def equivariant(self) -> bool:
        return self.rotations > 0

    @property
    def group(self) -> str:
        """``"C8"``, ``"D8"`` or ``""`` for plain models."""
        return "" if not self.equivariant else f"{'D' if self.flips else 'C'}{self.rotations}"

    @property
    def group_order(self) -> int:
        """|G|: channels per regular field (1 for plain models)."""
        return max(1, self.rotations) * (2 if self.flips else 1)

    @property
    def backbone_outputs(self) -> int:
        """Outputs of the network before the chirality readout: 2 (Z, Other) for two-pass models, else 3."""
        return 2 if self.two_pass else 3

    def downsampling(self) -> tuple[tuple[int, int, int], ...]:
        """(kernel, stride, padding) of every layer that changes the spatial size, in order."""
        if self.family == "lenet":
            if self.architecture != "study_code":
                return _LENET
            return _G_LENET_STUDY if self.equivariant else _LENET_STUDY
        stem = _RESNET_STEM[:1] if self.architecture == "study_code" else _RESNET_STEM  # no max-pool there
        return stem + (_RESNET_STAGE,) * (len(self.layers) - 1)

    def feature_size(self, image_size: int) -> int:
        """Side of the last feature map for an ``S x S`` input; raises if the input is too small."""
        n = image_size
        for kernel, stride, padding in self.downsampling():
            n = (n + 2 * padding - kernel) // stride + 1
            if n < 1:
                raise ValueError(f"{self.name}: image_size={image_size} is too small (feature map vanishes)")
        return n

    def is_exact_size(self, image_size: int) -> bool:
        """True when every strided layer's sampling grid is centred, so rot90/mirror equivariance is exact."""
        n = image_size
        for kernel, stride, padding in self.downsampling():
            if (n + 2 * padding - kernel) % stride:
                return False
            n = (n + 2 * padding - kernel) // stride + 1
        return n >= 1

    def exact_size(self, near: int) -> int:
        """The smallest image size ``>= near`` at which :meth:`is_exact_size` holds."""
        size = max(1, near)
        while not self.is_exact_size(size):
            size += 1
        return size


_RESNET_WIDTHS = (64, 128, 256, 512)
_LENET_WIDTHS = (6, 16)  # conv channels; in G-LeNets the same numbers count regular fields
_LENET_HEAD = (120, 84)
_CE_HEAD = (512, 512, 64, 64)  # Jia, Zhu & Pen: 2048 -> 512 -> 512 -> 64 -> 64 -> 2
BASIC, BOTTLENECK = ((2, 2, 2, 2), "basic"), ((3, 4, 6, 3), "bottleneck")


def _resnet(name: str, depth: tuple, *, description: str, **kw) -> ModelSpec:
    layers, block = depth
    return ModelSpec(name, "resnet", block, layers, _RESNET_WIDTHS, description=description, **kw)


def _lenet(name: str, *, description: str, **kw) -> ModelSpec:
    return ModelSpec(name, "lenet", "lenet", (1, 1), _LENET_WIDTHS, stem_width=0, head_hidden=_LENET_HEAD,
                     input_size=160, architecture="classic", description=description, **kw)


SPECS: tuple[ModelSpec, ...] = (
    _lenet("lenet", description="LeNet-5 as the study: two 5x5 convs, max-pools, FC 120-84-3"),
    _lenet("g_lenet", rotations=8, output="invariant",
           description="C8 LeNet: 6 and 16 regular fields, group pooling, spatial mean, FC 120-84-3"),
    _resnet("resnet18", BASIC, description="torchvision ResNet18 layout, untrained, 3 outputs"),
    _resnet("resnet50", BOTTLENECK, description="torchvision ResNet50 layout, untrained, 3 outputs"),
    _resnet("ce_resnet50", BOTTLENECK, output="two_pass", head_hidden=_CE_HEAD, dropout_at="head",
            description="Jia, Zhu & Pen CE-ResNet50: (Z, Other) MLP head, two-pass mirror predict"),
    _resnet("g_resnet18", BASIC, rotations=8, output="invariant",
            description="C8 ResNet18 (flips=True: D8, every logit mirror-invariant)"),
    _resnet("g_resnet18_flips", BASIC, rotations=8, flips=True, output="invariant",
            description="D8 ResNet18 with an invariant output: the reflection study's model that cannot tell CW from ACW"),
    _resnet("g_resnet50", BOTTLENECK, rotations=8, output="invariant",
            description="C8 ResNet50 (flips=True: D8, every logit mirror-invariant)"),
    _resnet("g_resnet18_c", BASIC, rotations=8, output="two_pass",
            description="C8 ResNet18 with (Z, Other) outputs, two-pass mirror predict"),
    _resnet("g_resnet50_c", BOTTLENECK, rotations=8, output="two_pass",
            description="C8 ResNet50 with (Z, Other) outputs, two-pass mirror predict"),
    _resnet("gc_resnet18", BASIC, rotations=8, flips=True, output="chiral",
            description="D8 ResNet18, exact chirality equivariance in one pass (Delta in the sign irrep)"),
    _resnet("gc_resnet50", BOTTLENECK, rotations=8, flips=True, output="chiral",
            description="D8 ResNet50, exact chirality equivariance in one pass (Delta in the sign irrep)"),
)
