"""Per-galaxy class probabilities of a trained run over a store (or a row range of it).

    python -m gcnn_spin.predict --run runs/gc_resnet18/seed0 --store data/stores/test.zarr --out part.parquet [--rows A:B]

Always runs the run's exported plain-PyTorch module (``model_export.pt``); bf16 autocast on CUDA.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import cli, layout
from .crop import crop_for
from .io import write_parquet_atomic
from .runtime import autocast, pick_device

#: Columns copied from the store rows into every prediction table when present.
ID_COLUMNS = ("dr8_id", "ra", "dec")
LABEL_COLUMNS = ("p_cw", "p_acw", "p_other")


def load_exported(run_dir: str | Path, device: torch.device | str = "cpu") -> torch.nn.Module:
    """The exported module of a finished run, in eval mode on ``device``."""
    path = Path(run_dir) / layout.RUN_EXPORT
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: has the run at {run_dir} finished training?")
    from .models import load_exported as load_module

    return load_module(path, map_location=device)


def parse_rows(text: str | None, n_rows: int) -> range | None:
    """``"A:B"`` (either side optional) -> ``range(A, B)`` clipped to the store; None for all rows."""
    if not text:
        return None
    start, _, stop = text.partition(":")
    first, last = int(start or 0), min(int(stop or n_rows), n_rows)
    if not 0 <= first <= last:
        raise ValueError(f"--rows {text!r} is not a valid range for a store of {n_rows} rows")
    return range(first, last)


@torch.no_grad()
def predict_probabilities(module: torch.nn.Module, store, rows: range | np.ndarray | None = None,
                          batch_size: int = 256, device: torch.device | str = "cpu", bf16: bool = True,
                          progress: bool = True, desc: str = "predict",
                          timings: dict[str, float] | None = None) -> pd.DataFrame:
    """Softmax probabilities ``(N, 3)`` for the store ``rows`` (a range or an array; default all; centre crop, no
    augmentation) as a DataFrame.

    Columns: ``row`` and the store's id columns, the labels when the store has them (``p_cw_true`` …), and the
    predicted ``p_cw, p_acw, p_other``. ``timings``, when given, accumulates seconds spent waiting for data
    (``read``: store read, decompression, crop) and in the model (``compute``).
    """
    from .data.loader import StoreLoader
    from .data.store import open_store

    device = torch.device(device)
    store = open_store(store) if isinstance(store, (str, Path)) else store
    loader = StoreLoader(store, batch_size=batch_size, shuffle=False, seed=0, image_size=crop_for(module, store),
                         rotate=False, device=device, rows=None if rows is None else np.asarray(rows))
    out_rows, out_probs = [], []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        total = len(rows) if rows is not None else int(np.asarray(store.ok).sum())
        bar = tqdm(total=total, desc=desc, unit="img",
                   dynamic_ncols=True, file=sys.stderr)
    timings = {} if timings is None else timings
    tick = time.perf_counter()
    for batch in loader:
        tock = time.perf_counter()
        timings["read"] = timings.get("read", 0.0) + tock - tick
        with autocast(device, bf16):
            logits = module(batch.images)
        out_probs.append(torch.softmax(logits.float(), dim=-1).cpu().numpy())
        out_rows.append(batch.rows.cpu().numpy())
        tick = time.perf_counter()
        timings["compute"] = timings.get("compute", 0.0) + tick - tock
        if bar is not None:
            bar.update(len(batch.rows))
    if bar is not None:
        bar.close()
    row_index = np.concatenate(out_rows) if out_rows else np.zeros(0, dtype=np.int64)
    probs = np.concatenate(out_probs) if out_probs else np.zeros((0, 3), dtype=np.float32)
    meta = store.rows.iloc[row_index]
    table = pd.DataFrame({"row": row_index})
    for column in ID_COLUMNS:
        if column in meta:
            table[column] = meta[column].to_numpy()
    for column in LABEL_COLUMNS:
        if column in meta and meta[column].notna().any():
            table[f"{column}_true"] = meta[column].to_numpy(dtype=np.float32)
    table["p_cw"], table["p_acw"], table["p_other"] = probs[:, 0], probs[:, 1], probs[:, 2]
    return table.sort_values("row", kind="stable").reset_index(drop=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gcnn_spin.predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="finished run folder (holds model_export.pt)")
    parser.add_argument("--store", required=True, help="a Zarr store folder, e.g. data/stores/test.zarr")
    parser.add_argument("--out", required=True, help="output parquet path")
    parser.add_argument("--rows", default=None, help="row range A:B of the store (default: all)")
    cli.add_batch_size(parser, 256)
    cli.add_device(parser)
    cli.add_quiet(parser)
    cli.add_debug(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .data.store import open_store

    args = build_parser().parse_args(argv)
    device = pick_device(args.device)
    store = open_store(args.store)
    module = load_exported(args.run, device)
    table = predict_probabilities(module, store, parse_rows(args.rows, len(store)), args.batch_size, device,
                                  progress=not args.quiet)
    write_parquet_atomic(table, args.out)
    print(f"{args.out}: {len(table)} galaxies")
    return 0


if __name__ == "__main__":
    from gcnn_spin.errors import run_command

    run_command(main)
