"""Symmetry of every registered model, swept over the registry (eval mode, float64, exact image sizes).

- G models: logits invariant under 90 deg rotations of the input;
- two-pass, CE and gc_ models: a mirror swaps the CW and ACW logits (about both axes for G-based ones, about the
  predict's own mirror axis for ce_resnet50);
- flips=True g_ models: every logit mirror-invariant, CW and ACW learnt apart (not tied);
- plain models and C8 g_ models show a difference where they have no such symmetry (so the checks can fail).

Sizes come from ``spec.exact_size``: every strided layer then samples a grid centred on the image, so the
symmetry is exact up to float rounding (escnn samples its bases in float32: ~1e-7 here).
"""

import pytest
import torch

from gcnn_spin import models as M
from gcnn_spin.conventions import MIRROR_PERMUTATION

TOL = 1e-4
SWAP = list(MIRROR_PERMUTATION)  # (CW, ACW, Other) -> (ACW, CW, Other)


def _build(name: str, size: int, **opts):
    torch.manual_seed(0)
    if "base_width" in M.options(name):
        opts.setdefault("base_width", 16)
    return M.build(name, image_size=size, **opts).eval().double()


@pytest.fixture(scope="module")
def case():
    """``(model, x, logits)`` per name, built once: float64, eval, 2 random images at an exact size."""
    cache = {}

    def get(name: str):
        if name not in cache:
            size = M.spec(name).exact_size(33)
            model = _build(name, size)
            x = torch.rand(2, 3, size, size, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
            with torch.no_grad():
                cache[name] = model, x, model(x)
        return cache[name]

    return get


def _logits(model, x):
    with torch.no_grad():
        return model(x)


def _max_diff(a, b) -> float:
    return float((a - b).abs().max())


@pytest.mark.parametrize("name", M.names())
def test_rotating_by_90_degrees(name, case):
    model, x, y = case(name)
    assert float(y.abs().max()) > 1e-2  # logits of a size that makes the comparisons meaningful
    errors = [_max_diff(_logits(model, torch.rot90(x, k, dims=(2, 3))), y) for k in (1, 2, 3)]
    if M.spec(name).equivariant:
        assert max(errors) < TOL, errors
    else:
        assert max(errors) > 1e-3, errors  # a plain CNN sees the rotation


@pytest.mark.parametrize("name", M.names())
def test_mirroring_swaps_cw_and_acw_exactly_where_the_model_is_chiral(name, case):
    model, x, y = case(name)
    s = M.spec(name)
    horizontal = _max_diff(_logits(model, x.flip(-1)), y[:, SWAP])  # the two-pass predict's own mirror
    vertical = _max_diff(_logits(model, x.flip(-2)), y[:, SWAP])
    if s.output in ("two_pass", "chiral"):
        assert _max_diff(y[:, 0], y[:, 1]) > 1e-3  # CW != ACW, so the swap is a real check
        assert horizontal < TOL
        if s.equivariant:  # the other mirror = this one after a 180 deg rotation, exact for G backbones
            assert vertical < TOL
        else:  # ce_resnet50's plain backbone only knows the axis it was told
            assert vertical > 1e-3
    elif s.flips:  # D8 with an invariant output: a mirror changes no logit (the reflection study)
        assert _max_diff(y[:, 0], y[:, 1]) > 1e-3  # CW and ACW are free, so "no swap" is a real check
        assert _max_diff(_logits(model, x.flip(-1)), y) < TOL
        assert _max_diff(_logits(model, x.flip(-2)), y) < TOL
    else:  # plain and C8 models have no reason to swap
        assert min(horizontal, vertical) > 1e-3


@pytest.mark.parametrize("name", [n for n in M.names() if "flips" in M.options(n) and not M.spec(n).two_pass])
def test_flips_make_an_invariant_model_that_cannot_separate_cw_from_acw(name):
    """The study's flips model: a free last layer (CW != ACW in general) on mirror-invariant features, so a
    spiral and its mirror image get the same logits and the model cannot call them CW and ACW respectively."""
    size = M.spec(name).exact_size(33)
    model = _build(name, size, flips=True)
    x = torch.rand(2, 3, size, size, dtype=torch.float64)
    y = _logits(model, x)
    assert _max_diff(y[:, 0], y[:, 1]) > 1e-3  # CW and ACW logits are not forced equal
    assert _max_diff(y[:, 0], y[:, 2]) > 1e-3
    for mirrored in (x.flip(-1), x.flip(-2), torch.rot90(x, 1, dims=(2, 3))):
        assert _max_diff(_logits(model, mirrored), y) < TOL


@pytest.mark.parametrize("name", ["gc_resnet18", "g_resnet18"])
def test_at_160_pixels_the_stride_grid_breaks_exactness_and_161_restores_it(name):
    """Documents what S=160 does: the first stride-2 layer samples off-centre, so symmetry is approximate."""
    model = _build(name, 161, base_width=8)
    results = {}
    for size in (160, 161):
        x = torch.rand(1, 3, size, size, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
        y = _logits(model, x)
        if M.spec(name).output == "chiral":
            results[size] = _max_diff(_logits(model, x.flip(-1)), y[:, SWAP])
        else:
            results[size] = _max_diff(_logits(model, torch.rot90(x, 1, dims=(2, 3))), y)
    assert results[161] < TOL and results[160] > 10 * results[161], results


@pytest.mark.parametrize("name", [n for n in M.names() if M.spec(n).equivariant and not M.spec(n).two_pass])
def test_each_mc_dropout_sample_keeps_the_symmetry(name, case):
    """With the same dropout mask, a G model stays invariant (and a gc_ model chiral): dropout acts on whole
    invariant features or whole fields."""
    model, x, y = case(name)

    def sample(images):
        torch.manual_seed(123)
        return _logits(model, images)

    try:
        assert M.enable_mc_dropout(model) == 1
        base = sample(x)
        assert _max_diff(base, y) > 1e-3  # dropout is really on
        assert _max_diff(sample(torch.rot90(x, 1, dims=(2, 3))), base) < TOL
        if M.spec(name).output == "chiral":
            assert _max_diff(sample(x.flip(-1)), base[:, SWAP]) < TOL
            assert _max_diff(sample(x.flip(-2)), base[:, SWAP]) < TOL
    finally:
        model.eval()
