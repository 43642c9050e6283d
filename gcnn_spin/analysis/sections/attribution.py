"""Attribution maps of a few test galaxies and their mirror images, one seed per model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
import torch

from ...layout import store_path
from .. import attribution, figures
from ..rotation import ChunkReader
from ..report import Section
from ...run import Run, model_order
from ..tables import frame_table
from .common import Output, Written, doc_body


def _first_seeds(runs: Sequence[Run], incomplete: Mapping[str, list[str]], out: Output) -> list[Run]:
    first: dict[str, Run] = {}
    for run in sorted(runs, key=lambda r: r.seed):
        if out.shows(run.label, incomplete):
            first.setdefault(run.label, run)
    return [first[label] for label in model_order(first)]


def attribution_section(out: Output, runs: Sequence[Run], incomplete: Mapping[str, list[str]],
                        data: str | Path | None, n_galaxies: int = attribution.N_GALAXIES) -> Written:
    """Maps for ``n_galaxies`` test galaxies (spirals first) of ``DATA/stores/test.zarr`` under each model's first
    complete seed, and each model's largest mirror error."""
    written = Written(Section("Attribution maps", doc_body(attribution)))
    test = store_path(data, "test") if data else None
    if test is None or not test.exists():
        written.section.text += "\n\nNo test store given (`--data DATA`): no maps."
        return written
    from ...crop import crop_for
    from ...data.augment import rotate_crop
    from ...data.store import open_store
    from ...layout import RUN_EXPORT
    from ...predict import load_exported

    store = open_store(test)
    rows = attribution.select_galaxies(store.rows, n_galaxies)
    margin = torch.from_numpy(ChunkReader(store)(rows))  # (n, 3, M, M) uint8
    pairs, errors = {}, []
    without_export = []
    for run in _first_seeds(runs, incomplete, out):
        if not (run.path / RUN_EXPORT).exists():  # results copied without the weights: nothing to attribute
            without_export.append(f"{run.label}/seed{run.seed}")
            continue
        module = load_exported(run.path)
        images = rotate_crop(margin, None, crop_for(module, store), field=store.field)  # the store's field
        pairs[run.label] = attribution.mirrored_pairs(module, images)
        errors.append({"model": run.label, "seed": run.seed,
                       "mirror_error": float(pairs[run.label]["mirror_error"].max())})
    if without_export:
        written.section.text += f"\n\nNo exported model ({RUN_EXPORT}) in {', '.join(without_export)}: no maps."
    if not pairs:
        return written
    ids = ", ".join(store.rows["dr8_id"].iloc[rows].astype(str)) if "dr8_id" in store.rows else ""
    written.table(out, frame_table(
        "attribution_mirror_error", "Attribution maps under a mirror",
        "Largest |map(mirror(x), P(c)) − mirror(map(x, c))| over the galaxies shown, relative to the largest "
        "attribution: ~1e-6 (float32 rounding) for an exactly chirality-equivariant model, of order 1 for one "
        "that is not.",
        pd.DataFrame(errors), {"mirror_error": ".1e"}))
    written.figure(out, figures.attribution_grid, "attribution_maps.png",
                   f"Integrated gradients (red: towards the class named, blue: against) for test galaxies {ids} and "
                   "their mirror images, first seed of each model.", pairs)
    return written
