"""Helpers of ``bench/gpu_check.sh``: the training loader feeding a device, and one table of every figure.

    python bench/gpu_check.py loader --device cuda --image-size 161 --n-images 4096 --json OUT/loader.json
    python bench/gpu_check.py table OUT        # OUT/train_*.json, infer_*.json, loader.json -> one Markdown table

``loader`` builds a labelled (margin) store of synthetic galaxies and times ``StoreLoader`` epochs as training
reads them: shuffled, rotated and cropped on ``--device`` (uint8 blocks go to the device, rotation runs there),
and centre-cropped as evaluation reads them. The figures come from ``bench/bench_models.py`` and
``bench/bench_infer.py`` (their ``--json``); this file only adds the loader and gathers the table.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from bench_infer import SyntheticSource  # this script's folder is on sys.path
from gcnn_spin.config import DataConfig
from gcnn_spin.data.loader import StoreLoader
from gcnn_spin.data.store import build_store
from gcnn_spin.io import write_json_atomic

TARGETS = {"train gc_resnet18": 3000.0, "survey inference": 7000.0}  # img/s on one A100/H100-class GPU


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def loader_figures(device: torch.device, image_size: int, n_images: int, batch_size: int, epochs: int) -> dict:
    """img/s of the training loader (rotated on ``device``) and the evaluation loader (centre crop)."""
    rng = np.random.default_rng(0)
    p = rng.dirichlet([1, 1, 4], size=n_images)
    rows = pd.DataFrame({"dr8_id": [f"1000_{i}" for i in range(n_images)],
                         "p_cw": p[:, 0], "p_acw": p[:, 1], "p_other": p[:, 2]})
    cfg = DataConfig(image_size=image_size, chunk_images=32, shard_images=1024)
    figures = {"device": str(device), "image_size": image_size, "n_images": n_images, "batch_size": batch_size}
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "train.zarr"
        build_store(store, rows, SyntheticSource(), margin=True, cfg=cfg, progress=False)
        for key, rotate in (("train_rotated", True), ("eval_centre_crop", False)):
            loader = StoreLoader(store, batch_size=batch_size, shuffle=rotate, seed=0, rotate=rotate, device=device)
            for batch in loader:  # warm-up epoch (allocator, kernels, page cache)
                assert batch.images.device.type == device.type
            _sync(device)
            t0 = time.perf_counter()
            for epoch in range(epochs):
                loader.set_epoch(epoch)
                for _ in loader:
                    pass
            _sync(device)
            figures[f"{key}_img_s"] = epochs * n_images / (time.perf_counter() - t0)
    return figures


def _load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def table(out: Path) -> str:
    """One Markdown table of the figures under ``out`` (missing ones are listed as not measured)."""
    lines = ["| what | model | width rule | img/s | note |", "|---|---|---|---|---|"]
    for path in sorted(out.glob("train_*.json")):
        rule = path.stem.removeprefix("train_")
        data = json.loads(path.read_text())
        args = data.get("args", {})
        where = f"S={args.get('image_size')}, batch {args.get('batch_size')}{', bf16' if args.get('bf16') else ''}" \
                f"{', channels-last' if args.get('channels_last') else ''}"
        for row in data["rows"]:
            target = TARGETS.get(f"train {row['model']}")
            note = where + (f"; target >= {target:,.0f}" if target else "")
            lines.append(f"| train | {row['model']} | {rule} | {row['train_img_s']:,.0f} | {note} |")
    for path in sorted(out.glob("skipped_*.txt")):
        lines.append(f"| train | - | {path.stem.removeprefix('skipped_')} | - | {path.read_text().strip()} |")
    infer = [json.loads(path.read_text()) for path in sorted(out.glob("infer_*.json"))]
    for part in [p for data in infer for p in data.get("survey_part", [])]:
        lines.append(f"| survey inference (store -> parquet) | {part['model']} | channels | {part['img_s']:,.0f} | "
                     f"S={part['image_size']}, batch {part['batch_size']}, read "
                     f"{part['timings_s']['read'] / part['wall_s']:.0%} of the time; target >= "
                     f"{TARGETS['survey inference']:,.0f} |")
    for c in [c for data in infer for c in data.get("compile", [])]:
        rates = c["img_s"]
        note = (f"compile failed: {c['compile_error']}" if "compile_error" in c else
                f"compiled {rates['compiled']:,.0f} img/s = {c['compiled_vs_escnn']:.2f}x escnn eval, max |diff| "
                f"{c['max_abs_diff_compiled']:.1e}")
        lines.append(f"| exported model alone | {c['model']} | channels | {rates['exported']:,.0f} | "
                     f"{c['exported_vs_escnn']:.2f}x escnn eval; {note} |")
    loader = _load(out / "loader.json")
    if loader:
        for key in ("train_rotated", "eval_centre_crop"):
            lines.append(f"| loader on {loader['device']} ({key.replace('_', ' ')}) | - | - | "
                         f"{loader[f'{key}_img_s']:,.0f} | S={loader['image_size']}, batch {loader['batch_size']} |")
    tests = out / "tests.txt"
    if tests.exists():
        lines.append(f"| CUDA-only tests | - | - | - | {tests.read_text().strip().splitlines()[-1]} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    loader = sub.add_parser("loader", help="time the training and evaluation loaders on a device")
    loader.add_argument("--device", default="cuda")
    loader.add_argument("--image-size", type=int, default=161)
    loader.add_argument("--n-images", type=int, default=4096)
    loader.add_argument("--batch-size", type=int, default=256)
    loader.add_argument("--epochs", type=int, default=2)
    loader.add_argument("--json", type=Path, required=True)
    gather = sub.add_parser("table", help="gather the figures of an output folder into one table")
    gather.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    if args.command == "loader":
        figures = loader_figures(torch.device(args.device), args.image_size, args.n_images, args.batch_size,
                                 args.epochs)
        write_json_atomic(args.json, figures)
        print(json.dumps(figures))
    else:
        print(table(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
