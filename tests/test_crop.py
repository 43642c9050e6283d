"""One crop rule (gcnn_spin.crop): every registry model at the study's 161 px and the demo's 65 px stores, and a
LeNet run fed the crop it trained at by prediction, evaluation and the rotation study."""

import pytest
import torch

from gcnn_spin import models as M
from gcnn_spin.config import load_experiment
from gcnn_spin.crop import MAX_SHRINK, crop_for

#: The crop each family gets from a store built for S: ResNets are exact at 32k + 1, LeNets at multiples of 4.
EXPECTED = {"resnet": {161: 161, 65: 65}, "lenet": {161: 160, 65: 64}}


@pytest.mark.parametrize("name", M.names())
@pytest.mark.parametrize("store_size", [161, 65])
def test_every_model_gets_its_largest_exact_crop(name, store_size):
    spec = M.spec(name)
    crop = crop_for(name, store_size)
    assert crop == EXPECTED[spec.family][store_size]
    assert spec.is_exact_size(crop) and store_size - MAX_SHRINK <= crop <= store_size
    assert not any(spec.is_exact_size(s) for s in range(crop + 1, store_size + 1))
    assert crop_for(spec, {"image_size": store_size}) == crop  # a spec and a store's attributes alike


@pytest.mark.parametrize("name", M.names())
def test_the_default_crop_is_the_specs_input_size(name):
    spec = M.spec(name)
    assert spec.input_size == crop_for(name, 161)
    assert M.options(name)["image_size"] == spec.input_size


def test_a_built_model_keeps_the_crop_it_was_made_for():
    model = M.build("lenet", image_size=160)
    assert crop_for(model, 161) == 160 and crop_for(model, 162) == 160
    with pytest.raises(ValueError, match="lenet was trained on 160 px crops; a store built for 165 px serves 161..165"):
        crop_for(model, 165)
    assert crop_for(torch.nn.Linear(2, 2), 65) == 65  # a module that records nothing sees the store's size


def test_the_configs_name_the_image_size_once():
    for name, size in (("experiment", 161), ("demo", 65)):
        cfg = load_experiment(name)
        assert cfg.data.image_size == size and not hasattr(cfg.train, "image_size")


@pytest.mark.slow
def test_a_lenet_run_is_fed_its_training_crop_everywhere(tiny_dataset, tmp_path):
    from gcnn_spin.analysis.rotation import rotation_table
    from gcnn_spin.data.store import open_store
    from gcnn_spin.evaluate import equivariance_errors
    from gcnn_spin.predict import load_exported, predict_probabilities
    from gcnn_spin.train import RunSpec, train

    _, data_dir, overrides = tiny_dataset
    spec = RunSpec(model="lenet", seed=0, data_dir=str(data_dir),
                   experiment=load_experiment("demo", [*overrides, "train.epochs=1"]))
    run = train(spec, tmp_path / "lenet" / "seed0", progress=False)
    test_store = open_store(data_dir / "stores" / "test.zarr")
    assert test_store.image_size == 33
    module = load_exported(run)
    trained = module.model_options["image_size"]
    assert trained == crop_for("lenet", test_store) == 32

    sides = []
    module.register_forward_pre_hook(lambda _, args: sides.append(args[0].shape[-1]))
    predict_probabilities(module, test_store, range(0, 8), batch_size=4, progress=False)
    equivariance_errors(module, data_dir / "stores" / "test.zarr", torch.device("cpu"), n_images=4)
    rotation_table(module, test_store, torch.arange(3).numpy(), n_passes=2, progress=False)
    assert sides and set(sides) == {trained}
