"""The whole data pipeline on a tiny survey in the real layouts: catalogue, counts, stores, reruns, bad input, CLI."""

from __future__ import annotations

import io
import os
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from loopback import CUTOUT_PATH, SKYSERVER_DR7_PATH, CutoutFake, Loopback, SkyServerFake, jpeg_bytes
from test_crossmatch import index_frame, offset
from test_gz1 import gz1_frame

from gcnn_spin.config import load_experiment
from gcnn_spin.data import pipeline
from gcnn_spin.data.selection import STAGES

ROOT = Path(__file__).resolve().parents[1]
OVERRIDES = ["data.image_size=16", "data.chunk_images=4", "data.shard_images=8"]
CFG = load_experiment("demo", OVERRIDES).data
N_GZ1 = 40


def make_raw(raw: Path, seed: int = 0, images: bool = True) -> dict:
    """GZ1 CSV, DESI index, jpg tree and SDSS table in the published layouts.

    GZ1 rows 0..35 have a DESI counterpart 1" away (36..39 none); the index also holds 10 survey-only galaxies.
    SDSS: rows 5, 6 have a neighbour within 1"; row 7 has too large an R50 error; row 8 is absent.
    """
    rng = np.random.default_rng(seed)
    raw.mkdir(parents=True, exist_ok=True)
    ra, dec = rng.uniform(120, 240, N_GZ1), rng.uniform(0, 50, N_GZ1)
    gz1 = gz1_frame(N_GZ1, rng, ra=ra, dec=dec)
    gz1.to_csv(raw / "GalaxyZoo1_DR_table2.csv", index=False)
    counterpart = [offset(r, d, 1.0) for r, d in zip(ra[:36], dec[:36])]
    index = index_frame([c[0] for c in counterpart] + list(rng.uniform(0, 100, 10)),
                        [c[1] for c in counterpart] + list(rng.uniform(-20, 0, 10)))
    index.to_parquet(raw / "desi_index.parquet")
    if images:
        for i, dr8_id in enumerate(index["dr8_id"]):
            path = raw / "jpg" / dr8_id.split("_")[0] / f"{dr8_id}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(jpeg_bytes(424, i))
    phot = pd.DataFrame({"objID": gz1["OBJID"], "petroR50_r": 2.5, "petroR50Err_r": 0.2, "petroMagErr_r": 0.05,
                         "n_neighbours_1arcsec": 0})
    phot.loc[[5, 6], "n_neighbours_1arcsec"] = 1
    phot.loc[7, "petroR50Err_r"] = 1.0
    phot.drop(index=8).to_csv(raw / "sdss_photometry.csv", index=False)
    return {"gz1": gz1, "index": index, "phot": phot}


def args(raw: Path, out: Path, *extra: str) -> list[str]:
    base = ["--gz1", str(raw / "GalaxyZoo1_DR_table2.csv"), "--desi-index", str(raw / "desi_index.parquet"),
            "--out", str(out), "--config", "demo", "-q"]
    for text in OVERRIDES:
        base += ["--set", text]
    return base + list(extra)


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    from data_prep_cli import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(autouse=True)
def _cli_module(monkeypatch):
    """Import ``data_prep/build_dataset.py`` (a script, not a package module) as ``data_prep_cli``."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("data_prep_cli", ROOT / "data_prep" / "build_dataset.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setitem(sys.modules, "data_prep_cli", module)


@pytest.fixture
def fake_store(monkeypatch):
    """Replace the store builder by a recorder that checks every image loads (fast; no zarr)."""
    import gcnn_spin.data.store as store

    calls = []

    def build_store(path, rows, source, *, margin, cfg, workers=1, on_bad="raise", oversample=1, progress=True):
        bad = []
        for dr8_id in rows["dr8_id"]:
            try:
                source.load(dr8_id)
            except Exception as err:
                if on_bad == "raise":
                    raise
                bad.append({"row": len(bad), "dr8_id": dr8_id, "path": getattr(err, "path", ""), "reason": str(err)})
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(bad, columns=["row", "dr8_id", "path", "reason"]).to_csv(
            Path(path).with_suffix(".bad.csv"), index=False)
        calls.append({"split": Path(path).stem, "rows": rows.copy(), "margin": margin, "oversample": oversample})
        return {"n_images": len(rows), "n_bad": len(bad)}

    monkeypatch.setattr(store, "build_store", build_store)
    return calls


def test_end_to_end_with_real_stores(tmp_path):
    raw = make_raw(tmp_path / "raw")
    out = tmp_path / "data"
    code, stdout, stderr = run_cli(args(tmp_path / "raw", out, "--images", str(tmp_path / "raw"),
                                        "--sdss-photometry", str(tmp_path / "raw" / "sdss_photometry.csv")))
    assert code == 0, stderr
    assert "%|" not in stderr  # -q: no progress bar, the store builder's included
    assert "| Galaxy Zoo 1 | 40 |" in stdout
    cat = pd.read_parquet(out / "catalogue.parquet")
    assert len(cat) == N_GZ1 and list(cat.columns[:16]) == [
        "objid", "ra", "dec", "p_cw", "p_acw", "p_other", "n_vote", "label", "dr8_id", "match_sep_arcsec",
        "n_neighbours_1arcsec", "petroR50_r", "petroR50Err_r", "petroMagErr_r", "split", "reason"]
    by_row = cat.set_index("objid").loc[raw["gz1"]["OBJID"]]
    assert (by_row["reason"].iloc[36:] == "no_desi_match").all()
    assert list(by_row["reason"].iloc[5:9]) == ["neighbour_1arcsec", "neighbour_1arcsec", "quality_cut",
                                                 "no_sdss_photometry"]
    np.testing.assert_allclose(by_row["match_sep_arcsec"].iloc[:36], 1.0, atol=0.1)  # GZ1 prints 0.15" RA steps
    counts = pd.read_csv(out / "counts.csv", index_col=0)
    assert list(counts.index) == list(STAGES)
    assert list(counts["total"][:4]) == [40, 36, 33, 32]
    counts_md = (out / "counts.md").read_text()
    assert counts_md.startswith("| dataset | total | ACW | CW | Other | CVS | study total | ours / study |")
    assert "| matched to DESI | 36 |" in counts_md and "| 647,837 | 5.56e-05 |" in counts_md  # 36 / 647,837
    assert counts_md.splitlines()[-1].startswith("| val |") and counts_md.endswith("| – | – |\n")
    for stage in ("gz1", "crossmatch", "sdss"):
        assert (out / f"{stage}.counts.csv").exists() and (out / f"{stage}.counts.md").exists()
    from gcnn_spin.data.store import open_store

    for split in ("train", "val", "test", "survey"):
        store = open_store(out / "stores" / f"{split}.zarr")
        rows = pd.read_parquet(out / "stores" / f"{split}.parquet")
        expected = (cat["split"] == split).sum() if split != "survey" else 46 - cat["split"].isin(
            ["train", "val", "test"]).sum()
        assert len(store) == len(rows) == expected
    survey = pd.read_parquet(out / "stores" / "survey.parquet")
    used = set(cat.loc[cat["split"].isin(["train", "val", "test"]), "dr8_id"])
    assert used.isdisjoint(survey["dr8_id"]) and survey["label"].isna().all()
    assert set(cat.loc[cat["reason"].isin(["quality_cut", "downsampled"]), "dr8_id"]) <= set(survey["dr8_id"])
    # another split seed: the catalogue changes, and the now stale train store is rebuilt from it
    first_train = sorted(cat.loc[cat["split"] == "train", "dr8_id"])
    code, _, stderr = run_cli(args(tmp_path / "raw", out, "--images", str(tmp_path / "raw"), "--sdss-photometry",
                                   str(tmp_path / "raw" / "sdss_photometry.csv"), "--stores", "train",
                                   "--set", "data.split_seed=99"))
    assert code == 0, stderr
    cat = pd.read_parquet(out / "catalogue.parquet")
    rows = pd.read_parquet(out / "stores" / "train.parquet")
    assert sorted(rows["dr8_id"]) == sorted(cat.loc[cat["split"] == "train", "dr8_id"]) != first_train
    assert len(open_store(out / "stores" / "train.zarr")) == len(rows)


def test_rerun_reuses_every_stage(tmp_path, fake_store):
    make_raw(tmp_path / "raw")
    out = tmp_path / "data"
    inputs = pipeline.Inputs(gz1=tmp_path / "raw" / "GalaxyZoo1_DR_table2.csv",
                             desi_index=tmp_path / "raw" / "desi_index.parquet", images=tmp_path / "raw",
                             sdss_photometry=tmp_path / "raw" / "sdss_photometry.csv")
    first = pipeline.build_dataset(out, inputs, CFG, progress=False)
    assert not any(first["reused"].values())
    assert [c["split"] for c in fake_store] == ["train", "val", "test", "survey"]
    assert [c["margin"] for c in fake_store] == [True, True, True, False]
    assert [c["oversample"] for c in fake_store] == [CFG.train_oversample, 1, 1, 1]  # only train is oversampled
    train_rows = fake_store[0]["rows"]
    assert {"dr8_id", "ra", "dec", "p_cw", "p_acw", "p_other", "label"} <= set(train_rows.columns)
    assert list(train_rows["dr8_id"]) == sorted(train_rows["dr8_id"])
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.parquet")}
    plan = pipeline.plan(out, inputs, CFG)
    assert (plan.loc[plan["stage"] != "store", "status"] == "done").all()
    second = pipeline.build_dataset(out, inputs, CFG, progress=False)
    assert all(second["reused"].values())
    assert stamps == {p.name: p.stat().st_mtime_ns for p in out.glob("*.parquet")}
    assert not list(out.rglob("*.tmp"))
    # a changed input reruns its stage and everything after it, not what came before
    os.utime(inputs.sdss_photometry, ns=(1, 1))
    third = pipeline.build_dataset(out, inputs, CFG, progress=False)
    assert third["reused"] == {"gz1": True, "crossmatch": True, "sdss": False, "catalogue": False, "survey": False}
    # a label edited in the catalogue after the build: named as changed, and the stage and those after it redone
    catalogue = pd.read_parquet(out / "catalogue.parquet")
    edited = catalogue.copy()
    edited.loc[edited.index[0], "p_cw"] = 1.0 - edited.loc[edited.index[0], "p_cw"]
    edited.to_parquet(out / "catalogue.parquet", index=False)
    plan = pipeline.plan(out, inputs, CFG).set_index("stage")["status"]
    assert plan["catalogue"].startswith("to run (damaged: catalogue.parquet changed after it was written (SHA-256 ")
    fake_store.clear()
    fourth = pipeline.build_dataset(out, inputs, CFG, progress=False)
    assert fourth["reused"]["catalogue"] is False
    pd.testing.assert_frame_equal(pd.read_parquet(out / "catalogue.parquet"), catalogue)
    assert [c["split"] for c in fake_store] == ["train", "val", "test", "survey"]  # every store asked again


def test_crash_before_marker_reruns_cleanly(tmp_path, fake_store, monkeypatch):
    make_raw(tmp_path / "raw")
    out = tmp_path / "data"
    argv = args(tmp_path / "raw", out, "--images", str(tmp_path / "raw"), "--sdss-photometry",
                str(tmp_path / "raw" / "sdss_photometry.csv"), "--stores", "")
    from gcnn_spin.data import selection

    real = selection.select
    monkeypatch.setattr(selection, "select", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        run_cli(argv)
    assert (out / "sdss.parquet.done").exists() and not (out / "catalogue.parquet").exists()
    monkeypatch.setattr(selection, "select", real)
    assert run_cli(argv)[0] == 0
    assert (out / "catalogue.parquet.done").exists() and not list(out.rglob("*.tmp"))


def test_bad_gz1_rows_via_cli(tmp_path, fake_store):
    raw = make_raw(tmp_path / "raw")
    gz1 = raw["gz1"].copy()
    gz1.loc[2, "DEC"] = "+95:00:00.0"
    gz1.loc[3, "P_EL"] = 0.9
    gz1.loc[4, "OBJID"] = gz1.loc[0, "OBJID"]
    gz1.to_csv(tmp_path / "raw" / "GalaxyZoo1_DR_table2.csv", index=False)
    extra = ["--images", str(tmp_path / "raw"), "--sdss-photometry", str(tmp_path / "raw" / "sdss_photometry.csv")]
    code, _, stderr = run_cli(args(tmp_path / "raw", tmp_path / "data", *extra))
    assert code == 2
    for row in (0, 2, 3, 4):
        assert str(gz1.loc[row, "OBJID"]) in stderr
    assert "DEC missing, unparsable or outside" in stderr and "duplicate OBJID" in stderr
    code, _, _ = run_cli(args(tmp_path / "raw", tmp_path / "data", *extra, "--on-bad", "skip"))
    assert code == 0
    skipped = pd.read_csv(tmp_path / "data" / "gz1.skipped.csv")
    assert sorted(skipped["line"]) == [2, 4, 5, 6]
    assert len(pd.read_parquet(tmp_path / "data" / "catalogue.parquet")) == N_GZ1 - 4


@pytest.mark.parametrize("content, says", [("", "empty file"), (None, "no GZ1 rows")])
def test_empty_gz1_is_one_line_error_and_no_stage_runs(tmp_path, fake_store, content, says):
    """An empty GZ1 file and a header without rows: exit 2, one line naming the file, nothing built."""
    make_raw(tmp_path / "raw")
    gz1_path = tmp_path / "raw" / "GalaxyZoo1_DR_table2.csv"
    gz1_path.write_text(gz1_path.read_text().splitlines()[0] + "\n" if content is None else content)
    extra = ["--images", str(tmp_path / "raw"), "--sdss-photometry", str(tmp_path / "raw" / "sdss_photometry.csv")]
    code, stdout, stderr = run_cli(args(tmp_path / "raw", tmp_path / "data", *extra))
    assert code == 2 and stdout == ""
    assert stderr.count("\n") == 1 and str(gz1_path) in stderr and says in stderr and "Traceback" not in stderr
    assert not (tmp_path / "data" / "gz1.parquet").exists() and not (tmp_path / "data" / "counts.md").exists()


def test_bad_index_rows_via_cli(tmp_path, fake_store):
    raw = make_raw(tmp_path / "raw")
    index = raw["index"].copy()
    index.loc[40, "dec"] = np.nan
    index.loc[41, "dr8_id"] = index.loc[42, "dr8_id"]
    index.to_parquet(tmp_path / "raw" / "desi_index.parquet")
    extra = ["--images", str(tmp_path / "raw"), "--sdss-photometry", str(tmp_path / "raw" / "sdss_photometry.csv")]
    code, _, stderr = run_cli(args(tmp_path / "raw", tmp_path / "data", *extra))
    assert code == 2 and index.loc[40, "dr8_id"] in stderr and "duplicate dr8_id: 2 row(s)" in stderr
    assert run_cli(args(tmp_path / "raw", tmp_path / "data", *extra, "--on-bad", "skip"))[0] == 0
    assert sorted(pd.read_csv(tmp_path / "data" / "desi_index.skipped.csv")["row"]) == [40, 41, 42]


def test_missing_and_corrupt_jpegs(tmp_path, fake_store):
    make_raw(tmp_path / "raw")
    out = tmp_path / "data"
    extra = ["--images", str(tmp_path / "raw"), "--sdss-photometry", str(tmp_path / "raw" / "sdss_photometry.csv")]
    assert run_cli(args(tmp_path / "raw", out, *extra, "--stores", ""))[0] == 0
    cat = pd.read_parquet(out / "catalogue.parquet")
    train = sorted(cat.loc[cat["split"] == "train", "dr8_id"])
    missing, corrupt = train[0], train[1]
    (tmp_path / "raw" / "jpg" / missing.split("_")[0] / f"{missing}.jpg").unlink()
    (tmp_path / "raw" / "jpg" / corrupt.split("_")[0] / f"{corrupt}.jpg").write_bytes(b"\xff\xd8 broken")
    code, _, stderr = run_cli(args(tmp_path / "raw", out, *extra, "--stores", "train"))
    assert code == 2 and missing in stderr and "file not found" in stderr and f"{missing}.jpg" in stderr
    code, _, _ = run_cli(args(tmp_path / "raw", out, *extra, "--stores", "train", "--on-bad", "skip"))
    assert code == 0
    bad = pd.read_csv(out / "stores" / "train.bad.csv")
    assert sorted(bad["dr8_id"]) == [missing, corrupt]
    assert "unreadable JPEG" in bad.set_index("dr8_id").loc[corrupt, "reason"]
    cat = pd.read_parquet(out / "catalogue.parquet").set_index("dr8_id")
    assert list(cat.loc[[missing, corrupt], "reason"]) == ["bad_image"] * 2
    assert list(cat.loc[[missing, corrupt], "split"]) == ["train"] * 2


def test_online_sdss_and_cutout_service(tmp_path, fake_store):
    raw = make_raw(tmp_path / "raw", images=False)
    gz1 = pd.read_csv(tmp_path / "raw" / "GalaxyZoo1_DR_table2.csv", dtype={"OBJID": np.int64})
    from gcnn_spin.data.gz1 import parse_sexagesimal

    sdss_objects = pd.DataFrame({"objid": gz1["OBJID"], "ra": parse_sexagesimal(gz1["RA"], True)[0],
                                 "dec": parse_sexagesimal(gz1["DEC"], False)[0], "mode": 1,
                                 "petroR50_r": 2.5, "petroR50Err_r": 0.2, "petroMag_r": 17.0, "petroMagErr_r": 0.05})
    sdss_objects.loc[7, "petroR50Err_r"] = 1.0
    fake_cutouts = CutoutFake()
    first = raw["index"].iloc[0]
    fake_cutouts.script[(round(first.ra, 4), round(first.dec, 4))] = [500]
    with Loopback() as server:
        server.route(SKYSERVER_DR7_PATH, SkyServerFake(sdss_objects))
        server.route(CUTOUT_PATH, fake_cutouts)
        inputs = pipeline.Inputs(gz1=tmp_path / "raw" / "GalaxyZoo1_DR_table2.csv",
                                 desi_index=tmp_path / "raw" / "desi_index.parquet", cutout_service=True,
                                 cutout_url=server.url + CUTOUT_PATH, cutout_rate=0)
        client = pipeline.sdss.SkyServer(server.url, max_requests_per_s=0, backoff_s=0)
        summary = pipeline.build_dataset(tmp_path / "data", inputs, CFG, sdss_client=client, progress=False)
        n_sdss, n_cutouts = server.hits(SKYSERVER_DR7_PATH), server.hits(CUTOUT_PATH)
        assert n_sdss == 2  # 36 matched galaxies, at most 25 per request
        assert n_cutouts == 46 + 1  # every index galaxy once, plus one retry after the 500
        pipeline.build_dataset(tmp_path / "data", inputs, CFG, sdss_client=client, progress=False)
        assert (server.hits(SKYSERVER_DR7_PATH), server.hits(CUTOUT_PATH)) == (n_sdss, n_cutouts)
    # 36 matched, row 7 fails the R50 error cut
    assert {r["dataset"]: r["total"] for r in summary["counts"]}["quality cuts"] == 35
    assert len(list((tmp_path / "data" / "cache" / "sdss").glob("*.csv"))) == 2
    assert len(list((tmp_path / "data" / "cache" / "cutouts").rglob("*.jpg"))) == 46
    assert sum(len(c["rows"]) for c in fake_store[:4]) == 46


def test_cli_help_and_dry_run(tmp_path):
    from data_prep_cli import main

    with pytest.raises(SystemExit) as info, redirect_stdout(io.StringIO()) as text:
        main(["--help"])
    assert info.value.code == 0 and "--sdss-photometry" in text.getvalue() and "--on-bad" in text.getvalue()
    make_raw(tmp_path / "raw", images=False)
    code, stdout, _ = run_cli(args(tmp_path / "raw", tmp_path / "data", "--images", str(tmp_path / "raw"),
                                   "--dry-run", "--sdss-batch-size", "4"))
    assert code == 0 and "catalogue.parquet" in stdout and "to run" in stdout
    # No crossmatch yet: every one of the 40 GZ1 rows may need SkyServer; 4 per request -> 10 requests, 20 s.
    assert "40 objects -> 10 requests of <= 4 objects; at 0.5 requests/s at least 0.0 h" in stdout
    code, stdout, _ = run_cli(args(tmp_path / "raw", tmp_path / "data", "--images", str(tmp_path / "raw"),
                                   "--dry-run", "--sdss-photometry", str(tmp_path / "raw" / "sdss_photometry.csv")))
    assert code == 0 and "(no request)" in stdout
    assert not (tmp_path / "data").exists()
    code, _, stderr = run_cli(args(tmp_path / "raw", tmp_path / "data"))
    assert code == 2 and "--images" in stderr


def test_unknown_neighbour_reading_is_refused(tmp_path):
    make_raw(tmp_path / "raw", images=False)
    code, _, stderr = run_cli(args(tmp_path / "raw", tmp_path / "data", "--images", str(tmp_path / "raw"),
                                   "--dry-run", "--set", "data.sdss_neighbours=secondary"))
    says = "--set data.sdss_neighbours=secondary: data.sdss_neighbours='secondary': must be one of all, primary"
    assert code == 2 and says in stderr


def test_jpeg_tree_and_cutout_service_are_never_mixed(tmp_path):
    """The Galaxy Zoo DESI JPEGs and the cutout service differ in pixel scale: one source per dataset."""
    make_raw(tmp_path / "raw")
    code, stdout, stderr = run_cli(args(tmp_path / "raw", tmp_path / "data", "--images", str(tmp_path / "raw"),
                                        "--cutout-service"))
    assert code == 2 and stdout == "" and stderr.count("\n") == 1
    assert "not both" in stderr and "pixel scale" in stderr and not (tmp_path / "data").exists()
    with pytest.raises(pipeline.InputsError, match="0.262"):
        pipeline.Inputs(gz1=tmp_path / "g.csv", desi_index=tmp_path / "i.parquet", images=tmp_path,
                        cutout_service=True)


def test_sdss_failures_hold_back_the_stores_until_a_rerun(tmp_path, fake_store):
    raw = make_raw(tmp_path / "raw")
    gz1 = raw["gz1"]
    from gcnn_spin.data.gz1 import parse_sexagesimal

    sdss_objects = pd.DataFrame({"objid": gz1["OBJID"], "ra": parse_sexagesimal(gz1["RA"], True)[0],
                                 "dec": parse_sexagesimal(gz1["DEC"], False)[0], "mode": 1,
                                 "petroR50_r": 2.5, "petroR50Err_r": 0.2, "petroMag_r": 17.0, "petroMagErr_r": 0.05})
    fake = SkyServerFake(sdss_objects)
    inputs = pipeline.Inputs(gz1=tmp_path / "raw" / "GalaxyZoo1_DR_table2.csv",
                             desi_index=tmp_path / "raw" / "desi_index.parquet", images=tmp_path / "raw")
    out = tmp_path / "data"
    with Loopback() as server:
        server.route(SKYSERVER_DR7_PATH, fake)
        client = pipeline.sdss.SkyServer(server.url, max_requests_per_s=0, backoff_s=0, tries=2)
        fake.failures = [503] * 4  # both batches (25 + 11 galaxies) fail twice
        first = pipeline.build_dataset(out, inputs, CFG, on_bad="skip", sdss_client=client, progress=False)
        assert not first["complete"] and fake_store == []
        assert (out / "catalogue.parquet").exists() and not (out / "catalogue.parquet.done").exists()
        failed = pd.read_csv(out / "sdss.failed.csv")
        assert len(failed) == 36  # every matched galaxy
        reasons = pd.read_parquet(out / "catalogue.parquet")["reason"]
        assert reasons.isin(["no_sdss_photometry", "no_desi_match"]).all()
        second = pipeline.build_dataset(out, inputs, CFG, on_bad="skip", sdss_client=client, progress=False)
    assert second["complete"] and second["reused"]["gz1"] and not second["reused"]["catalogue"]
    assert (out / "catalogue.parquet.done").exists() and len(fake_store) == 4
    assert (pd.read_parquet(out / "catalogue.parquet")["split"] != "excluded").sum() > 0


def test_store_reports_lie_where_the_store_builder_writes_them(tmp_path):
    from gcnn_spin.data.store import store_paths
    from gcnn_spin.layout import store_path, store_report_path

    assert store_report_path(tmp_path, "train", "bad") == store_paths(store_path(tmp_path, "train"))["bad"]
    assert store_report_path(tmp_path, "survey", "fetch_failed") == tmp_path / "stores" / "survey.fetch_failed.csv"
    with pytest.raises(ValueError, match="unknown store report 'good'"):
        store_report_path(tmp_path, "train", "good")


def test_dry_run_estimates_the_cutout_route(tmp_path):
    n = len(make_raw(tmp_path / "raw", images=False)["index"])  # 36 counterparts + 10 survey-only = 46
    code, stdout, _ = run_cli(args(tmp_path / "raw", tmp_path / "data", "--cutout-service", "--cutout-rate", "2",
                                   "--dry-run"))
    assert code == 0 and not (tmp_path / "data").exists()
    line = next(line for line in stdout.splitlines() if line.startswith("Cutout service"))
    assert n == 46 and f"{n:,} cutouts at most (0 cached) -> {n:,} requests; at 2 requests/s" in line
    assert "files in the cache" in line


def test_cutout_estimate_scales_to_the_survey():
    from gcnn_spin.data.cutouts import estimate

    est = estimate(8_670_000, requests_per_s=5.0, n_cached=670_000)
    assert est["n_requests"] == 8_000_000 and est["seconds"] == pytest.approx(1.6e6)
    assert est["inodes"] == 8_670_000 and est["bytes"] == pytest.approx(8e6 * 44e3)
