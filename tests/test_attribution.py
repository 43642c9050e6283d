"""Attribution maps: a chirality-equivariant model's map of a mirrored galaxy is the mirror of its map."""

import numpy as np
import pandas as pd
import pytest
import torch

from gcnn_spin import models as M
from gcnn_spin.analysis import attribution


def _exported(name: str, size: int = 33):
    torch.manual_seed(0)
    opts = {"base_width": 16} if "base_width" in M.options(name) else {}
    return M.export(M.build(name, image_size=size, **opts)).double()


def _images(n=2, size=33):
    return torch.rand(n, 3, size, size, dtype=torch.float64, generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("name", ["gc_resnet18", "g_resnet18_c"])
def test_map_of_the_mirror_is_the_mirror_of_the_map_for_chiral_models(name):
    pairs = attribution.mirrored_pairs(_exported(name), _images())
    assert pairs["maps"].shape == (2, 33, 33) and np.abs(pairs["maps"]).max() > 0
    assert pairs["mirror_error"].max() < 1e-5
    assert np.allclose(pairs["mirrored"], pairs["images"][:, :, ::-1])


def test_a_model_without_the_symmetry_shows_it():
    assert attribution.mirrored_pairs(_exported("resnet18"), _images())["mirror_error"].max() > 1e-2


def test_maps_add_up_to_the_logit_change_from_the_black_baseline():
    model, x = _exported("resnet18"), _images(1)
    target = torch.tensor([2])
    maps = attribution.attribution_maps(model, x, target, n_steps=128)
    with torch.no_grad():
        change = float(model(x)[0, 2] - model(torch.zeros_like(x))[0, 2])
    assert maps.sum() == pytest.approx(change, rel=0.05, abs=1e-3)


def test_spirals_are_chosen_first():
    rows = pd.DataFrame({"p_cw": [0.1, 0.8, 0.1, 0.0], "p_acw": [0.1, 0.1, 0.1, 0.9], "p_other": [0.8, 0.1, 0.8, 0.1],
                         "ok": [True, True, True, False]})
    chosen = attribution.select_galaxies(rows, 2)
    assert chosen[0] == 1 and len(chosen) == 2  # the one usable spiral first, then an Other
    assert sorted(attribution.select_galaxies(rows, 4)) == [0, 1, 2]  # row 3 is not usable


@pytest.mark.slow
def test_report_section_draws_the_maps_and_tables_the_mirror_error(tiny_dataset, tmp_path):
    from gcnn_spin.run import Run
    from gcnn_spin.analysis.sections.attribution import attribution_section
    from gcnn_spin.analysis.sections.common import Output

    _, data_dir, _ = tiny_dataset
    runs = []
    for name in ("resnet18", "gc_resnet18"):
        path = tmp_path / "runs" / name / "seed0"
        path.mkdir(parents=True)
        M.save_exported(_exported(name).float(), path / "model_export.pt")
        runs.append(Run(name, name, 0, path))
    written = attribution_section(Output(tmp_path / "results"), runs, {}, data_dir)
    assert (tmp_path / "results" / "figures" / "attribution_maps.png").stat().st_size > 10_000
    errors = pd.read_csv(tmp_path / "results" / "tables" / "attribution_mirror_error.csv").set_index("model")
    assert errors.loc["gc_resnet18", "mirror_error"] < 1e-5 < 1e-2 < errors.loc["resnet18", "mirror_error"]
    assert not written.figure_errors
