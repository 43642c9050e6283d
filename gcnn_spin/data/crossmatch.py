"""Stage 2: match GZ1 galaxies to the Galaxy Zoo DESI index, and define the survey set.

The match is astropy's ``match_to_catalog_sky`` (nearest DESI galaxy on the sky, one KD-tree over the index);
a GZ1 galaxy is matched when that neighbour lies within ``match_radius_arcsec`` (10"). When several GZ1
galaxies share one nearest DESI galaxy (SDSS shredding a large galaxy into pieces), only the closest keeps it
and the others are excluded with reason ``desi_match_taken``: one image must never carry two labels or sit in
two splits.

The survey set is every valid DESI-index galaxy except those whose image is used in train, val or test
(:func:`survey_rows`). GZ1 galaxies cut by the SDSS cuts or by downsampling never reach a store, so they
stay in the survey, as in the study ("training and test galaxies removed").
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import astropy.units as u
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from astropy.coordinates import SkyCoord

from gcnn_spin.data.bad_rows import (
    BadRowsError, EmptyInputError, RowProblems, check_on_bad, missing_columns, require_rows,
)
from gcnn_spin.errors import reading

log = logging.getLogger(__name__)

#: The only columns the pipeline reads from the DESI catalogue; ``brickid`` is derived from ``dr8_id`` when absent.
INDEX_COLUMNS: tuple[str, ...] = ("dr8_id", "ra", "dec")
MATCH_COLUMNS: tuple[str, ...] = ("dr8_id", "match_sep_arcsec", "desi_ra", "desi_dec", "match_reason")


def _read_columns(path: Path, optional: tuple[str, ...] = ("brickid",)) -> pa.Table:
    """The :data:`INDEX_COLUMNS` (and those of ``optional`` present) of a parquet or CSV catalogue, nothing else.

    The Galaxy Zoo DESI catalogue as published (parquet or CSV, hundreds of morphology columns) reads as it is.
    """
    if path.suffix == ".parquet":
        with reading(path, "DESI catalogue parquet"):
            names = pq.read_schema(path).names
    else:
        try:
            names = pa_csv.open_csv(path).schema.names
        except pa.ArrowInvalid as err:
            if "Empty CSV file" in str(err):
                raise EmptyInputError(f"{path}: empty file; expected the Galaxy Zoo DESI catalogue "
                                      f"(columns {list(INDEX_COLUMNS)})") from None
            raise BadRowsError(f"{path}: not a readable CSV table ({err})") from None
    missing_columns(names, INDEX_COLUMNS, path)
    columns = list(INDEX_COLUMNS) + [c for c in optional if c in names]
    with reading(path, "DESI catalogue"):
        if path.suffix == ".parquet":
            return pq.read_table(path, columns=columns)
        return pa_csv.read_csv(path, convert_options=pa_csv.ConvertOptions(
            include_columns=columns, column_types={"dr8_id": pa.string()}))


def brickids(dr8_ids: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """``dr8_id = "{brickid}_{objid}"`` -> (brickid int64 ``(N,)``, ok ``(N,)``)."""
    parts = pc.extract_regex(dr8_ids, r"^(?P<brick>\d{1,18})_\d{1,18}$")
    ok = parts.is_valid().to_numpy(zero_copy_only=False)
    brick = pc.fill_null(pc.struct_field(parts, "brick"), "0")
    return pc.cast(brick, pa.int64()).to_numpy(zero_copy_only=False).copy(), ok


def read_desi_index(path: str | os.PathLike, *, on_bad: str = "raise",
                    report_path: str | os.PathLike | None = None) -> pd.DataFrame:
    """Read and validate the DESI catalogue -> ``dr8_id`` (str), ``ra``, ``dec`` (deg), ``brickid`` (int64).

    Takes the Galaxy Zoo DESI catalogue as published (parquet, or CSV by any other suffix): only
    :data:`INDEX_COLUMNS` are required and read, every other column is ignored; ``brickid`` comes from the file
    when present, else from ``dr8_id``. Checks: ``dr8_id`` non-empty, unique and of the form
    ``{brickid}_{objid}``; finite ``ra`` in [0, 360] and ``dec`` in [-90, 90]. Bad rows raise
    :class:`~gcnn_spin.data.bad_rows.BadRowsError` naming the dr8_ids, or with ``on_bad="skip"`` are dropped and
    listed in ``report_path`` (``row`` = 0-based row number). No rows at all raise
    :class:`~gcnn_spin.data.bad_rows.EmptyInputError`.
    """
    check_on_bad(on_bad)
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"DESI index not found: {path}")
    table = _read_columns(path)
    require_rows(table.num_rows, path, "DESI catalogue rows")
    dr8 = pc.fill_null(pc.cast(table.column("dr8_id"), pa.string()), "").combine_chunks()
    ra = pc.cast(table.column("ra"), pa.float64()).to_numpy()
    dec = pc.cast(table.column("dec"), pa.float64()).to_numpy()
    ids = pd.Series(dr8, dtype=pd.ArrowDtype(pa.string()))
    problems = RowProblems(path, ids, "dr8_id", line_name="row")
    empty = pc.equal(dr8, "").to_numpy(zero_copy_only=False)
    problems.add(empty, "dr8_id missing")
    problems.add(~empty & duplicated(dr8), "duplicate dr8_id")
    brick, brick_ok = brickids(dr8)
    problems.add(~empty & ~brick_ok, "dr8_id not of the form {brickid}_{objid}")
    ra_ok = np.isfinite(ra) & (ra >= 0) & (ra <= 360)
    dec_ok = np.isfinite(dec) & (np.abs(dec) <= 90)
    problems.add(~ra_ok, "ra missing or outside [0, 360] deg")
    problems.add(~dec_ok, "dec missing or outside [-90, 90] deg")
    keep = problems.resolve(on_bad, report_path)
    if "brickid" in table.column_names:
        brick = pc.cast(table.column("brickid"), pa.int64()).to_numpy()
    out = pd.DataFrame({"dr8_id": ids, "ra": ra % 360.0, "dec": dec, "brickid": brick})
    if not keep.all():
        out = out[keep].reset_index(drop=True)
    log.info("%s: %d index rows read, %d kept", path.name, table.num_rows, len(out))
    return out


def duplicated(values: pa.Array) -> np.ndarray:
    """``(N,)`` bool: True for every copy of a value that occurs more than once (hashing in pyarrow)."""
    if len(pc.unique(values)) == len(values):
        return np.zeros(len(values), dtype=bool)
    counts = pc.value_counts(values)
    repeated = pc.filter(counts.field("values"), pc.greater(counts.field("counts"), 1))
    return pc.is_in(values, value_set=repeated).to_numpy(zero_copy_only=False)


def match_to_desi(gz1: pd.DataFrame, index: pd.DataFrame, radius_arcsec: float, *,
                  unique: bool = True) -> pd.DataFrame:
    """Nearest DESI galaxy of each GZ1 galaxy, kept within ``radius_arcsec``.

    ``gz1``: ``ra, dec`` (deg), ``N`` rows; ``index``: ``dr8_id, ra, dec``. Returns ``N`` rows in ``gz1``'s
    order with :data:`MATCH_COLUMNS`: ``dr8_id`` ("" when unmatched), ``match_sep_arcsec`` (to the nearest
    DESI galaxy, also when beyond the radius), ``desi_ra``/``desi_dec`` (NaN when unmatched) and
    ``match_reason`` ("", ``no_desi_match`` or ``desi_match_taken``).
    """
    n = len(gz1)
    out = pd.DataFrame({"dr8_id": np.full(n, "", dtype=object), "match_sep_arcsec": np.full(n, np.inf),
                        "desi_ra": np.full(n, np.nan), "desi_dec": np.full(n, np.nan),
                        "match_reason": np.full(n, "no_desi_match", dtype=object)})
    if n == 0 or len(index) == 0:
        return out
    source = SkyCoord(gz1["ra"].to_numpy() * u.deg, gz1["dec"].to_numpy() * u.deg)
    catalogue = SkyCoord(index["ra"].to_numpy() * u.deg, index["dec"].to_numpy() * u.deg)
    nearest, sep2d, _ = source.match_to_catalog_sky(catalogue)
    sep = sep2d.to_value(u.arcsec)
    matched = sep < radius_arcsec
    if unique and matched.any():
        # Among GZ1 galaxies sharing a DESI galaxy, the closest keeps it (ties: the first row).
        rows = np.flatnonzero(matched)
        order = rows[np.lexsort((rows, sep[rows]))]
        taken = pd.Series(nearest[order]).duplicated(keep="first").to_numpy()
        out.loc[order[taken], "match_reason"] = "desi_match_taken"
        matched[order[taken]] = False
    out["match_sep_arcsec"] = sep
    hit = nearest[matched]
    out.loc[matched, "dr8_id"] = index["dr8_id"].take(hit).astype(object).to_numpy()
    out.loc[matched, "desi_ra"] = index["ra"].to_numpy()[hit]
    out.loc[matched, "desi_dec"] = index["dec"].to_numpy()[hit]
    out.loc[matched, "match_reason"] = ""
    log.info("matched %d of %d GZ1 galaxies within %.1f\" (%d lost to a closer GZ1 galaxy)", int(matched.sum()),
             n, radius_arcsec, int((out["match_reason"] == "desi_match_taken").sum()))
    return out


def survey_rows(index: pd.DataFrame, used_dr8_ids) -> pd.DataFrame:
    """The survey set: index rows whose ``dr8_id`` is not in ``used_dr8_ids`` (the train/val/test images).

    Returns ``dr8_id, ra, dec, brickid`` plus ``p_cw, p_acw, p_other, label`` all NaN (no labels), index order.
    """
    used = pa.array(pd.unique(pd.Series(list(used_dr8_ids), dtype=object).astype(str)), type=pa.string())
    ids = pa.array(index["dr8_id"], type=pa.string())
    keep = ~pc.is_in(ids, value_set=used).to_numpy(zero_copy_only=False)
    out = index.loc[keep, ["dr8_id", "ra", "dec", "brickid"]].reset_index(drop=True)
    for column in ("p_cw", "p_acw", "p_other", "label"):
        out[column] = np.nan
    return out
