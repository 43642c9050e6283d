"""Rotation study: whole MC-dropout passes against head-only passes, side by side in one run.

    python bench/bench_rotation.py [--models resnet18 g_resnet18 ...] [--n-images 16] [--image-size 65]
    python bench/bench_rotation.py --image-size 161 --width fixparams --base-width 64   # the study's models

Each model (untrained, exported as a finished run's ``model_export.pt``) runs ``rotation.rotation_table`` on the
same in-memory margin images twice per round: 10 whole passes per angle (``head_only=False``, what the study did)
and one backbone pass per angle with 10 head passes (``head_only=True``). Rounds alternate the two, the best of
``--rounds`` counts. Printed: seconds per image each way, the speed-up, and the largest η difference between the
two (same seed, so the same dropout masks: ~0).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import torch

from gcnn_spin import models
from gcnn_spin.analysis import rotation
from gcnn_spin.crop import crop_for
from gcnn_spin.data.images import margin_size


class MemoryStore:
    """What the rotation study reads from a labelled store, held in memory (random margin images)."""

    def __init__(self, n_images: int, image_size: int, seed: int = 0):
        side = margin_size(image_size)
        self.images = np.random.default_rng(seed).integers(0, 256, (n_images, 3, side, side), dtype=np.uint8)
        self.image_size = image_size
        self.attrs = {"image_size": image_size, "margin_size": side, "margin": True, "chunk_images": 32}
        self.rows = pd.DataFrame({"dr8_id": [f"1_{i}" for i in range(n_images)], "ok": True})

    def __len__(self) -> int:
        return len(self.images)

    def read_block(self, start: int, stop: int) -> np.ndarray:
        return self.images[start:stop]


def time_study(module, store, head_only: bool, batch_images: int) -> tuple[float, pd.DataFrame]:
    start = time.perf_counter()
    table = rotation.rotation_table(module, store, np.arange(len(store)), batch_images=batch_images, seed=0,
                                    progress=False, head_only=head_only)
    return time.perf_counter() - start, table


def bench(names: list[str], n_images: int, image_size: int, rounds: int, batch_images: int,
          options: dict) -> pd.DataFrame:
    store = MemoryStore(n_images, image_size)
    rows = []
    for name in names:
        accepted = {k: v for k, v in options.items() if k in models.options(name)}
        torch.manual_seed(0)
        module = models.export(models.build(name, image_size=crop_for(name, store), **accepted))
        best = {False: float("inf"), True: float("inf")}
        tables = {}
        for _ in range(rounds):
            for head_only in (False, True):
                seconds, tables[head_only] = time_study(module, store, head_only, batch_images)
                best[head_only] = min(best[head_only], seconds)
        eta_diff = max(float(np.abs(tables[True][k] - tables[False][k]).max()) for k in rotation.PAIRS)
        rows.append({"model": name, "whole_s_per_image": best[False] / n_images,
                     "head_only_s_per_image": best[True] / n_images, "speedup": best[False] / best[True],
                     "max_eta_difference": eta_diff})
        print(f"{name:16s} whole {rows[-1]['whole_s_per_image']:.3f} s/img  head-only "
              f"{rows[-1]['head_only_s_per_image']:.3f} s/img  x{rows[-1]['speedup']:.1f}  "
              f"max |Δη| {eta_diff:.1e}", flush=True)
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/bench_rotation.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["lenet", "resnet18", "g_resnet18", "g_resnet18_c"],
                        help="models to time (default: lenet resnet18 g_resnet18 g_resnet18_c)")
    parser.add_argument("--n-images", type=int, default=8, help="test images per study (default: 8)")
    parser.add_argument("--image-size", type=int, default=65, help="store image side S (default: 65, the demo's)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; the best counts (default: 2)")
    parser.add_argument("--batch-images", type=int, default=8, help="images per batch (default: 8)")
    parser.add_argument("--base-width", type=int, default=32, help="ResNet stem channels (default: 32, the demo's)")
    parser.add_argument("--width", default="channels", choices=("channels", "fixparams"),
                        help="G-ResNet width rule (default: channels)")
    parser.add_argument("--architecture", default="study_code", choices=("study_code", "torchvision"),
                        help="G-ResNet layout (default: study_code, the study config's)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"rotation study, {len(rotation.ANGLES_DEG)} angles x {rotation.N_PASSES} passes, {args.n_images} images "
          f"at S={args.image_size}, torch threads {torch.get_num_threads()} (timings are noisy on a shared machine)")
    table = bench(args.models, args.n_images, args.image_size, args.rounds, args.batch_images,
                  {"base_width": args.base_width, "width": args.width, "architecture": args.architecture})
    whole, head_only = table["whole_s_per_image"].sum(), table["head_only_s_per_image"].sum()
    print(f"{'all models':16s} whole {whole:.3f} s/img  head-only {head_only:.3f} s/img  x{whole / head_only:.1f}  "
          "(the study over these models)")
    return 0


if __name__ == "__main__":
    from gcnn_spin.errors import run_command

    run_command(main)
