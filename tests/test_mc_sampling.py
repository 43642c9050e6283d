"""MC-dropout sampling: head-only passes draw the same samples as whole passes (gcnn_spin.models.mc)."""

import pytest
import torch

from gcnn_spin import models as M
from gcnn_spin.models.mc import sample_logits, splits_at_head

SMALL = {"base_width": 16}
CASES = [("lenet", {}), ("g_lenet", {}), ("resnet18", {}), ("ce_resnet50", {}), ("g_resnet18", {}),
         ("g_resnet18", {"architecture": "study_code"}), ("g_resnet50_c", {"architecture": "study_code"}),
         ("gc_resnet18", {})]


def _build(name, options):
    size = M.spec(name).exact_size(33)
    torch.manual_seed(0)
    model = M.build(name, image_size=size, **(SMALL if "base_width" in M.options(name) else {}), **options)
    return model, size


def _samples(model, x, n_passes, head_only, seed=7):
    torch.manual_seed(seed)
    return sample_logits(model, x, n_passes, head_only)


@pytest.mark.parametrize("name, options", CASES)
@pytest.mark.parametrize("exported", [False, True])
def test_head_only_passes_give_the_samples_of_whole_passes(name, options, exported):
    """Same random stream -> the same dropout masks in the same order -> the same logits, escnn and exported."""
    model, size = _build(name, options)
    model = M.export(model) if exported else model.eval()
    assert splits_at_head(model)
    M.enable_mc_dropout(model)
    x = torch.rand(3, 3, size, size)
    whole, head_only = _samples(model, x, 5, False), _samples(model, x, 5, True)
    assert head_only.shape == whole.shape == (15, 3)
    assert torch.allclose(head_only, whole, atol=1e-5, rtol=1e-5)
    assert head_only.reshape(3, 5, 3).std(dim=1).max() > 1e-4  # dropout is on: the passes differ
    assert not torch.allclose(_samples(model, x, 5, True, seed=8), head_only)  # another stream, other samples


def test_head_only_samples_match_whole_passes_in_law():
    """Many passes with independent streams: mean and spread per image agree within sampling error."""
    model, size = _build("g_resnet18", {"architecture": "study_code"})
    model.eval()
    M.enable_mc_dropout(model)
    x = torch.rand(2, 3, size, size)
    n = 400
    torch.manual_seed(1)
    whole = torch.softmax(sample_logits(model, x, n, head_only=False), -1).reshape(2, n, 3)
    torch.manual_seed(2)
    head = torch.softmax(sample_logits(model, x, n, head_only=True), -1).reshape(2, n, 3)
    stderr = whole.std(dim=1) / n ** 0.5
    assert ((whole.mean(1) - head.mean(1)).abs() < 5 * stderr * 2 ** 0.5 + 1e-6).all()
    assert torch.allclose(whole.std(1), head.std(1), rtol=0.25, atol=1e-4)


class DropoutInTrunk(torch.nn.Module):
    """A dropout layer before the head: head-only sampling would reuse one mask, so it must not be used."""

    def __init__(self):
        super().__init__()
        self.trunk = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Dropout(0.5))
        self.head = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(3), torch.nn.Dropout(0.5))

    def forward_features(self, x):
        return self.trunk(x)

    def forward_head(self, f):
        return self.head(f)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


def test_models_with_dropout_outside_the_head_are_sampled_whole():
    model = DropoutInTrunk()
    x = torch.rand(2, 3, 6, 6)
    model(x)
    M.enable_mc_dropout(model.eval())
    assert not splits_at_head(model)
    assert torch.equal(_samples(model, x, 4, True), _samples(model, x, 4, False))
    assert not splits_at_head(torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Dropout()))  # no split offered


def test_rotation_benchmark_runs_both_ways_side_by_side(capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "bench_rotation.py"
    spec = importlib.util.spec_from_file_location("bench_rotation", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = bench.bench(["lenet"], n_images=2, image_size=33, rounds=1, batch_images=2, options={})
    assert rows.loc[0, "speedup"] > 0 and rows.loc[0, "max_eta_difference"] < 1e-6
    assert "lenet" in capsys.readouterr().out
