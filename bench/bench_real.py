"""Do the models learn spin on real pixels? A multi-seed benchmark on a real Galaxy Zoo 1 sample (``make bench-real``).

The sample folder (GZ1 table-2 rows, ``gz1_to_dr8.csv``, ``jpg/``) goes through the normal pipeline
(``gcnn_spin.data.real_sample.prepare_raw`` -> ``build_dataset``; no downsampling, a fixed seeded 80/20 test split,
then 80/20 train/val), and each model is trained and evaluated through the normal path (``gcnn_spin.train``, whose
evaluation runs ``gcnn_spin.predict`` on the test store). Beside them, an **independent plain-PyTorch baseline**:
torchvision's ResNet18 (untrained, width 64), the same rows, epochs, batch size and optimiser settings, its images
read straight from the JPEGs with PIL, rotated at full resolution (424 px, bilinear), then resized to ``S``
(antialiased); it shares only the crop geometry (``crop_field``) with the pipeline.

``--oversample K ...`` also trains ``--oversample-models`` from train stores kept at ``K`` x the margin size
(``data.train_oversample``: rotate before downsampling); their runs are named ``{model}@os{K}``.

Writes into ``--out``: ``runs.csv`` (one row per run), ``results.md`` (mean ± std over seeds: test accuracy,
CW<->ACW confusions, seeds where every true spiral got one spin), ``learning_curves.png`` (val accuracy per epoch)
and ``sharpness.csv`` (high-frequency energy kept by a rotated training image, per oversampling and angle).
A rerun reuses finished runs.

    python bench/bench_real.py --sample ../shared/real_sample --out bench_out/real
    python bench/bench_real.py --sample DIR --seeds 0 1 2 3 4 --epochs 12 --oversample 2 3 --oversample-models resnet18
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image

from gcnn_spin.config import load_experiment, to_dict
from gcnn_spin.conventions import ACW, CLASSES, CW, OTHER, soft_targets
from gcnn_spin.data.images import crop_field, decode_jpeg, jpg_relpath
from gcnn_spin.data.pipeline import build_dataset
from gcnn_spin.data.real_sample import prepare_raw, real_sample_inputs
from gcnn_spin.data.sharpness import high_frequency_ratio
from gcnn_spin.io import write_json_atomic, write_text_atomic
from gcnn_spin.layout import run_dir, store_rows_path
from gcnn_spin.runtime import set_cpu_threads
from gcnn_spin.train import RunSpec, train

MODELS = ("resnet18", "g_resnet18", "g_resnet18_c", "gc_resnet18")
BASELINE = "torchvision_resnet18"
SHARPNESS_ANGLES_DEG = (0, 37, 45)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sample", type=Path, required=True, help="real-sample folder (GZ1 csv, gz1_to_dr8.csv, jpg/)")
    p.add_argument("--out", type=Path, default=Path("bench_out/real"), help="output folder (default: %(default)s)")
    p.add_argument("--models", nargs="*", default=list(MODELS), help="pipeline models (default: %(default)s)")
    p.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2, 3, 4], help="seeds (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=16, help="epochs for every model (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=16,
                   help="batch size for every model (default: %(default)s: 12 steps per epoch on 192 galaxies)")
    p.add_argument("--config", default="demo", help="science config (default: the demo's, 65 px)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="further config overrides (repeatable)")
    p.add_argument("--oversample", nargs="*", type=int, default=[3], metavar="K",
                   help="also train --oversample-models from train stores oversampled K x (default: %(default)s)")
    p.add_argument("--oversample-models", nargs="*", default=["resnet18", "g_resnet18"],
                   help="pipeline models also trained at each --oversample (default: %(default)s)")
    p.add_argument("--no-baseline", dest="baseline", action="store_false", help=f"skip {BASELINE}")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: %(default)s)")
    return p.parse_args(argv)


# ----------------------------------------------------------------------------- the pipeline path


def experiment(args, oversample: int):
    """The config of every run: the chosen config, all galaxies kept, 80/20 train/val, the epochs and batch size."""
    overrides = ["data.downsample_bins=[]", "data.val_fraction=0.2", f"data.train_oversample={oversample}",
                 f"train.epochs={args.epochs}", f"train.batch_size={args.batch_size}", "train.epochs_by_model={}",
                 f"train.num_threads={args.threads}", *args.overrides]
    return load_experiment(args.config, overrides)


def pipeline_run(args, model: str, seed: int, oversample: int, data: Path, runs: Path) -> dict:
    """Train and evaluate one (model, seed) through ``gcnn_spin.train``; reused when its marker exists."""
    spec = RunSpec(model=model, seed=seed, data_dir=str(data.resolve()), experiment=experiment(args, oversample))
    out = train(spec, run_dir(runs, run_name(model, oversample), seed), progress=False)
    metrics = json.loads((out / "metrics.json").read_text())
    history = pd.read_csv(out / "history.csv")
    return {"confusion": np.array(metrics["test"]["confusion_counts"]),
            "val_accuracy": history["val_accuracy"].tolist(), "train_seconds": metrics["train_seconds"]}


def run_name(model: str, oversample: int) -> str:
    return model if oversample == 1 else f"{model}@os{oversample}"


# ----------------------------------------------------------------------------- the independent baseline


class JpegImages:
    """Decoded cutouts of ``rows`` and their model inputs, made with PIL from the JPEGs (no pipeline code)."""

    def __init__(self, sample: Path, rows: pd.DataFrame, image_size: int):
        self.cutouts = [Image.fromarray(decode_jpeg(sample / jpg_relpath(d), d)) for d in rows["dr8_id"]]
        self.targets = torch.from_numpy(soft_targets(rows["p_cw"], rows["p_acw"], rows["p_other"]))
        self.size = image_size

    def view(self, i: int, angle_deg: float | None) -> np.ndarray:
        """``(3, S, S)`` float32: rotated at full resolution (bilinear), then the central field resized to ``S``."""
        img = self.cutouts[i]
        if angle_deg is not None:
            img = img.rotate(angle_deg, resample=Image.BILINEAR)
        width = img.size[0]
        lo, hi = (width - crop_field(self.size, width)) / 2, (width + crop_field(self.size, width)) / 2
        img = img.resize((self.size, self.size), Image.BILINEAR, box=(lo, lo, hi, hi))
        return np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 255.0

    def batch(self, index: np.ndarray, angles_deg: np.ndarray | None) -> torch.Tensor:
        """``(B, 3, S, S)`` of the images ``index``, each rotated by its angle (degrees) or not at all."""
        angles = [None] * len(index) if angles_deg is None else [float(a) for a in angles_deg]
        return torch.from_numpy(np.stack([self.view(int(i), a) for i, a in zip(index, angles)]))


def _soft_ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return -(targets * F.log_softmax(logits, dim=-1)).sum(-1).mean()


@torch.no_grad()
def _predict(model: torch.nn.Module, images: JpegImages, batch_size: int) -> np.ndarray:
    model.eval()
    index = np.arange(len(images.cutouts))
    return np.concatenate([model(images.batch(index[i:i + batch_size], None)).argmax(-1).numpy()
                           for i in range(0, len(index), batch_size)])


def baseline_run(args, seed: int, data: Path, cache: dict) -> dict:
    """torchvision ResNet18 trained on the pipeline's train rows with full-resolution rotations.

    Its result is kept in ``OUT/runs/torchvision_resnet18/seed{k}.json`` and reused for the same settings.
    """
    cfg = experiment(args, 1).train
    saved = run_dir(args.out / "runs", BASELINE, seed).with_suffix(".json")
    settings = {"train": to_dict(cfg), "sample": str(args.sample.resolve())}
    if saved.exists() and json.loads(saved.read_text())["settings"] == settings:
        result = json.loads(saved.read_text())
        return {**result, "confusion": np.array(result["confusion"])}
    result = _train_baseline(args, cfg, seed, data, cache)
    write_json_atomic(saved, {**result, "confusion": result["confusion"].tolist(), "settings": settings})
    return result


def _train_baseline(args, cfg, seed: int, data: Path, cache: dict) -> dict:
    import torchvision

    if "images" not in cache:
        cache["images"] = {split: JpegImages(args.sample, pd.read_parquet(store_rows_path(data, split)),
                                             experiment(args, 1).data.image_size) for split in ("train", "val", "test")}
    images = cache["images"]
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = torchvision.models.resnet18(weights=None, num_classes=len(CLASSES))
    optimiser = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.StepLR(optimiser, step_size=cfg.step_size, gamma=cfg.gamma)
    train_set, val_true = images["train"], images["val"].targets.argmax(-1).numpy()
    val_accuracy, t0 = [], time.perf_counter()
    for _ in range(args.epochs):
        model.train()
        order = rng.permutation(len(train_set.cutouts))
        angles = rng.uniform(0, 360, len(order))
        for i in range(0, len(order), cfg.batch_size):
            index = order[i:i + cfg.batch_size]
            loss = _soft_ce(model(train_set.batch(index, angles[i:i + cfg.batch_size])),
                            train_set.targets[index])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
        scheduler.step()
        val_accuracy.append(float((_predict(model, images["val"], 128) == val_true).mean()))
    seconds = time.perf_counter() - t0
    true, pred = images["test"].targets.argmax(-1).numpy(), _predict(model, images["test"], 128)
    confusion = np.zeros((3, 3), dtype=int)
    np.add.at(confusion, (true, pred), 1)
    return {"confusion": confusion, "val_accuracy": val_accuracy, "train_seconds": seconds}


# ----------------------------------------------------------------------------- summary


def run_row(name: str, seed: int, result: dict) -> dict:
    c = result["confusion"]
    spirals = c[[CW, ACW]]  # true CW and ACW rows
    called_cw, called_acw = int(spirals[:, CW].sum()), int(spirals[:, ACW].sum())
    return {"model": name, "seed": seed, "test_accuracy": float(np.trace(c) / c.sum()),
            "cw_acw_confusions": int(c[CW, ACW] + c[ACW, CW]), "spirals_called_cw": called_cw,
            "spirals_called_acw": called_acw, "one_spin": bool(min(called_cw, called_acw) == 0),
            "spirals_called_other": int(spirals[:, OTHER].sum()),
            "spin_accuracy": float(np.trace(spirals[:, [CW, ACW]]) / max(called_cw + called_acw, 1)),
            "train_seconds": round(result["train_seconds"], 1),
            "val_accuracy": json.dumps([round(v, 4) for v in result["val_accuracy"]])}


def summary_table(runs: pd.DataFrame, n_test: int, n_spirals: int) -> str:
    def spread(values, digits: int) -> str:
        return f"{values.mean():.{digits}f} ± {values.std(ddof=1) if len(values) > 1 else 0:.{digits}f}"

    lines = [f"| model | test accuracy | per seed | CW↔ACW confusions (of {n_spirals} spirals) | spin accuracy | "
             "seeds calling every spiral one spin | train s/run |", "|---|---|---|---|---|---|---|"]
    for name, group in runs.groupby("model", sort=False):
        lines.append(f"| {name} | {spread(group['test_accuracy'], 3)} | "
                     + " ".join(f"{a:.3f}" for a in group["test_accuracy"])
                     + f" | {spread(group['cw_acw_confusions'], 1)} | {spread(group['spin_accuracy'], 3)} | "
                     f"{int(group['one_spin'].sum())}/{len(group)} | {group['train_seconds'].mean():.0f} |")
    return "\n".join(lines) + (f"\n\nMean ± std over seeds; {n_test} test galaxies. Accuracy: argmax of the votes vs "
                               "argmax of the model. Spin accuracy: of the true spirals called CW or ACW, the share "
                               "called the right spin (0.5 = chance).\n")


def learning_curves(runs: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for k, (name, group) in enumerate(runs.groupby("model", sort=False)):
        curves = np.array([json.loads(v) for v in group["val_accuracy"]])
        epochs = np.arange(1, curves.shape[1] + 1)
        color = f"C{k}"
        for curve in curves:
            ax.plot(epochs, curve, color=color, alpha=0.25, lw=0.8)
        ax.plot(epochs, curves.mean(0), color=color, lw=2, label=f"{name} (mean of {len(curves)})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy")
    ax.set_title("Real GZ1 sample: validation accuracy per epoch (thin: single seeds)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def sharpness_table(sample: Path, data: Path, image_size: int, factors) -> pd.DataFrame:
    """High-frequency energy ratio (train view / full-resolution rotation) on the test images, per k and angle."""
    ids = pd.read_parquet(store_rows_path(data, "test"))["dr8_id"].head(20)
    cutouts = [decode_jpeg(sample / jpg_relpath(d), d) for d in ids]
    rows = []
    for k in factors:
        for angle in SHARPNESS_ANGLES_DEG:
            ratios = [high_frequency_ratio(c, np.radians(angle), image_size, k) for c in cutouts]
            rows.append({"oversample": k, "angle_deg": angle, "median": round(float(np.median(ratios)), 3),
                         "min": round(float(np.min(ratios)), 3), "max": round(float(np.max(ratios)), 3)})
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    set_cpu_threads(args.threads)
    out = args.out
    raw = prepare_raw(args.sample, out / "raw")["images"]
    factors = sorted({1, *args.oversample})
    data = {k: out / f"data_os{k}" for k in factors}
    for k in factors:
        build_dataset(data[k], real_sample_inputs(raw), experiment(args, k).data, stores=("train", "val", "test"),
                      progress=False)
    plan = [(m, 1) for m in args.models]
    plan += [(BASELINE, 1)] if args.baseline else []
    plan += [(m, k) for k in factors if k > 1 for m in args.oversample_models]
    rows, cache, t_start = [], {}, time.perf_counter()
    for seed in args.seeds:
        for model, k in plan:
            t0 = time.perf_counter()
            result = (baseline_run(args, seed, data[1], cache) if model == BASELINE
                      else pipeline_run(args, model, seed, k, data[k], out / "runs"))
            rows.append(run_row(run_name(model, k), seed, result))
            print(f"{run_name(model, k):>24} seed {seed}: test accuracy {rows[-1]['test_accuracy']:.3f}, "
                  f"CW<->ACW {rows[-1]['cw_acw_confusions']}, spirals called CW/ACW/Other "
                  f"{rows[-1]['spirals_called_cw']}/{rows[-1]['spirals_called_acw']}/"
                  f"{rows[-1]['spirals_called_other']} ({time.perf_counter() - t0:.0f} s)", flush=True)
    runs = pd.DataFrame(rows)
    order = {name: i for i, name in enumerate(dict.fromkeys(runs["model"]))}
    runs = runs.sort_values(["model", "seed"], key=lambda c: c.map(order) if c.name == "model" else c, kind="stable")
    runs.to_csv(out / "runs.csv", index=False)
    test = pd.read_parquet(store_rows_path(data[1], "test"))
    labels = test["label"].to_numpy()
    table = summary_table(runs, len(test), int(np.isin(labels, [CW, ACW]).sum()))
    sharp = sharpness_table(args.sample, data[1], experiment(args, 1).data.image_size, sorted({1, 2, 3, *factors}))
    sharp.to_csv(out / "sharpness.csv", index=False)
    learning_curves(runs, out / "learning_curves.png")
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    header = (f"Real sample {args.sample.name}: {len(test)} test galaxies, epochs {args.epochs}, seeds "
              f"{args.seeds}, config {args.config} {args.overrides}; {platform.node()} "
              f"{time.strftime('%Y-%m-%d %H:%M')}, {torch.get_num_threads()} thread(s), load average {load}, "
              f"{time.perf_counter() - t_start:.0f} s in all.\n\n")
    sharp_md = ("\n\nHigh-frequency energy kept (train view / full-resolution rotation, above half Nyquist; "
                "median, min, max over 20 test images):\n\n| oversample | angle | median | min | max |\n"
                "|---|---|---|---|---|\n" + "\n".join(f"| {r.oversample} | {r.angle_deg}° | {r.median} | {r.min} | "
                                                       f"{r.max} |" for r in sharp.itertuples()))
    write_text_atomic(out / "results.md", header + table + sharp_md + "\n")
    print("\n" + header + table + sharp_md)
    print(f"\nwritten: {out / 'results.md'}, {out / 'runs.csv'}, {out / 'learning_curves.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
