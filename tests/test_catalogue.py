"""The spin catalogue: FITS + parquet from a real (tiny) survey store and prediction parts written here."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from astropy.table import Table

from gcnn_spin.analysis import catalogue
from gcnn_spin.analysis.survey import galactic_latitude
from gcnn_spin.analysis.collect import Settings, collect
from gcnn_spin.cluster.infer import store_parts
from gcnn_spin.data.store import open_store
from gcnn_spin.io import write_marker
from gcnn_spin.layout import part_path, store_path

from test_collect import write_run

REPO = Path(__file__).resolve().parents[1]
MODELS = {"resnet18": (0, 1), "gc_resnet18": (0,)}


def write_predictions(pred, store, model, seed, drop=None):
    """Parts of ``model``/``seed`` over every usable image of ``store``; ``drop``: (part, row) left out."""
    rng = np.random.default_rng([seed, len(model)])
    opened = open_store(store)
    rows = opened.rows
    frames = []
    for part in store_parts(opened):
        chunk = rows.iloc[part.rows.start:part.rows.stop]
        chunk = chunk[chunk["ok"]]
        if drop is not None and drop[0] == part.task_id:
            chunk = chunk.drop(chunk.index[drop[1]])
        probs = rng.dirichlet([0.5, 0.5, 1.5], size=len(chunk))
        table = pd.DataFrame({"dr8_id": chunk["dr8_id"].astype(str).to_numpy(), "ra": chunk["ra"].to_numpy(),
                              "dec": chunk["dec"].to_numpy(), "p_cw": probs[:, 0], "p_acw": probs[:, 1],
                              "p_other": probs[:, 2]})
        path = part_path(pred, model, seed, part.task_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        table.to_parquet(path, index=False)
        write_marker(path, {"part": part.task_id})
        frames.append(table)
    return pd.concat(frames, ignore_index=True)


@pytest.fixture
def survey(tmp_path, tiny_dataset):
    raw, data, _ = tiny_dataset
    runs, pred = tmp_path / "runs", tmp_path / "predictions"
    written = {}
    for model, seeds in MODELS.items():
        for seed in seeds:
            write_run(runs, model, seed)
            written[(model, seed)] = write_predictions(pred, store_path(data, "survey"), model, seed)
    return runs, pred, data, raw, written


def run(tmp_path, survey, **kwargs):
    runs, pred, data, raw, _ = survey
    return collect(Settings(runs=runs, out=tmp_path / "results", predictions=pred, data=data, progress=False,
                            draws=2, figures=False, truth=raw / "truth.parquet", **kwargs))


def test_the_fits_catalogue_reads_back_with_units_descriptions_and_provenance(tmp_path, survey):
    outcome = run(tmp_path, survey)
    assert outcome.exit_code == 0
    folder = tmp_path / "results" / "catalogue"
    fits = Table.read(folder / "spin_catalogue.fits")
    parquet = pd.read_parquet(folder / "spin_catalogue.parquet")
    _, _, data, _, written = survey
    survey_rows = pd.read_parquet(store_path(data, "survey").with_suffix(".parquet"))
    labelled = sum(len(pd.read_parquet(store_path(data, s).with_suffix(".parquet"))) for s in ("train", "val", "test"))
    assert len(fits) == len(parquet) == len(survey_rows) + labelled
    expected = catalogue.base_columns(1) + [c for m in MODELS for c in catalogue.model_columns(m)]
    assert fits.colnames == list(parquet.columns) == [c.name for c in expected]
    for col in expected:  # every column has its unit and one-line description in the FITS file
        assert fits[col.name].description == col.description and col.description
        assert (str(fits[col.name].unit) if fits[col.name].unit else "") == col.unit
    assert str(fits["ra"].unit) == "deg" and str(fits["dec"].unit) == "deg"
    assert fits.meta["PACKAGE"].startswith("gcnn_spin ") and fits.meta["NRUNS"] == "3"
    assert fits.meta["STORHASH"] == open_store(store_path(data, "survey")).identity[:68]
    assert sorted(fits.meta[f"RUN{i:04d}"].split(" config_hash")[0] for i in (1, 2, 3)) == \
        ["gc_resnet18 seed0", "resnet18 seed0", "resnet18 seed1"]
    assert {"SCIHASH", "DATE", "GITCOMM"} <= set(fits.meta)
    # the same content in both files, in store order, survey first
    ids = np.char.decode(np.asarray(fits["dr8_id"]), "ascii")
    assert list(ids) == list(parquet["dr8_id"])
    assert list(ids[:len(survey_rows)]) == list(survey_rows["dr8_id"].astype(str))
    assert set(parquet["split"].iloc[len(survey_rows):]) <= {"train", "val", "test"}
    np.testing.assert_allclose(np.asarray(fits["resnet18__p_acw_std"]), parquet["resnet18__p_acw_std"], equal_nan=True)
    # the per-galaxy mean and std over seeds are those of the parts
    a, b = written[("resnet18", 0)].set_index("dr8_id"), written[("resnet18", 1)].set_index("dr8_id")
    row = parquet.set_index("dr8_id").loc[a.index]
    np.testing.assert_allclose(row["resnet18__p_cw_mean"], (a["p_cw"] + b["p_cw"]) / 2, rtol=1e-6)
    np.testing.assert_allclose(row["resnet18__p_acw_std"], np.abs(a["p_acw"] - b["p_acw"]) / np.sqrt(2), rtol=1e-5)
    assert (row["resnet18__n_seeds"] == 2).all() and (row["gc_resnet18__n_seeds"] == 1).all()
    assert row["gc_resnet18__p_cw_std"].isna().all()  # one seed: no spread
    mean = row[[f"resnet18__{p}_mean" for p in ("p_cw", "p_acw", "p_other")]].to_numpy()
    cls = np.where(mean[:, 0] >= 0.5, 0, np.where(mean[:, 1] >= 0.5, 1, 2))
    assert (row["resnet18__class"].to_numpy() == cls).all()
    train = parquet[parquet["split"] == "train"]
    assert train["gz1_p_cw"].notna().all() and (train["resnet18__n_seeds"] == 0).all()
    b = galactic_latitude(parquet["ra"].to_numpy(), parquet["dec"].to_numpy())
    north = (parquet["dec"] > 32.375) & (b > 0)
    assert (parquet["region"] == np.where(north, "north", "south")).all()
    report = (tmp_path / "results" / "report.md").read_text()
    assert "catalogue/spin_catalogue.fits" in report and "CVS by imaging region" in report


def test_every_column_is_documented():
    doc = (REPO / "docs" / "catalogue.md").read_text()
    documented = set(re.findall(r"^\| `([^`]+)` \|", doc, flags=re.M))
    names = [c.name for c in catalogue.base_columns(1) + catalogue.model_columns("{model}")]
    assert names and set(names) <= documented, set(names) - documented


def test_a_galaxy_missing_from_a_member_refuses_the_catalogue_unless_partial(tmp_path, survey):
    runs, pred, data, _, _ = survey
    missing = write_predictions(pred, store_path(data, "survey"), "resnet18", 1, drop=(0, 0))
    outcome = run(tmp_path, survey)
    assert outcome.exit_code == 3 and any("catalogue: resnet18 seed1" in i.describe() for i in outcome.issues)
    folder = tmp_path / "results" / "catalogue"
    assert not list(folder.glob("*")) if folder.exists() else True  # nothing written, no temporary left
    assert "Catalogue not written: resnet18 seed1 did not predict 1 galaxies of part 0" in outcome.report.read_text()
    run(tmp_path, survey, allow_partial=True)
    parquet = pd.read_parquet(folder / "spin_catalogue.parquet").set_index("dr8_id")
    lost = sorted(set(parquet.index[parquet["split"] == "survey"]) - set(missing["dr8_id"]))
    ok = parquet.loc[lost, "image_ok"] == 1
    assert ok.sum() == 1 and (parquet.loc[np.array(lost)[ok.to_numpy()], "resnet18__n_seeds"] == 1).all()
    assert sorted(p.name for p in folder.iterdir()) == ["spin_catalogue.fits", "spin_catalogue.parquet"]
    outcome = run(tmp_path, survey)  # strict again: the partial catalogue must not stay behind to be cited
    assert not list(folder.iterdir()) and "earlier catalogue (spin_catalogue.fits" in outcome.report.read_text()


def test_the_injected_sky_reads_as_injected_for_a_chiral_model_and_not_for_a_biased_one(tmp_path, tiny_dataset):
    """Predictions made from the synthetic truth: a mirror-symmetric model (misses 10 % of the spirals of both
    hands) holds the true CVS in its bootstrap intervals, per group and per pixel; a model that calls half of
    the CW spirals ACW (the vote bias, inherited) does not."""
    from gcnn_spin.analysis.validation import truth_classes
    from gcnn_spin.conventions import ACW, CW, OTHER

    raw, data, _ = tiny_dataset
    truth = pd.read_parquet(raw / "truth.parquet")
    true = pd.Series(truth_classes(truth), index=truth["dr8_id"].astype(str))
    true = true[true.index != ""]  # galaxies without a DESI counterpart
    runs, pred = tmp_path / "runs", tmp_path / "predictions"
    store = open_store(store_path(data, "survey"))
    rng = np.random.default_rng(5)
    for model, flip in (("gc_resnet18", 0.0), ("resnet18", 0.5)):
        write_run(runs, model, 0)
        for part in store_parts(store):
            rows = store.rows.iloc[part.rows.start:part.rows.stop]
            rows = rows[rows["ok"]]
            cls = true.reindex(rows["dr8_id"].astype(str)).to_numpy()
            cls = np.where((cls != OTHER) & (rng.random(len(cls)) < 0.1), OTHER, cls)
            cls = np.where((cls == CW) & (rng.random(len(cls)) < flip), ACW, cls)
            probs = np.full((len(cls), 3), 0.1)
            probs[np.arange(len(cls)), cls] = 0.8
            path = part_path(pred, model, 0, part.task_id)
            path.parent.mkdir(parents=True, exist_ok=True)
            pd.DataFrame({"dr8_id": rows["dr8_id"].astype(str).to_numpy(), "ra": rows["ra"], "dec": rows["dec"],
                          "p_cw": probs[:, 0], "p_acw": probs[:, 1], "p_other": probs[:, 2]}).to_parquet(path)
            write_marker(path, {"part": part.task_id})
    outcome = collect(Settings(runs=runs, out=tmp_path / "results", predictions=pred, data=data, progress=False,
                               draws=2, figures=False, truth=raw / "truth.parquet"))
    assert outcome.exit_code == 0
    checks = pd.read_csv(tmp_path / "results" / "tables" / "sky_truth.csv")
    checks = checks[checks["cvs_true"].notna()]
    chiral, biased = checks[checks["model"] == "gc_resnet18"], checks[checks["model"] == "resnet18"]
    assert len(chiral) >= 3 and chiral["galaxies"].str.startswith("pixel").any()
    assert chiral["inside"].all(), chiral
    every = biased.set_index("galaxies").loc["all"]
    assert not every["inside"] and every["cvs_low"] > every["cvs_true"]  # biased towards ACW, beyond the noise
    summary = pd.read_csv(tmp_path / "results" / "tables" / "catalogue_summary.csv")
    assert set(summary["galaxies"]) == {"all", "region north", "region south", "galactic north", "galactic south"}
    row = summary.set_index(["model", "galaxies"]).loc[("gc_resnet18", "all")]
    assert row["cvs_low"] <= row["cvs"] <= row["cvs_high"]


def test_the_maps_show_the_exact_chiral_model_beside_a_plain_one():
    from gcnn_spin.analysis.sections.catalogue import pick_maps

    assert pick_maps(["resnet18", "g_resnet18", "g_resnet18_c", "gc_resnet18"]) == ["gc_resnet18", "resnet18"]
    assert pick_maps(["g_resnet18", "ce_resnet50"]) == ["ce_resnet50"]
    assert pick_maps(["g_resnet18", "g_resnet50"]) == ["g_resnet18", "g_resnet50"]
