"""The study's G-ResNet as its code built it (``architecture="study_code"``): parameters, symmetry, export.

The parameter counts below are those of the study's own modules, ``G_ResNet18(num_classes=3)`` /
``G_ResNet50(...)`` of ``Code/custom_models/G_ResNet.py`` (neil-power/mphys-galaxy, commit ed2a01c), counted as
``sum(p.numel() for p in model.parameters())`` with the defaults the study trained with (N=8, fixparams=True,
dropout_rate=0); ``f=True`` for the D8 reflection model, ``num_classes=2`` for the two-pass ``_c`` models.
For orientation, at C8 the linear layer alone is 1448 * 3 + 3 (int(512 * sqrt 8) = 1448 trivial fields).
"""

import dataclasses

import pytest
import torch

from gcnn_spin import models as M
from gcnn_spin.conventions import MIRROR_PERMUTATION
from gcnn_spin.models.g_resnet_study import GPreActBlock

STUDY_PARAMETERS = {
    ("g_resnet18", False): 10_168_133,
    ("g_resnet50", False): 12_792_619,
    ("g_resnet18", True): 10_212_899,  # D8 (the reflection study's model)
    ("g_resnet18_c", False): 10_166_684,
    ("g_resnet50_c", False): 12_791_170,
}
SWAP = list(MIRROR_PERMUTATION)


def n_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name, flips", [("g_resnet18", False), ("g_resnet50", False),
                                         pytest.param("g_resnet18", True, marks=pytest.mark.slow),
                                         pytest.param("g_resnet50_c", False, marks=pytest.mark.slow)])
def test_parameter_count_is_the_studys(name, flips):
    model = M.build(name, width="fixparams", architecture="study_code", flips=flips, init=False)
    assert n_parameters(model) == STUDY_PARAMETERS[(name, flips)]
    assert model.head.fc.in_features == (2048 if flips else 1448)  # trivial last stage: int(512 * sqrt|G|)


def _small(name, size=33, **opts):
    torch.manual_seed(0)
    return M.build(name, image_size=size, base_width=16, architecture="study_code", **opts).eval().double()


def test_layout_is_the_studys():
    """No max-pool, pre-activation blocks, Bottleneck without expansion, trivial last stage, dropout on the map."""
    model = _small("g_resnet50")
    assert not hasattr(model, "maxpool")
    blocks = [b for name in model.stage_names for b in getattr(model, name)]
    assert all(isinstance(b, GPreActBlock) for b in blocks) and len(blocks) == 16
    # "channels" widths (the build default): every block keeps its stage's width, 16 ... 128 (no x4 expansion)
    assert {b.body[-1].out_type.size for b in blocks[:-1]} == {16, 32, 64, 128}
    last = blocks[-1].out_type
    assert all(r.is_trivial() for r in last.representations) and last.size == 128
    assert model.head.dropout_at == "map"
    assert model.model_options["architecture"] == "study_code"
    spec = M.spec("g_resnet18")
    assert len(spec.downsampling()) == 5  # torchvision: stem conv + max-pool + 3 stages
    assert len(dataclasses.replace(spec, architecture="study_code").downsampling()) == 4


@pytest.mark.parametrize("name, opts", [("g_resnet18", {}), ("g_resnet50", {}), ("g_resnet18", {"flips": True}),
                                        ("g_resnet18_c", {})])
def test_study_layout_is_exactly_equivariant_where_the_studys_is(name, opts):
    model = _small(name, **opts)
    x = torch.rand(2, 3, 33, 33, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x)
        rot = max(float((model(torch.rot90(x, k, dims=(2, 3))) - y).abs().max()) for k in (1, 2, 3))
        mirrored = model(x.flip(-1))
    assert float(y.abs().max()) > 1e-2
    assert rot < 1e-5
    if opts.get("flips"):
        assert float((mirrored - y).abs().max()) < 1e-5  # every logit mirror-invariant
    elif M.spec(name).two_pass:
        assert float((mirrored - y[:, SWAP]).abs().max()) < 1e-5
    else:
        assert float((mirrored - y[:, SWAP]).abs().max()) > 1e-3  # C8 alone does not know mirrors


def test_study_layout_exports_to_plain_pytorch_with_the_same_logits():
    model = _small("g_resnet18_c").float()
    x = torch.rand(2, 3, 33, 33)
    plain = M.export(model)
    with torch.no_grad():
        assert torch.allclose(plain(x), model(x), atol=1e-5)


def test_unknown_architecture_and_chiral_models_are_refused():
    with pytest.raises(ValueError, match="unknown architecture"):
        M.build("g_resnet18", image_size=33, architecture="timm")
    with pytest.raises(TypeError, match="unknown option"):
        M.build("gc_resnet18", image_size=33, architecture="study_code")  # trivial last stage: no Delta field


def test_lenet_as_the_studys_code_built_it():
    """LeNet.py: padding 1, a soft circular input mask, FC 16·38·38 -> 120 at S = 160. Parameters by hand:
    conv1 3·6·25 + 6, conv2 6·16·25 + 16, fc1 23104·120 + 120, fc2 120·84 + 84, fc3 84·3 + 3 = 2,785,891."""
    model = M.build("lenet", image_size=160, architecture="study_code")
    assert n_parameters(model) == 456 + 2416 + 23104 * 120 + 120 + 120 * 84 + 84 + 84 * 3 + 3 == 2_785_891
    mask = model.features[0].mask[0, 0]
    assert mask[80, 80] == 1 and mask[0, 0] < 1e-30 and torch.equal(mask, mask.flip(0)) and torch.equal(mask, mask.T)
    edge = mask[79, 0]  # r = 79.5 px, just beyond the 99 % radius 78.7 px
    assert 0 < float(edge) < 1
    assert "mask" not in model.state_dict() and not any("mask" in k for k in model.state_dict())
    plain = M.build("lenet", image_size=160)
    assert plain.head.mlp[0].in_features == 16 * 37 * 37  # classic: unpadded
    with torch.no_grad():
        x = torch.rand(2, 3, 160, 160)
        assert torch.allclose(M.export(model)(x), model.eval()(x))


# The study's G_LeNet (Code/custom_models/Steerable_LeNet.py, CNSteerableLeNet(num_classes=3)), counted by hand from
# its source: escnn's default band limit on a 5x5 kernel has rings at radius 0, 1, 2 with maximum frequencies 0, 2, 2,
# so a C8 trivial -> regular field pair has 1 + 5 + 5 = 11 basis filters and a regular -> regular pair 8 + 40 + 40 = 88
# (|G| per bandlimited function on each ring); no convolution bias. conv1 3·6·11, conv2 6·16·88, fc1 (16·38·38)·120
# + 120, fc2 120·84 + 84, fc3 84·3 + 3. Its module also holds an escnn MaskModule it never applies, whose 161 x 161
# mask is a frozen nn.Parameter (25,921 more in ``parameters()``); ours has no mask.
G_LENET_STUDY_PARAMETERS = 198 + 8448 + 23104 * 120 + 120 + 120 * 84 + 84 + 84 * 3 + 3


def _study_g_lenet(size=160, **opts):
    torch.manual_seed(0)
    return M.build("g_lenet", image_size=size, architecture="study_code", **opts)


def _real_image(size=160) -> torch.Tensor:
    from pathlib import Path

    from gcnn_spin.data.images import decode_jpeg, to_store_image

    path = sorted((Path(__file__).parent / "fixtures" / "real_sample" / "jpg").rglob("*.jpg"))[0]
    return torch.from_numpy(to_store_image(decode_jpeg(path), size, margin=False)).float()[None] / 255


def test_g_lenet_as_the_studys_code_built_it():
    """Padding 1, no conv bias, escnn's anti-aliased max-pool, the group-pooled 16·38·38 map flattened at S = 160."""
    from gcnn_spin.models.g_lenet import AntialiasedMaxPool

    model = _study_g_lenet()
    assert n_parameters(model) == G_LENET_STUDY_PARAMETERS == 2_791_665
    convs = [m for m in model.features if type(m).__name__ == "R2Conv"]
    assert [c.padding for c in convs] == [1, 1] and all(c.bias is None for c in convs)
    assert [c.weights.numel() for c in convs] == [3 * 6 * 11, 6 * 16 * 88]
    assert sum(isinstance(m, AntialiasedMaxPool) for m in model.features) == 2
    assert model.head.pool == "flatten" and model.head.group_size == 8 and model.head.dropout_at == "last"
    with torch.no_grad():
        assert model.eval().forward_features(torch.zeros(1, 3, 160, 160)).shape == (1, 16 * 8, 38, 38)
    assert model.model_options["architecture"] == "study_code"
    classic = M.build("g_lenet", image_size=160)
    assert classic.head.pool == "mean" and n_parameters(classic) < 30_000  # ours: spatial mean, invariant


def test_study_g_lenet_exports_to_plain_pytorch_with_the_same_logits():
    """escnn cannot export its anti-aliased max-pool; ours exports it as a plain blur + max-pool."""
    from gcnn_spin.models.lenet import BlurMaxPool2d

    model = _study_g_lenet().eval()
    plain = M.export(model)
    assert sum(isinstance(m, BlurMaxPool2d) for m in plain.modules()) == 2
    x = torch.cat([torch.rand(2, 3, 160, 160, generator=torch.Generator().manual_seed(3)), _real_image()])
    with torch.no_grad():
        y, y_plain = model(x), plain(x)
    assert float(y.abs().max()) > 1e-3
    assert float((y_plain - y).abs().max()) < 1e-5


def test_study_g_lenet_convolutions_are_equivariant_its_logits_are_not_invariant():
    """At an exact size (S % 4 == 2) the conv part commutes with rot90: the group-pooled map rotates with the input
    and each regular field's channels shift by 2 (90 deg = 2 of C8's 8 steps). The flatten then sees positions."""
    size = 66
    spec = dataclasses.replace(M.spec("g_lenet"), architecture="study_code")
    assert spec.is_exact_size(size) and not spec.is_exact_size(160) and spec.is_exact_size(162)
    model = _study_g_lenet(size).eval().double()
    x = torch.rand(2, 3, size, size, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        f = model.forward_features(x)
        for k in (1, 2, 3):
            f_rot = model.forward_features(torch.rot90(x, k, dims=(2, 3)))
            fields = torch.rot90(f, k, dims=(2, 3)).reshape(2, 16, 8, *f.shape[2:])
            expected = fields.roll(2 * k, dims=2).reshape(f.shape)
            assert float((f_rot - expected).abs().max()) < 1e-5
        y, y_rot = model(x), model(torch.rot90(x, 1, dims=(2, 3)))
    assert float(f.abs().max()) > 1e-2
    assert float((y_rot - y).abs().max()) > 1e-3  # FC 120 weights see positions: not rotation-invariant
