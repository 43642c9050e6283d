"""The embedded default end to end (tiny): synthetic survey -> pipeline -> submitit training -> inference -> report."""

import pandas as pd
import pytest

from gcnn_spin.demo import build_parser, run_demo, side_by_side

from conftest import TINY_OVERRIDES


@pytest.mark.slow
def test_demo_runs_end_to_end_and_a_rerun_reuses_everything(tmp_path):
    overrides = list(TINY_OVERRIDES) + ["grid.models=['resnet18', 'gc_resnet18']", "grid.seeds=[0]",
                                        "train.epochs=1", "grid.no_rotation_models=['resnet18']"]
    report = run_demo(tmp_path / "demo", n_gz1=300, n_survey=100, workers=2, config="demo", overrides=overrides,
                      swise_bias=0.15, rotation_images=4)
    text = report.read_text()
    for heading in ("Classification metrics", "CVS recovery", "Rotation overlap", "Attribution maps", "Survey",
                    "Validation against the synthetic truth",
                    "Spin catalogue and the CVS on the sky"):
        assert heading in text, heading
    catalogue = report.parent / "catalogue"
    assert (catalogue / "spin_catalogue.fits").exists() and (catalogue / "spin_catalogue.parquet").exists()
    regions = pd.read_parquet(catalogue / "spin_catalogue.parquet", columns=["region"])["region"]
    assert set(regions) == {"north", "south"}  # the demo's sky straddles Dec 32.375 deg north of the plane
    sky_truth = pd.read_csv(report.parent / "tables" / "sky_truth.csv")
    assert {"region north", "region south", "galactic north", "galactic south"} <= set(sky_truth["galaxies"])
    assert sky_truth["galaxies"].str.startswith("pixel").any()
    validation = pd.read_csv(report.parent / "tables" / "validation.csv")
    assert validation["source"].str.contains("gc_resnet18").any()
    gc_error = validation.loc[validation["source"].str.contains("gc_resnet18"), "equivariance_error"].iloc[0]
    assert gc_error < 1e-5
    mirror = pd.read_csv(report.parent / "tables" / "attribution_mirror_error.csv").set_index("model")
    assert mirror.loc["gc_resnet18", "mirror_error"] < 1e-5 < mirror.loc["resnet18", "mirror_error"]
    timings = pd.read_csv(tmp_path / "demo" / "timings.csv").set_index("step")
    steps = ["synthetic survey", "data pipeline", "training grid", "survey inference + rotation study",
             "survey inference (one thread)", "rotation study (one thread)", "collect", "whole demo"]
    assert list(timings.index) == steps
    assert (timings[["wall_s", "cpu_s"]] >= 0).all().all()
    top_level = [s for s in steps if "one thread" not in s and s != "whole demo"]
    assert timings.loc["whole demo", "wall_s"] >= timings.loc[top_level, "wall_s"].sum() - 0.5
    t7 = pd.read_csv(report.parent / "tables" / "table7_metrics_nr.csv")  # the _nr run beside the rotated ones
    assert t7["model"].tolist() == ["resnet18_nr"]
    assert set(pd.read_csv(report.parent / "tables" / "survey_per_seed.csv")["model"]) == {
        "resnet18", "resnet18_nr", "gc_resnet18"}
    for name in ("resnet18", "resnet18_nr"):  # inference and the rotation study keep the two runs apart
        assert len(list((tmp_path / "demo" / "predictions" / name / "seed0").glob("part-*.parquet.done"))) > 0
        assert (report.parent / "studies" / "rotation" / name / "seed0.parquet.done").exists()
    runs = tmp_path / "demo" / "runs"
    mtimes = {p: p.stat().st_mtime_ns for p in runs.rglob("checkpoint.pt")}
    assert len(mtimes) == 3
    run_demo(tmp_path / "demo", n_gz1=300, n_survey=100, workers=2, config="demo", overrides=overrides,
             swise_bias=0.15, rotation_images=4)
    assert {p: p.stat().st_mtime_ns for p in runs.rglob("checkpoint.pt")} == mtimes  # nothing retrained


def test_side_by_side_names_the_job_that_failed():
    with pytest.raises(RuntimeError, match="fails") as error:
        side_by_side({"ok": (int, "0"), "fails": (int, "3")})
    assert "'ok'" not in str(error.value)


def test_demo_help():
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["--help"])
    assert exit_info.value.code == 0
