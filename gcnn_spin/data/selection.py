"""Stage 4: SDSS quality cuts, the seeded test split, downsampling of train/val, and the train/val split.

Order (the study's): cuts -> 80/20 test split -> downsample train/val by ``m = max(P_CW, P_ACW)`` -> split
train/val. The test set is drawn **before** downsampling, so it keeps the survey's natural class mix.

Downsampling bins (``DataConfig.downsample_bins``, ``(upper edge, fraction kept)``) are half-open ``(lo, hi]``
except the first, which is closed at 0: ``m = 0`` exactly (no spiral vote at all, most GZ1 ellipticals) goes
with ``0 < m <= 0.1`` and is kept at 1/20. That is the only reading under which the study's train/val set
shrinks from 166,945 to 35,988 galaxies; keeping every ``m = 0`` galaxy would leave most of them in. Every
galaxy above the last edge is kept. Within a bin exactly ``round(fraction * n)`` galaxies are kept.

Every random draw uses its own stream of ``numpy.random.default_rng([split_seed, stream])`` over the
candidates sorted by objID, so the result does not depend on the input row order.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from gcnn_spin.config import DataConfig, QualityCuts

#: Row names of the counts table (the study's Table 1 rows, then the final train and val sets).
STAGES: tuple[str, ...] = ("Galaxy Zoo 1", "matched to DESI", "SDSS-queried (1″ cut)", "quality cuts", "test",
                           "train/val before downsampling", "train/val after downsampling", "train", "val")
SPLITS: tuple[str, ...] = ("train", "val", "test")
_STREAM_TEST, _STREAM_DOWNSAMPLE, _STREAM_VAL = 1, 2, 3


def neighbour_mask(catalogue: pd.DataFrame, cuts: QualityCuts) -> np.ndarray:
    """``(N,)`` True where SDSS answered and at most ``max_neighbours_1arcsec`` other objects lie within 1"."""
    n = catalogue["n_neighbours_1arcsec"].to_numpy(np.float64)
    return np.isfinite(n) & (n <= cuts.max_neighbours_1arcsec)


def photometry_mask(catalogue: pd.DataFrame, cuts: QualityCuts) -> np.ndarray:
    """``(N,)`` True where ``0 < petroMagErr_r < max``, ``petroR50_r > min`` and ``0 < err/R50 < max``.

    NaN and SDSS's -9999 "no value" fail every comparison, so they fail the cuts.
    """
    mag_err = catalogue["petroMagErr_r"].to_numpy(np.float64)
    r50 = catalogue["petroR50_r"].to_numpy(np.float64)
    r50_err = catalogue["petroR50Err_r"].to_numpy(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = r50_err / r50
        return ((mag_err > 0) & (mag_err < cuts.max_petro_mag_err_r) & (r50 > cuts.min_petro_r50_arcsec)
                & (rel > 0) & (rel < cuts.max_petro_r50_rel_err))


def downsample_bin(m: np.ndarray, bins) -> np.ndarray:
    """Bin index ``(N,)`` of each ``m`` (``len(bins)`` = above the last edge, always kept); see module doc."""
    edges = np.array([edge for edge, _ in bins], dtype=np.float64)
    if len(edges) and (np.any(np.diff(edges) <= 0) or edges[0] <= 0):
        raise ValueError(f"downsample_bins edges must be positive and increasing, got {list(bins)}")
    # side="left": m equal to an edge belongs to the bin that edge closes, (lo, hi].
    return np.searchsorted(edges, np.asarray(m, dtype=np.float64), side="left")


def downsample(m: np.ndarray, bins, rng: np.random.Generator) -> np.ndarray:
    """Keep-mask ``(N,)``: exactly ``round(fraction * n_bin)`` random galaxies of each bin, all above the last."""
    for _, fraction in bins:
        if not 0 <= fraction <= 1:
            raise ValueError(f"downsample_bins fractions must lie in [0, 1], got {list(bins)}")
    which = downsample_bin(m, bins)
    keep = which == len(bins)
    for k, (_, fraction) in enumerate(bins):
        members = np.flatnonzero(which == k)
        n_keep = int(round(fraction * len(members)))
        keep[rng.choice(members, size=n_keep, replace=False)] = True
    return keep


def _draw(candidates: np.ndarray, objid: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """A random ``round(fraction * n)`` subset of ``candidates`` (row positions), independent of row order."""
    ordered = candidates[np.argsort(objid[candidates], kind="stable")]
    n = int(round(fraction * len(ordered)))
    return ordered[rng.permutation(len(ordered))[:n]]


def select(catalogue: pd.DataFrame, cfg: DataConfig) -> pd.DataFrame:
    """Add ``split`` (train/val/test/excluded) and ``reason`` to a catalogue (one row per GZ1 galaxy).

    Needs ``objid, p_cw, p_acw, dr8_id, match_reason, n_neighbours_1arcsec`` and the three photometry columns.
    Reasons, first that applies: ``match_reason`` (``no_desi_match``, ``desi_match_taken``),
    ``no_sdss_photometry`` (no SDSS answer, or photometry NULL), ``neighbour_1arcsec``, ``quality_cut``,
    ``downsampled``; empty for train/val/test.
    """
    if not 0 < cfg.test_fraction < 1 or not 0 <= cfg.val_fraction < 1:
        raise ValueError(f"need 0 < test_fraction < 1 and 0 <= val_fraction < 1, got {cfg.test_fraction}, "
                         f"{cfg.val_fraction}")
    out = catalogue.copy()
    n = len(out)
    objid = out["objid"].to_numpy(np.int64)
    reason = out["match_reason"].fillna("").astype(object).to_numpy().copy()
    matched = reason == ""
    answered = np.isfinite(out["n_neighbours_1arcsec"].to_numpy(np.float64))
    photometry = np.isfinite(out[["petroR50_r", "petroR50Err_r", "petroMagErr_r"]].to_numpy(np.float64)).all(1)
    alone = neighbour_mask(out, cfg.cuts)
    good = photometry_mask(out, cfg.cuts)
    reason[matched & ~answered] = "no_sdss_photometry"
    reason[matched & answered & ~alone] = "neighbour_1arcsec"
    reason[matched & alone & ~photometry] = "no_sdss_photometry"
    reason[matched & alone & photometry & ~good] = "quality_cut"
    passed = np.flatnonzero(matched & alone & good)

    def rng(stream: int) -> np.random.Generator:
        return np.random.default_rng([cfg.split_seed, stream])

    split = np.full(n, "excluded", dtype=object)
    test = _draw(passed, objid, cfg.test_fraction, rng(_STREAM_TEST))
    split[test] = "test"
    trainval = np.setdiff1d(passed, test)
    trainval = trainval[np.argsort(objid[trainval], kind="stable")]
    m = np.maximum(out["p_cw"].to_numpy(np.float64), out["p_acw"].to_numpy(np.float64))[trainval]
    kept = trainval[downsample(m, cfg.downsample_bins, rng(_STREAM_DOWNSAMPLE))]
    reason[np.setdiff1d(trainval, kept)] = "downsampled"
    val = _draw(kept, objid, cfg.val_fraction, rng(_STREAM_VAL))
    split[kept] = "train"
    split[val] = "val"
    out["split"], out["reason"] = split, reason
    return out


def stage_labels(catalogue: pd.DataFrame, cfg: DataConfig) -> dict[str, np.ndarray]:
    """Hard labels of the galaxies alive after each stage of :data:`STAGES` (for ``counts_table``)."""
    label = catalogue["label"].to_numpy()
    matched = catalogue["dr8_id"].fillna("").astype(str).to_numpy() != ""
    alone = matched & neighbour_mask(catalogue, cfg.cuts)
    passed = alone & photometry_mask(catalogue, cfg.cuts)
    split = catalogue["split"].to_numpy()
    return {
        STAGES[0]: label,
        STAGES[1]: label[matched],
        STAGES[2]: label[alone],
        STAGES[3]: label[passed],
        STAGES[4]: label[split == "test"],
        STAGES[5]: label[passed & (split != "test")],
        STAGES[6]: label[np.isin(split, ["train", "val"])],
        STAGES[7]: label[split == "train"],
        STAGES[8]: label[split == "val"],
    }
