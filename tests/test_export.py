"""Export to plain PyTorch: same logits, no escnn objects, loadable (pickled or traced) without escnn."""

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from gcnn_spin import models as M
from gcnn_spin.models.export import to_program
from gcnn_spin.models.lenet import LeNet
from gcnn_spin.models.resnet import ResNet


def _small(name: str):
    size = M.spec(name).exact_size(33)
    torch.manual_seed(0)
    opts = {"base_width": 16} if "base_width" in M.options(name) else {}
    return M.build(name, image_size=size, **opts), size


def _escnn_objects(module: nn.Module) -> list[str]:
    return [f"{n}: {type(m).__module__}.{type(m).__name__}" for n, m in module.named_modules(remove_duplicate=False)
            if type(m).__module__.split(".")[0] == "escnn"]


@pytest.mark.parametrize("name", M.names())
def test_export_gives_the_same_logits_with_plain_pytorch(name):
    model, size = _small(name)
    x = torch.rand(3, 3, size, size)
    # Move batch-norm statistics off their defaults so the exported layers must carry them over.
    with torch.no_grad():
        model(x)
    exported = M.export(model)
    assert model.training, "export must leave the model in the mode it was in"
    assert not exported.training and _escnn_objects(exported) == []
    assert all(type(t) is torch.Tensor or isinstance(t, nn.Parameter)
               for t in list(exported.parameters()) + list(exported.buffers()))
    model.eval()
    with torch.no_grad():
        expected, got = model(x), exported(x)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    assert exported.model_name == name
    inner = exported.backbone if M.spec(name).two_pass else exported
    assert isinstance(inner, ResNet if M.spec(name).family == "resnet" else LeNet)
    if M.spec(name).equivariant:
        assert _escnn_objects(model), "the source model should be an escnn model"


def test_exported_modules_load_and_run_without_escnn(tmp_path):
    cases = {}
    for name in ("g_lenet", "g_resnet18_c", "gc_resnet18"):
        model, size = _small(name)
        exported = M.export(model)
        x = torch.rand(2, 3, size, size)
        with torch.no_grad():
            y = exported(x)
        M.save_exported(exported, tmp_path / f"{name}.pt")
        torch.save({"x": x, "y": y}, tmp_path / f"{name}.io.pt")
        cases[name] = str(tmp_path / name)
    assert not list(tmp_path.glob(".*.tmp"))
    script = textwrap.dedent("""
        import json, sys, torch
        from gcnn_spin.models import load_exported
        errors = {}
        for name, stem in json.loads(sys.argv[1]).items():
            model = load_exported(stem + ".pt")
            io = torch.load(stem + ".io.pt")
            with torch.no_grad():
                errors[name] = float((model(io["x"]) - io["y"]).abs().max())
        print(json.dumps({"errors": errors, "escnn_loaded": "escnn" in sys.modules}))
    """)
    out = subprocess.run([sys.executable, "-c", script, json.dumps(cases)], capture_output=True, text=True,
                         timeout=120, check=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["escnn_loaded"] is False
    assert all(err < 1e-6 for err in report["errors"].values()), report


def test_torch_export_program_matches_for_any_batch_size(tmp_path):
    model, size = _small("g_resnet18_c")
    exported = M.export(model)
    to_program(exported, size, tmp_path / "program.pt2")
    assert not list(tmp_path.glob(".*.tmp"))
    loaded = torch.export.load(tmp_path / "program.pt2").module()
    for batch in (1, 5):
        x = torch.rand(batch, 3, size, size)
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), exported(x), atol=1e-5, rtol=1e-5)


def test_exported_model_keeps_its_mc_dropout_layer():
    model, size = _small("gc_resnet18")
    exported = M.export(model)
    assert M.enable_mc_dropout(exported) == M.enable_mc_dropout(model.eval()) == 1
    x = torch.rand(2, 3, size, size)
    with torch.no_grad():
        assert not torch.allclose(exported(x), exported(x))
