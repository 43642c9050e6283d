"""A real Galaxy Zoo 1 sample with its DESI cutouts, turned into the pipeline's raw layout.

A *real sample* folder holds real published data (see its README): ``GalaxyZoo1_DR_table2.csv`` (GZ1 table 2 rows,
every published column in the published order), ``gz1_to_dr8.csv`` (``OBJID`` -> ``dr8_id``, the study's 10″
cross-match) and ``jpg/{brickid}/{dr8_id}.jpg`` (the Galaxy Zoo DESI cutouts). Two inputs of the pipeline are not
in it, because they are not available offline; :func:`prepare_raw` fills them in under stated assumptions:

1. **DESI position = GZ1 position.** The Galaxy Zoo DESI catalogue's ``ra``/``dec`` per ``dr8_id`` are missing, so
   ``desi_index.parquet`` gives each ``dr8_id`` of ``gz1_to_dr8.csv`` the position of its GZ1 galaxy (for these
   galaxies the two agree to about 0.1″, far inside the 10″ match radius). The cross-match stage then re-finds
   exactly the published pairs, each at separation 0.
2. **Every galaxy passes the SDSS cuts and has no neighbour within 1″.** The SDSS DR7 photometry is missing, so
   ``sdss_photometry.csv`` gives every galaxy :data:`ASSUMED_PHOTOMETRY` (values inside the study's cuts) and
   ``n_neighbours_1arcsec = 0``; ``petroMag_r`` is left empty (unknown; the cuts do not use it).

Written into ``RAW``: ``GalaxyZoo1_DR_table2.csv`` (a byte copy), ``desi_index.parquet``, ``sdss_photometry.csv``,
``jpg`` (a symbolic link to the sample's folder, or a copy) and ``ASSUMPTIONS.md`` (the two points above), i.e.
the layout ``data_prep/build_dataset.py`` reads (:func:`real_sample_inputs`).
"""

from __future__ import annotations

import filecmp
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from gcnn_spin.data.bad_rows import BadRowsError, missing_columns
from gcnn_spin.data.gz1 import parse_sexagesimal
from gcnn_spin.data.parse import parse_objid
from gcnn_spin.data.images import jpg_relpath
from gcnn_spin.io import atomic_path

GZ1_FILE = "GalaxyZoo1_DR_table2.csv"
MATCH_FILE = "gz1_to_dr8.csv"
DESI_FILE = "desi_index.parquet"
SDSS_FILE = "sdss_photometry.csv"
NOTE_FILE = "ASSUMPTIONS.md"
#: Photometry given to every galaxy (assumption 2): r-band Petrosian half-light radius 3″ ± 0.1″ and magnitude
#: error 0.05, inside the study's cuts (``petroMagErr_r < 1``, ``petroR50_r > 1``, ``err/R50 < 0.25``).
ASSUMED_PHOTOMETRY = {"petroR50_r": 3.0, "petroR50Err_r": 0.1, "petroMagErr_r": 0.05}

NOTE = """# What in this folder is real, and what is assumed

Made by `gcnn_spin.data.real_sample.prepare_raw` from a real Galaxy Zoo 1 sample.

Real: `GalaxyZoo1_DR_table2.csv` (a byte copy of the sample's GZ1 table 2 rows), the cutouts under `jpg/`, and the
`OBJID` -> `dr8_id` pairs (the study's 10" cross-match) that `desi_index.parquet` lists.

Assumed, because these inputs are not available offline:
1. `desi_index.parquet`: each `dr8_id`'s `ra`/`dec` is the position of its GZ1 galaxy (the Galaxy Zoo DESI
   catalogue's positions agree with it to about 0.1" for these galaxies); the cross-match finds each pair at 0".
2. `sdss_photometry.csv`: every galaxy passes the SDSS quality cuts (`petroR50_r` = {petroR50_r}, `petroR50Err_r` =
   {petroR50Err_r}, `petroMagErr_r` = {petroMagErr_r}, `petroMag_r` unknown) and has no other object within 1"
   (`n_neighbours_1arcsec` = 0). These are not SDSS measurements.
"""


def read_match(path: Path, gz1_objids: np.ndarray) -> pd.DataFrame:
    """``gz1_to_dr8.csv`` -> ``objid`` (int64), ``dr8_id`` (str); every pair checked, offenders named."""
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing_columns(raw.columns, ("OBJID", "dr8_id"), path)
    objid, ok = parse_objid(raw["OBJID"])
    dr8 = raw["dr8_id"].str.strip()
    problems = {
        "unparsable OBJID": ~ok,
        "dr8_id not of the form {brickid}_{objid}": ~dr8.str.fullmatch(r"\d+_\d+").to_numpy(),
        "duplicate dr8_id": dr8.duplicated(keep=False).to_numpy(),
        "duplicate OBJID": ok & pd.Series(objid).duplicated(keep=False).to_numpy(),
        "OBJID not in the GZ1 table": ok & ~np.isin(objid, gz1_objids),
    }
    for reason, bad in problems.items():
        if bad.any():
            lines = (np.flatnonzero(bad) + 2).tolist()
            raise BadRowsError(f"{path}: {reason} on line(s) {lines[:10]}", raw["OBJID"][bad].tolist())
    return pd.DataFrame({"objid": objid, "dr8_id": dr8.to_numpy(dtype=object)})


def desi_index(gz1_csv: Path, match: pd.DataFrame) -> pd.DataFrame:
    """The DESI file index (``ra, dec, dr8_id, brickid, objid, jpg_loc``) with assumption 1: GZ1 positions."""
    gz1 = pd.read_csv(gz1_csv, dtype=str, keep_default_na=False, usecols=["OBJID", "RA", "DEC"])
    objid, _ = parse_objid(gz1["OBJID"])
    ra, ok_ra = parse_sexagesimal(gz1["RA"], hours=True)
    dec, ok_dec = parse_sexagesimal(gz1["DEC"], hours=False)
    position = pd.DataFrame({"objid": objid, "ra": ra, "dec": dec})[ok_ra & ok_dec]
    rows = match.merge(position, on="objid", how="inner", validate="one_to_one")
    if len(rows) != len(match):
        lost = sorted(set(match["objid"]) - set(rows["objid"]))
        raise BadRowsError(f"{gz1_csv}: OBJID(s) {lost[:10]} have no valid RA/DEC", lost)
    brick_obj = rows["dr8_id"].str.split("_", n=1, expand=True).astype(np.int64)
    out = pd.DataFrame({"ra": rows["ra"].to_numpy(), "dec": rows["dec"].to_numpy(),
                        "dr8_id": rows["dr8_id"].astype(str).to_numpy(),
                        "brickid": brick_obj[0].to_numpy(), "objid": brick_obj[1].to_numpy()})
    out["jpg_loc"] = [jpg_relpath(d) for d in out["dr8_id"]]
    return out.sort_values(["brickid", "objid"], kind="stable").reset_index(drop=True)


def sdss_photometry(objids) -> pd.DataFrame:
    """The offline photometry table with assumption 2 (``--sdss-photometry`` columns, ``petroMag_r`` empty)."""
    objids = np.sort(np.asarray(objids, dtype=np.int64))
    out = pd.DataFrame({"objID": objids})
    for name, value in ASSUMED_PHOTOMETRY.items():
        out[name] = value
    out["n_neighbours_1arcsec"] = 0
    out["petroMag_r"] = ""
    return out


def _write_if_changed(target: Path, write) -> None:
    """``write(tmp)`` then move it onto ``target`` atomically, unless ``target`` already holds the same bytes: a
    rerun leaves the files (and their modification times, which the pipeline's stage markers record) untouched."""
    with atomic_path(target) as tmp:
        write(tmp)
        if target.exists() and filecmp.cmp(tmp, target, shallow=False):
            shutil.copystat(target, tmp)  # same bytes: keep the old modification time


def _link_or_copy(source: Path, target: Path) -> None:
    if target.is_symlink() or target.exists():
        if target.resolve() == source.resolve() or (target.is_dir() and not target.is_symlink()):
            return  # linked, or copied by an earlier run
        raise FileExistsError(f"{target} exists and is not the sample's jpg folder ({source})")
    try:
        os.symlink(source.resolve(), target, target_is_directory=True)
    except OSError:  # no symlinks on this file system
        shutil.copytree(source, target)


def prepare_raw(sample: str | os.PathLike, raw: str | os.PathLike) -> dict[str, Path]:
    """Write the raw layout for ``sample`` into ``raw`` (see the module doc); returns the paths by input name."""
    sample, raw = Path(sample), Path(raw)
    for name in (GZ1_FILE, MATCH_FILE, "jpg"):
        if not (sample / name).exists():
            raise FileNotFoundError(f"{sample / name} not found: is {sample} a real-sample folder?")
    raw.mkdir(parents=True, exist_ok=True)
    gz1_objids, _ = parse_objid(pd.read_csv(sample / GZ1_FILE, dtype=str, usecols=["OBJID"])["OBJID"])
    match = read_match(sample / MATCH_FILE, gz1_objids)
    _write_if_changed(raw / GZ1_FILE, lambda tmp: shutil.copyfile(sample / GZ1_FILE, tmp))
    _write_if_changed(raw / DESI_FILE, lambda tmp: desi_index(sample / GZ1_FILE, match).to_parquet(tmp))
    _write_if_changed(raw / SDSS_FILE, lambda tmp: sdss_photometry(match["objid"]).to_csv(tmp, index=False))
    _write_if_changed(raw / NOTE_FILE, lambda tmp: tmp.write_text(NOTE.format(**ASSUMED_PHOTOMETRY)))
    _link_or_copy(sample / "jpg", raw / "jpg")
    return {"gz1": raw / GZ1_FILE, "desi_index": raw / DESI_FILE, "sdss_photometry": raw / SDSS_FILE,
            "images": raw, "note": raw / NOTE_FILE}


def real_sample_inputs(raw: str | os.PathLike):
    """The pipeline's :class:`~gcnn_spin.data.pipeline.Inputs` for a folder written by :func:`prepare_raw`."""
    from gcnn_spin.data.pipeline import Inputs

    raw = Path(raw)
    return Inputs(gz1=raw / GZ1_FILE, desi_index=raw / DESI_FILE, images=raw, sdss_photometry=raw / SDSS_FILE)
