"""Checkpoints restore escnn models whichever mode they were saved or loaded in (escnn's filter cache)."""

import pytest
import torch

from gcnn_spin import models as M
from gcnn_spin.models.checkpoint import cache_keys


def _trained(name: str, steps: int = 1):
    """A small model whose weights and batch-norm statistics have moved away from the fresh init."""
    size = M.spec(name).exact_size(33)
    torch.manual_seed(0)
    opts = {"base_width": 16} if "base_width" in M.options(name) else {}
    model = M.build(name, image_size=size, **opts)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(steps):
        loss = model(torch.rand(4, 3, size, size)).logsumexp(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model, opt, size


@pytest.fixture(scope="module")
def trained():
    """``_trained`` once per name for the whole module (tests only read them or switch their mode)."""
    cache = {}

    def get(name: str):
        if name not in cache:
            cache[name] = _trained(name)
        return cache[name]

    return get


def _fresh(model):
    return M.build(model.model_name, init=False, **model.model_options)


def _eval_logits(model, x):
    model.eval()
    with torch.no_grad():
        return model(x)


def test_escnn_state_dict_keys_differ_between_modes_which_is_what_we_work_around(trained):
    model, _, _ = trained("gc_resnet18")
    train_keys = set(model.train().state_dict())
    eval_keys = set(model.eval().state_dict())
    assert eval_keys - train_keys and eval_keys - train_keys <= cache_keys(model)
    fresh = _fresh(model).train()
    with pytest.raises(RuntimeError, match="Unexpected key"):
        fresh.load_state_dict(model.state_dict())  # plain torch refuses an eval-mode dict in train mode


@pytest.mark.parametrize("save_mode, load_mode", [("train", "eval"), ("eval", "train"), ("eval", "eval"),
                                                  ("train", "train")])
@pytest.mark.parametrize("name", ["gc_resnet18", "g_lenet"])
def test_checkpoint_restores_across_modes(tmp_path, trained, name, save_mode, load_mode):
    model, opt, size = trained(name)
    x = torch.rand(3, 3, size, size)
    expected = _eval_logits(model, x)
    model.train(save_mode == "train")
    M.save_checkpoint(tmp_path / "checkpoint.pt", model, optimizer=opt.state_dict(), epoch=3)
    restored = _fresh(model).train(load_mode == "train")
    _, payload = M.load_checkpoint(tmp_path / "checkpoint.pt", restored)
    assert restored.training == (load_mode == "train")
    assert payload["epoch"] == 3 and payload["model_name"] == name
    torch.testing.assert_close(_eval_logits(restored, x), expected, atol=1e-5, rtol=1e-5)
    assert not list(tmp_path.glob(".*.tmp"))


def test_an_eval_model_loaded_in_place_gets_fresh_filters(trained):
    """The eval-mode filter cache must follow the loaded weights, not keep the old ones."""
    model, _, size = trained("gc_resnet18")
    x = torch.rand(2, 3, size, size)
    expected = _eval_logits(model, x)
    other = _fresh(model).eval()  # caches filters of its own (untrained) weights
    assert not torch.allclose(_eval_logits(other, x), expected)
    M.load_model_state(other, model.train().state_dict())
    torch.testing.assert_close(_eval_logits(other, x), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["resnet18", "ce_resnet50", "g_resnet18_c"])
def test_load_checkpoint_rebuilds_the_model_from_its_name(tmp_path, trained, name):
    model, opt, size = trained(name)
    x = torch.rand(2, 3, size, size)
    expected = _eval_logits(model, x)
    M.save_checkpoint(tmp_path / "c.pt", model, optimizer=opt.state_dict())
    restored, payload = M.load_checkpoint(tmp_path / "c.pt")
    assert restored.model_name == name and not restored.training
    torch.testing.assert_close(_eval_logits(restored, x), expected, atol=1e-5, rtol=1e-5)
    resumed = torch.optim.AdamW(restored.parameters(), lr=1e-2)
    resumed.load_state_dict(payload["optimizer"])  # the optimiser state fits the rebuilt parameters
    assert set(payload["model_state"]) == set(M.model_state_dict(model))


def test_a_checkpoint_of_another_model_raises_naming_keys(tmp_path, trained):
    model, _, _ = trained("gc_resnet18")
    M.save_checkpoint(tmp_path / "c.pt", model)
    other = M.build("g_resnet18", image_size=33, base_width=16)
    with pytest.raises((KeyError, RuntimeError), match="missing|size mismatch"):
        M.load_checkpoint(tmp_path / "c.pt", other)
    torch.save({"weights": 1}, tmp_path / "not_ours.pt")
    with pytest.raises(ValueError, match="not a gcnn_spin checkpoint"):
        M.load_checkpoint(tmp_path / "not_ours.pt")
