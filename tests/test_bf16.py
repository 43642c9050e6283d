"""The GPU training recipe (bf16 autocast + channels-last, ``gcnn_spin.runtime``) run on the CPU, so it is not first
executed on a cluster: the training step of ``gcnn_spin.train`` learns under it, and the chirality-equivariant
models keep their mirror symmetry within bf16 rounding while a plain ResNet does not.
"""

import functools
import math
from typing import NamedTuple

import pytest
import torch

from gcnn_spin import models as M
from gcnn_spin import runtime
from gcnn_spin import train as T
from gcnn_spin.config import load_experiment
from gcnn_spin.conventions import MIRROR_PERMUTATION

CPU = torch.device("cpu")
SIZE = 33  # 32k + 1: the G-ResNets are exactly equivariant in float arithmetic
SWAP = list(MIRROR_PERMUTATION)
#: bf16 keeps 8 significant bits: each layer rounds its inputs and weights with a relative error of at most
#: u = 2^-9. Through ResNet18's 18 rounding layers (17 convolutions + the last linear) the errors add at worst
#: linearly, so a mirror error up to 18u ~ 3.5 % of the logit scale is rounding; float32 gives ~1e-7.
BF16_MIRROR_TOL = 18 * 2.0**-9


class Batch(NamedTuple):
    images: torch.Tensor
    targets: torch.Tensor


def _model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return runtime.channels_last(M.build(name, image_size=SIZE, base_width=16), CPU, on_cpu=True)


def _images(n: int, seed: int) -> torch.Tensor:
    x = torch.rand(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))
    return runtime.channels_last(x, CPU, on_cpu=True)


@pytest.mark.slow  # ~5-20 s per model on 2 cores
@pytest.mark.parametrize("name", ["resnet18", "g_resnet18_c", "gc_resnet18"])
def test_training_step_runs_under_bf16_autocast_and_channels_last(name, monkeypatch):
    monkeypatch.setattr(T, "autocast", functools.partial(runtime.autocast, on_cpu=True))
    monkeypatch.setattr(T, "channels_last", functools.partial(runtime.channels_last, on_cpu=True))
    cfg = load_experiment("demo")
    model = _model(name)
    assert _images(1, 0).is_contiguous(memory_format=torch.channels_last)
    before = {k: p.detach().clone() for k, p in model.named_parameters()}
    output_dtypes, input_channels_last = [], []
    model.register_forward_hook(lambda module, args, out: output_dtypes.append(out.dtype))
    model.register_forward_pre_hook(
        lambda module, args: input_channels_last.append(args[0].is_contiguous(memory_format=torch.channels_last)))
    targets = torch.softmax(torch.randn(4, 3, generator=torch.Generator().manual_seed(2)), dim=1)
    # plain (N, C, H, W) batches, as the loader yields them: the training step itself converts them
    loader = [Batch(torch.rand(4, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed)), targets)
              for seed in (0, 1)]
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)

    loss, accuracy = T._run_epoch(model, loader, optimiser, CPU, cfg, train=True)

    assert output_dtypes == [torch.bfloat16, torch.bfloat16]  # the forward passes ran under bf16 autocast
    assert input_channels_last == [True, True]  # train.py's channels-last conversion ran
    assert math.isfinite(loss) and 0.0 <= accuracy <= 1.0
    trained = [k for k, p in model.named_parameters() if p.requires_grad]
    unchanged = [k for k in trained if torch.equal(before[k], dict(model.named_parameters())[k].detach())]
    assert not unchanged, f"parameters not updated: {unchanged[:5]}"
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize("name, chiral", [("gc_resnet18", True), ("g_resnet18_c", True), ("resnet18", False)])
def test_mirror_error_under_bf16_stays_within_rounding_for_chiral_models(name, chiral):
    model = _model(name).eval()
    x = _images(8, seed=1)
    with torch.no_grad(), runtime.autocast(CPU, on_cpu=True):
        logits, mirrored = model(x), model(x.flip(-1))
    assert logits.dtype == torch.bfloat16
    logits, mirrored = logits.float(), mirrored.float()
    relative_error = float((mirrored[:, SWAP] - logits).abs().max() / logits.abs().max())
    if chiral:
        assert relative_error <= BF16_MIRROR_TOL
    else:  # the plain model has no mirror symmetry: its error is of the order of its logits
        assert relative_error > 10 * BF16_MIRROR_TOL


def test_gpu_recipe_helpers_leave_cpu_runs_alone_unless_asked():
    x = torch.rand(2, 3, 5, 5)
    assert runtime.channels_last(x, CPU) is x
    assert not torch.is_autocast_enabled("cpu")
    with runtime.autocast(CPU):
        assert not torch.is_autocast_enabled("cpu")
    with runtime.autocast(CPU, bf16=False, on_cpu=True):
        assert not torch.is_autocast_enabled("cpu")
    with runtime.autocast(CPU, on_cpu=True):
        assert torch.is_autocast_enabled("cpu")
    assert runtime.channels_last(x, CPU, enabled=False, on_cpu=True) is x
