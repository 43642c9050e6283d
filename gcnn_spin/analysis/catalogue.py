"""The spin catalogue: one row per survey galaxy (then the labelled GZ1 galaxies), streamed part by part.

Two files with the same rows and columns: ``RESULTS/catalogue/spin_catalogue.fits`` (a FITS binary table:
units, ``TCOMMn`` descriptions, provenance keywords) and ``spin_catalogue.parquet`` (units and descriptions in
the field metadata). Rows: the survey store's galaxies in store order (``split = survey``), then the
train/val/test galaxies of the labelled stores (their GZ1 vote fractions and label; no survey predictions). Per
model, over its seeds: mean and standard deviation (ddof 1) of ``p_cw``, ``p_acw``, ``p_other``, the number of
seeds that predicted the galaxy, and the class of the mean probabilities at the 0.5 threshold.
``docs/catalogue.md`` documents every column.

Streaming: part *i* of every member (model, seed) is read, aligned on ``dr8_id`` with the store rows of part *i*,
reduced, and appended to both files; no more than one part per member is in memory. Memory grows only with
the survey store's rows (``dr8_id, ra, dec, ok``, a few tens of bytes a galaxy), never with the predictions.
The HEALPix and region x hemisphere counts of :mod:`.sky` are accumulated in the same pass.
Both files are written under temporary names and renamed when complete (an interrupted write leaves nothing).

Strict by default: a galaxy with a usable image that a member did not predict stops the catalogue
(:class:`CatalogueIncomplete`); with ``allow_partial`` its row counts the members present (``{model}__n_seeds``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .. import __version__
from ..conventions import OTHER, predicted_spirals
from ..errors import UserError
from ..io import atomic_path, marker_path, provenance, read_parquet
from . import sky

STEM = "spin_catalogue"
SEP = "__"
PROBS = ("p_cw", "p_acw", "p_other")
NO_CLASS = -1
LABELLED_SPLITS = ("train", "val", "test")


class CatalogueIncomplete(UserError):
    """A member (``model``, ``seed``) did not predict every galaxy of ``part`` (strict mode)."""

    def __init__(self, message: str, model: str, seed: int, part: int):
        super().__init__(message)
        self.model, self.seed, self.part = model, seed, part


@dataclasses.dataclass(frozen=True)
class Col:
    """One catalogue column: numpy dtype, unit (``""`` = none) and a one-line description."""

    name: str
    dtype: str
    unit: str
    description: str


def base_columns(id_width: int) -> list[Col]:
    return [
        Col("dr8_id", f"S{id_width}", "", "Galaxy Zoo DESI / Legacy Surveys DR8 id, {brickid}_{objid}"),
        Col("ra", "f8", "deg", "right ascension (ICRS) of the DESI source"),
        Col("dec", "f8", "deg", "declination (ICRS) of the DESI source"),
        Col("region", "S5", "", "imaging region: north (BASS/MzLS: Dec > 32.375 deg and b > 0) or south (DECaLS)"),
        Col("healpix", "i8", "", f"HEALPix pixel (RING order, NSIDE={sky.NSIDE}, ICRS)"),
        Col("split", "S6", "", "survey (predicted), or train/val/test (labelled GZ1 galaxy, not in the survey)"),
        Col("image_ok", "i2", "", "1 when the store holds a usable image of the galaxy, else 0 (never predicted)"),
        Col("gz1_p_cw", "f4", "", "GZ1 vote fraction clockwise (Z-wise) spiral; NaN when not a matched GZ1 galaxy"),
        Col("gz1_p_acw", "f4", "", "GZ1 vote fraction anticlockwise (S-wise) spiral; NaN when not in GZ1"),
        Col("gz1_p_other", "f4", "", "GZ1 vote fraction elliptical + edge-on + don't know + merger; NaN if not in GZ1"),
        Col("gz1_label", "i2", "", "GZ1 hard label: 0 CW, 1 ACW (vote > 0.5), 2 Other, -1 not in GZ1"),
    ]


def model_columns(model: str) -> list[Col]:
    cols = [Col(f"{model}{SEP}{p}_mean", "f4", "", f"{model}: mean over seeds of the softmax {p}") for p in PROBS]
    cols += [Col(f"{model}{SEP}{p}_std", "f4", "", f"{model}: standard deviation over seeds (ddof 1) of {p}")
             for p in PROBS]
    cols += [Col(f"{model}{SEP}n_seeds", "i2", "", f"{model}: seeds that predicted this galaxy"),
             Col(f"{model}{SEP}class", "i2", "", f"{model}: class of the mean probabilities, 0 CW / 1 ACW if "
                                                 f"its probability >= 0.5, else 2 Other; -1 not predicted")]
    return cols


@dataclasses.dataclass(frozen=True)
class Member:
    """One (model, seed) prediction set: ``parts`` maps a part index to its parquet."""

    model: str
    seed: int
    parts: Mapping[int, Path]


@dataclasses.dataclass
class SkyCounts:
    """Counts per class accumulated while streaming, for one model: per seed and for the catalogue class, per
    HEALPix pixel ``(npix, 3)`` and per region x hemisphere group ``(4, 3)``."""

    seed_pixels: dict[int, np.ndarray]
    seed_groups: dict[int, np.ndarray]
    pixels: np.ndarray
    groups: np.ndarray

    @classmethod
    def empty(cls, seeds: Sequence[int], npix: int) -> SkyCounts:
        return cls({s: np.zeros((npix, 3), np.int64) for s in seeds}, {s: np.zeros((4, 3), np.int64) for s in seeds},
                   np.zeros((npix, 3), np.int64), np.zeros((4, 3), np.int64))


@dataclasses.dataclass
class CatalogueResult:
    paths: list[Path]
    n_rows: int
    columns: list[Col]
    sky: dict[str, SkyCounts]
    truth: SkyCounts | None  # the true classes of the predicted survey galaxies (synthetic surveys)
    meta: dict[str, str]


def gz1_lookup(data: Path | None) -> pd.DataFrame | None:
    """GZ1 vote fractions, label and split by ``dr8_id`` from ``DATA/catalogue.parquet`` (matched galaxies)."""
    path = Path(data) / "catalogue.parquet" if data else None
    if path is None or not path.exists():
        return None
    cat = read_parquet(path, ["dr8_id", *PROBS, "label", "split"], "dataset catalogue",
                       "rerun data_prep/build_dataset.py")
    cat = cat[cat["dr8_id"].fillna("").astype(str) != ""].drop_duplicates("dr8_id")
    return cat.set_index(cat["dr8_id"].astype(str))


def labelled_rows(data: Path | None) -> pd.DataFrame:
    """The labelled stores' rows (train, val, test), with their split."""
    from ..layout import store_rows_path

    frames = []
    for split in LABELLED_SPLITS if data else ():
        path = store_rows_path(data, split)
        if path.exists():
            rows = read_parquet(path, ["dr8_id", "ra", "dec", *PROBS, "label", "ok"], "store rows",
                                "rerun data_prep/build_dataset.py")
            frames.append(rows.assign(split=split))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def read_member_part(path: Path) -> pd.DataFrame:
    fix = f"delete it and its marker {marker_path(path)}, then rerun inference"
    return read_parquet(path, ["dr8_id", *PROBS], "prediction part", fix)


def align(part_ids: np.ndarray, frame: pd.DataFrame, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(positions in the part's store rows, (n, 3) probabilities)`` of a member's part; foreign ids raise."""
    where = pd.Index(part_ids).get_indexer(frame["dr8_id"].astype(str).to_numpy())
    if (where < 0).any():
        bad = frame["dr8_id"].to_numpy()[where < 0][:3]
        raise UserError(f"{path}: galaxies {list(bad)} are not in the store rows of this part: predictions of "
                        f"another store? Delete the part and its marker and rerun inference")
    return where, frame[list(PROBS)].to_numpy(np.float64)


def reduce_model(stack: np.ndarray) -> dict[str, np.ndarray]:
    """Mean, std (ddof 1), count and class over seeds of ``(n_seeds, n, 3)`` probabilities (NaN = not predicted)."""
    count = np.isfinite(stack[..., 0]).sum(0)
    with warnings.catch_warnings():  # rows no seed predicted are NaN by design
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(stack, axis=0)
        std = np.nanstd(stack, axis=0, ddof=1) if len(stack) > 1 else np.full(stack.shape[1:], np.nan)
    std[count < 2] = np.nan
    cls = np.full(len(count), NO_CLASS, np.int64)
    ok = count > 0
    if ok.any():
        cls[ok] = predicted_spirals(mean[ok])
    return {"mean": mean, "std": std, "n": count, "class": cls}


class Writers:
    """Both output files, appended to block by block: a FITS binary table (``StreamingHDU``; the header and its
    row count are written first) and a parquet file (one row group per block)."""

    def __init__(self, fits_path: Path, parquet_path: Path, columns: list[Col], n_rows: int, meta: Mapping[str, str]):
        import pyarrow as pa
        import pyarrow.parquet as pq
        from astropy.io import fits

        self.columns = columns
        header = fits_header(columns, meta)
        header["NAXIS2"] = n_rows
        self.dtype = np.dtype([(c.name, c.dtype) for c in columns]).newbyteorder(">")
        self.fits = fits.StreamingHDU(fits_path, header)
        fields = [pa.field(c.name, pa.string() if c.dtype.startswith("S") else pa.from_numpy_dtype(np.dtype(c.dtype)),
                           metadata={"unit": c.unit, "description": c.description}) for c in columns]
        self.schema = pa.schema(fields, metadata={k.lower(): str(v) for k, v in meta.items()})
        self.parquet = pq.ParquetWriter(parquet_path, self.schema, compression="zstd")

    def write(self, block: Mapping[str, np.ndarray]) -> None:
        import pyarrow as pa

        n = len(block["dr8_id"])
        record = np.zeros(n, dtype=self.dtype)
        for c in self.columns:
            record[c.name] = block[c.name]
        self.fits.write(record.view(np.uint8))
        arrays = [pa.array(np.char.decode(record[c.name].astype(c.dtype), "ascii")) if c.dtype.startswith("S")
                  else pa.array(np.asarray(block[c.name], dtype=c.dtype)) for c in self.columns]
        self.parquet.write_table(pa.Table.from_arrays(arrays, schema=self.schema))

    def close(self) -> None:
        self.parquet.close()
        self.fits.close()


def fits_header(columns: list[Col], meta: Mapping[str, str]):
    """The binary-table header of ``columns`` (units; descriptions as astropy's serialized column metadata and as
    ``TCOMMn``) with ``meta`` as keywords, from an empty astropy ``Table``."""
    from astropy.io import fits
    from astropy.table import Table

    table = Table()
    for c in columns:
        table[c.name] = np.zeros(0, dtype=c.dtype)
        table[c.name].unit = c.unit or None
        table[c.name].description = c.description
    table.meta.update(meta)
    buffer = io.BytesIO()
    table.write(buffer, format="fits")
    buffer.seek(0)
    with fits.open(buffer) as hdus:
        header = hdus[1].header.copy()
    for i, c in enumerate(columns, start=1):
        header[f"TCOMM{i}"] = c.description
    return header


def catalogue_meta(runs: Sequence[Mapping[str, str]], store_identity: Mapping, science_hashes: Sequence[str],
                   allow_partial: bool) -> dict[str, str]:
    """Provenance keywords: package version, science config hash(es), store content hash, date, each run."""
    prov = provenance()
    meta = {"PACKAGE": f"gcnn_spin {__version__}", "GITCOMM": str(prov.get("git_commit")),
            "SCIHASH": ",".join(sorted(set(science_hashes))) or "unknown",
            "STORHASH": str(store_identity.get("content"))[:68], "STORSIZE": str(store_identity.get("n_images")),
            "DATE": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "MODE": "allow-partial" if allow_partial else "strict", "NRUNS": str(len(runs))}
    for i, run in enumerate(runs, start=1):
        meta[f"RUN{i:04d}"] = (f"{run['model']} seed{run['seed']} config_hash={run.get('config_hash')} "
                               f"completed={run.get('completed_utc')}")
    return meta


def survey_blocks(rows, part_rows: Sequence[tuple[int, int]], members: dict[str, list[Member]],
                  gz1: pd.DataFrame | None, allow_partial: bool) -> Iterator[dict[str, np.ndarray]]:
    """Blocks of catalogue columns, one per part (see the module docstring). ``rows``: a pyarrow table of the
    survey store rows (``dr8_id, ra, dec, ok``)."""
    for i, (start, stop) in enumerate(part_rows):
        chunk = rows.slice(start, stop - start)
        ids = np.asarray(chunk.column("dr8_id").to_numpy(zero_copy_only=False)).astype(str)
        ok = np.asarray(chunk.column("ok").to_numpy(zero_copy_only=False), dtype=bool)
        block = base_block(ids, chunk.column("ra").to_numpy(), chunk.column("dec").to_numpy(), "survey", gz1)
        block["image_ok"] = ok.astype(np.int16)
        for model, model_members in members.items():
            stack = np.full((len(model_members), len(ids), 3), np.nan)
            for k, member in enumerate(model_members):
                path = member.parts.get(i)
                if path is not None:
                    where, probs = align(ids, read_member_part(path), path)
                    stack[k, where] = probs
                missing = ok & ~np.isfinite(stack[k, :, 0])
                if missing.any() and not allow_partial:
                    raise CatalogueIncomplete(
                        f"{model} seed{member.seed} did not predict {int(missing.sum())} galaxies of part {i} "
                        f"(e.g. {ids[missing][0]}): rerun its inference, or pass --allow-partial",
                        model, member.seed, i)
            block[model] = stack
        yield block


def base_block(ids: np.ndarray, ra: np.ndarray, dec: np.ndarray, split: str | np.ndarray,
               gz1: pd.DataFrame | None) -> dict[str, np.ndarray]:
    """The model-independent columns of a block of galaxies."""
    ra, dec = np.asarray(ra, np.float64), np.asarray(dec, np.float64)
    pixel, group, b = sky.sky_index(ra, dec)
    block = {"dr8_id": ids.astype("S"), "ra": ra, "dec": dec, "region": sky.imaging_region(dec, b).astype("S5"),
             "healpix": pixel, "_group": group, "split": np.broadcast_to(np.asarray(split, "S6"), ids.shape)}
    found = gz1.reindex(ids) if gz1 is not None else pd.DataFrame(np.nan, index=ids, columns=[*PROBS, "label"])
    for p in PROBS:
        block[f"gz1_{p}"] = found[p].to_numpy(np.float32, na_value=np.nan)
    block["gz1_label"] = found["label"].fillna(NO_CLASS).to_numpy(np.int16)
    return block


def write_catalogue(out_dir: Path, rows, part_rows: Sequence[tuple[int, int]], members: dict[str, list[Member]],
                    meta: Mapping[str, str], *, data: Path | None = None, truth: pd.Series | None = None,
                    allow_partial: bool = False, nside: int = sky.NSIDE) -> CatalogueResult:
    """Stream the catalogue into ``out_dir/spin_catalogue.{fits,parquet}``; see the module docstring.

    ``rows``: pyarrow table of the survey store rows; ``part_rows``: each part's ``(start, stop)`` rows;
    ``members``: model -> its prediction sets; ``truth``: true class by ``dr8_id`` (synthetic surveys).
    """
    gz1 = gz1_lookup(data)
    labelled = labelled_rows(data)
    ids_width = max(id_width(rows.column("dr8_id")),
                    int(labelled["dr8_id"].astype(str).str.len().max()) if len(labelled) else 1)
    columns = base_columns(ids_width) + [c for m in members for c in model_columns(m)]
    n_rows = rows.num_rows + len(labelled)
    npix = 12 * nside * nside
    counts = {m: SkyCounts.empty([s.seed for s in ms], npix) for m, ms in members.items()}
    truth_counts = SkyCounts.empty([], npix) if truth is not None else None
    fits_path, parquet_path = out_dir / f"{STEM}.fits", out_dir / f"{STEM}.parquet"
    with atomic_path(fits_path, ".fits") as fits_tmp, atomic_path(parquet_path, ".parquet") as parquet_tmp:
        writers = Writers(fits_tmp, parquet_tmp, columns, n_rows, meta)
        try:
            for block in survey_blocks(rows, part_rows, members, gz1, allow_partial):
                for model, model_members in members.items():
                    stack = block.pop(model)
                    accumulate(counts[model], stack, [m.seed for m in model_members], block)
                    block.update(model_block(model, reduce_model(stack)))
                if truth_counts is not None:
                    accumulate_truth(truth_counts, truth, block)
                writers.write(block)
            if len(labelled):
                writers.write(labelled_block(labelled, members, gz1))
        finally:
            writers.close()
    return CatalogueResult([fits_path, parquet_path], n_rows, columns, counts, truth_counts, dict(meta))


def id_width(ids) -> int:
    """Longest ``dr8_id`` of a pyarrow string column (computed in Arrow: no Python string per galaxy)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    longest = pc.max(pc.utf8_length(pc.cast(ids, pa.string()))).as_py() if len(ids) else None
    return max(int(longest or 1), 1)


def model_block(model: str, reduced: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    block = {}
    for j, p in enumerate(PROBS):
        block[f"{model}{SEP}{p}_mean"] = reduced["mean"][:, j]
        block[f"{model}{SEP}{p}_std"] = reduced["std"][:, j]
    block[f"{model}{SEP}n_seeds"] = reduced["n"]
    block[f"{model}{SEP}class"] = reduced["class"]
    return block


def labelled_block(labelled: pd.DataFrame, members: Mapping[str, list[Member]],
                   gz1: pd.DataFrame | None) -> dict[str, np.ndarray]:
    """The train/val/test galaxies: their own vote fractions and label, no survey predictions."""
    ids = labelled["dr8_id"].astype(str).to_numpy()
    block = base_block(ids, labelled["ra"], labelled["dec"], labelled["split"].to_numpy().astype("S6"), None)
    block["image_ok"] = labelled["ok"].to_numpy(np.int16)
    for p in PROBS:
        block[f"gz1_{p}"] = labelled[p].to_numpy(np.float32)
    block["gz1_label"] = labelled["label"].fillna(NO_CLASS).to_numpy(np.int16)
    empty = np.full((0, len(ids), 3), np.nan)
    for model in members:
        block.update(model_block(model, reduce_model(empty)))
    return block


def accumulate(counts: SkyCounts, stack: np.ndarray, seeds: Sequence[int], block: Mapping[str, np.ndarray]) -> None:
    """Add a block's calls per seed and of the mean probabilities to ``counts``."""
    for seed, probs in zip(seeds, stack):
        valid = np.isfinite(probs[:, 0])
        calls = np.full(len(probs), OTHER, np.int64)
        calls[valid] = predicted_spirals(probs[valid])
        sky.add_counts(counts.seed_pixels[seed], block["healpix"], calls, valid)
        sky.add_counts(counts.seed_groups[seed], block["_group"], calls, valid)
    reduced = reduce_model(stack)
    valid = reduced["n"] > 0
    sky.add_counts(counts.pixels, block["healpix"], np.maximum(reduced["class"], 0), valid)
    sky.add_counts(counts.groups, block["_group"], np.maximum(reduced["class"], 0), valid)


def accumulate_truth(counts: SkyCounts, truth: pd.Series, block: Mapping[str, np.ndarray]) -> None:
    """Add the true classes of the block's galaxies with a usable image (the ones every model predicts)."""
    true = truth.reindex(np.char.decode(block["dr8_id"], "ascii")).to_numpy()
    valid = np.isfinite(true.astype(np.float64)) & (block["image_ok"] > 0)
    calls = np.where(valid, true, 0).astype(np.int64)
    sky.add_counts(counts.pixels, block["healpix"], calls, valid)
    sky.add_counts(counts.groups, block["_group"], calls, valid)

