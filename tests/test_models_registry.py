"""Registry, specs, build options and shapes for every registered model (a new name is swept automatically)."""

import dataclasses
import fnmatch

import pytest
import torch

from gcnn_spin import config
from gcnn_spin import models as M
from gcnn_spin.models.registry import resolve

SMALL = {"base_width": 16}  # ResNets only: stem 16 channels, stages 16..128 (C8: 2 fields, D8: 1 field)


def small_options(name: str) -> dict:
    return SMALL if "base_width" in M.options(name) else {}


def small_size(name: str) -> int:
    return M.spec(name).exact_size(33)


@pytest.fixture(scope="module")
def built():
    """Each model built once per module (small), in training mode."""
    cache = {}

    def get(name: str):
        if name not in cache:
            torch.manual_seed(0)
            cache[name] = M.build(name, image_size=small_size(name), **small_options(name))
        return cache[name]

    return get


def test_names_cover_the_study_grid_and_filter_with_wildcards():
    assert set(config.GridConfig().models) <= set(M.names())  # every model of the study's grid is registered
    assert M.names("g_*") == ["g_lenet", "g_resnet18", "g_resnet18_flips", "g_resnet50", "g_resnet18_c",
                              "g_resnet50_c"]
    assert M.names("*_c") == ["g_resnet18_c", "g_resnet50_c"]
    assert M.names(["lenet", "gc_*"]) == ["lenet", "gc_resnet18", "gc_resnet50"]
    assert M.names("nothing*") == []
    assert M.names() == [n for n in M.names() if fnmatch.fnmatch(n, "*")]


def test_unknown_name_and_option_raise_listing_valid_ones():
    with pytest.raises(ValueError, match="valid names: .*gc_resnet18"):
        M.build("resnet34")
    with pytest.raises(ValueError, match="unknown model 'g_resnet'"):
        M.spec("g_resnet")
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['base_widht'\].*base_width"):
        M.build("resnet18", base_widht=8)
    with pytest.raises(TypeError, match="flips"):  # gc_ models are D8 by definition
        M.build("gc_resnet18", flips=False)
    with pytest.raises(TypeError, match="base_width"):
        M.build("lenet", base_width=8)
    with pytest.raises(ValueError, match="too small"):
        M.build("lenet", image_size=12)
    with pytest.raises(ValueError, match="dropout"):
        M.build("lenet", dropout=1.5)


def test_specs_are_frozen_data_describing_each_variant():
    s = M.spec("resnet50")
    assert (s.family, s.block, s.layers, s.widths) == ("resnet", "bottleneck", (3, 4, 6, 3), (64, 128, 256, 512))
    assert (s.output, s.two_pass, s.group, s.group_order) == ("plain", False, "", 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.layers = (1, 1, 1, 1)
    assert M.spec("resnet18").layers == (2, 2, 2, 2) and M.spec("resnet18").block == "basic"
    assert (M.spec("g_resnet18").group, M.spec("g_resnet18").output) == ("C8", "invariant")
    assert M.spec("gc_resnet50").group == "D8" and M.spec("gc_resnet50").output == "chiral"
    assert M.spec("gc_resnet50").group_order == 16 and not M.spec("gc_resnet50").two_pass
    assert M.spec("ce_resnet50").two_pass and M.spec("ce_resnet50").head_hidden == (512, 512, 64, 64)
    assert M.spec("g_resnet50_c").two_pass and M.spec("g_resnet50_c").backbone_outputs == 2
    flipped, opts = resolve("g_resnet18", flips=True)
    assert flipped.group == "D8" and opts["flips"] and M.spec("g_resnet18").group == "C8"


def test_exact_sizes_follow_the_strided_layers():
    resnet, lenet = M.spec("g_resnet18"), M.spec("g_lenet")
    assert [s for s in range(20, 200) if resnet.is_exact_size(s)] == [33, 65, 97, 129, 161, 193]
    assert not resnet.is_exact_size(160) and resnet.exact_size(160) == 161
    assert lenet.is_exact_size(160) and lenet.is_exact_size(32) and not lenet.is_exact_size(33)
    assert resnet.feature_size(160) == 5 and lenet.feature_size(160) == 37


@pytest.mark.parametrize("name", M.names())
def test_every_model_maps_images_to_three_logits_and_trains(name, built):
    model = built(name)
    size = small_size(name)
    assert model.training and model.model_name == name
    assert model.model_options["image_size"] == size and model.model_options["dropout"] == 0.5
    x = torch.rand(2, 3, size, size)
    logits = model(x)
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()
    logits.sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    model.zero_grad(set_to_none=True)


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_plain_resnets_have_torchvision_parameter_tensors(name):
    import torchvision

    ours = M.build(name).state_dict()
    theirs = getattr(torchvision.models, name)(weights=None, num_classes=3).state_dict()
    theirs = {("head." + k if k.startswith("fc.") else k): v.shape for k, v in theirs.items()}
    assert {k: v.shape for k, v in ours.items()} == theirs


@pytest.mark.parametrize("g_name, plain_name", [("g_resnet18", "resnet18"), ("gc_resnet18", "resnet18"),
                                                ("g_resnet50_c", "resnet50")])
def test_g_resnets_mirror_the_plain_resnet_block_for_block(g_name, plain_name, built):
    """Channel parity: the exported G-ResNet's backbone tensors have the plain ResNet's shapes."""
    plain = M.build(plain_name, **SMALL)
    g_model = built(g_name)
    exported = M.export(g_model)
    backbone = exported.backbone if hasattr(exported, "backbone") else exported
    shapes = {k: v.shape for k, v in backbone.state_dict().items() if not k.startswith("head.")}
    assert shapes == {k: v.shape for k, v in plain.state_dict().items() if not k.startswith("head.")}
    from gcnn_spin.models.g_resnet import G_BLOCKS
    from gcnn_spin.models.resnet import BLOCKS

    assert {k: v.expansion for k, v in G_BLOCKS.items()} == {k: v.expansion for k, v in BLOCKS.items()} == {
        "basic": 1, "bottleneck": 4}


@pytest.mark.parametrize("flips", [False, True])
def test_fast_he_init_reproduces_escnn_generalized_he_variances(flips):
    from escnn import nn as enn
    from escnn.nn.init import _generalized_he_init_variances

    from gcnn_spin.models.fields import gspace
    from gcnn_spin.models.g_layers import he_variances

    space = gspace(8, flips)
    sign = space.fibergroup.irrep(1, 0) if flips else space.fibergroup.irrep(1)
    in_type = enn.FieldType(space, [space.regular_repr, space.trivial_repr, space.regular_repr, sign])
    out_type = enn.FieldType(space, [sign, space.regular_repr, space.trivial_repr, space.regular_repr])
    for kernel in (1, 3, 7):
        conv = enn.R2Conv(in_type, out_type, kernel, frequencies_cutoff=lambda r: 3 * r, initialize=False)
        expected = _generalized_he_init_variances(conv.basisexpansion)
        assert torch.equal(he_variances(conv.basisexpansion), expected)


def test_models_do_not_share_escnn_basis_tensors():
    """escnn caches sampled bases process-wide; a dtype change of one model must not reach another."""
    a = M.build("g_resnet18", image_size=33, **SMALL).double()
    b = M.build("g_resnet18", image_size=33, **SMALL)
    assert a.eval()(torch.rand(1, 3, 33, 33, dtype=torch.float64)).dtype == torch.float64
    assert b.eval()(torch.rand(1, 3, 33, 33)).dtype == torch.float32
    ids_a = {id(t) for t in a.buffers()}
    assert not ids_a & {id(t) for t in b.buffers()}


@pytest.mark.parametrize("name", ["lenet", "g_resnet18", "gc_resnet18", "ce_resnet50"])
def test_mc_dropout_samples_while_batch_norm_stays_frozen(name, built):
    model = built(name).eval()
    size = small_size(name)
    x = torch.rand(4, 3, size, size)
    running = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
        assert M.enable_mc_dropout(model) >= 1
        a, b = model(x), model(x)
    assert not torch.allclose(a, b)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in running.items())
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
    model.train()


def test_dropout_option_sets_the_mc_dropout_rate():
    model = M.build("lenet", image_size=32, dropout=0.0).eval()
    M.enable_mc_dropout(model)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
    assert model.head.dropout.p == 0.0


def test_width_rules_count_regular_fields_as_the_study_and_as_the_plain_channels():
    from gcnn_spin.models.fields import n_fields

    # fixparams (escnn's e2wrn rule, the study's): int(c * sqrt|G| / |G|)
    assert [n_fields(c, 8, "fixparams") for c in (64, 128, 256, 512)] == [22, 45, 90, 181]
    assert [n_fields(c, 16, "fixparams") for c in (64, 128, 256, 512)] == [16, 32, 64, 128]
    assert [n_fields(c, 8, "channels") for c in (64, 128, 256, 512)] == [8, 16, 32, 64]
    with pytest.raises(ValueError, match="fixparams"):
        n_fields(64, 8, "params")
    with pytest.raises(ValueError, match="valid: fixparams, channels"):
        M.build("g_resnet18", width="wide")
    assert "width" in M.options("gc_resnet50") and "width" not in M.options("resnet18")
    assert "width" not in M.options("g_lenet")  # the G-LeNet's widths count fields already (study's LeNet)


def test_fixparams_keeps_the_plain_parameter_count_and_makes_gc_and_c_models_match():
    """At the study's width every G-ResNet18 has about ResNet18's parameters, and the one-pass D8 gc_ model
    the parameters of its two-pass C8 twin; at "channels" width the C8 model has about 1/8 of them."""
    def n_params(name, **opts):
        return sum(p.numel() for p in M.build(name, init=False, image_size=33, **opts).parameters())

    plain = n_params("resnet18")
    wide = {name: n_params(name, width="fixparams") for name in ("g_resnet18", "g_resnet18_c", "gc_resnet18")}
    assert all(0.8 < n / plain < 1.0 for n in wide.values()), (plain, wide)
    assert abs(wide["gc_resnet18"] / wide["g_resnet18_c"] - 1) < 0.02
    assert 6 < plain / n_params("g_resnet18", width="channels") < 10


def test_wide_g_resnet_records_its_width_and_exports_at_the_study_channel_counts():
    model = M.build("g_resnet18", image_size=33, width="fixparams", base_width=16, init=False)
    assert model.model_options["width"] == "fixparams"
    exported = M.export(model)
    # 16 torchvision channels -> int(16 * sqrt(8) / 8) = 5 fields of 8 channels; stage 4 (128) -> 45 fields
    assert exported.conv1.out_channels == 40 and exported.layer4[-1].conv2.out_channels == 360


@pytest.mark.parametrize("name, at", [("lenet", "last"), ("g_lenet", "last"), ("resnet18", "last"),
                                      ("g_resnet18", "last"), ("ce_resnet50", "head")])
def test_dropout_sits_where_the_study_put_it(name, at, built):
    """The study's code: LeNets FC 84 -> Dropout -> FC 3, G-ResNets group pooling -> Dropout -> Linear, the CE
    ResNet50 Dropout on the pooled features before its MLP head."""
    assert M.spec(name).dropout_at == at
    head = built(name).head if not M.spec(name).two_pass else built(name).backbone.head
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o, tag=tag: seen.append(tag))
             for tag, m in (("dropout", head.dropout), ("fc", head.fc), *(("mlp", l) for l in head.mlp[:1]))]
    size = small_size(name)
    with torch.no_grad():
        built(name)(torch.rand(1, 3, size, size))
    for hook in hooks:
        hook.remove()
    first_dropout = seen.index("dropout")
    if at == "head":
        assert seen[first_dropout + 1] == "mlp"
    else:
        assert seen[first_dropout + 1] == "fc"


@pytest.mark.parametrize("name", ["resnet18", "ce_resnet50", "g_resnet18", "gc_resnet18"])
def test_sample_only_dropout_is_off_in_training_and_on_for_mc_sampling(name):
    """dropout_in_training=False (the study's ResNets): training passes are deterministic, MC sampling still
    draws masks, eval() switches sampling off again, and the exported model keeps the behaviour."""
    size = small_size(name)
    x = torch.rand(4, 3, size, size)
    torch.manual_seed(0)
    model = M.build(name, image_size=size, dropout_in_training=False, **small_options(name))
    assert model.model_options["dropout_in_training"] is False
    with torch.no_grad():
        assert torch.equal(model(x), model(x))  # training mode, batch statistics, no dropout
        model.eval()
        assert M.enable_mc_dropout(model) == 1
        assert not torch.allclose(model(x), model(x))
        model.eval()
        assert torch.equal(model(x), model(x))
        exported = M.export(model)
        M.enable_mc_dropout(exported)
        assert not torch.allclose(exported(x), exported(x))
        trained_with = M.build(name, image_size=size, **small_options(name))  # the default keeps it in training
        assert not torch.allclose(trained_with(x), trained_with(x))
    assert "dropout_in_training" not in M.options("lenet")  # the study's LeNets train with their dropout
