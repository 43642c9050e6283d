"""Survey-inference throughput of one array task: store read -> exported model -> parquet part.

    python bench/bench_infer.py [--model g_resnet18] [--n-images 1024] [--image-size 65] [--device cpu]
    python bench/bench_infer.py --device cuda --image-size 161 --n-images 16384 --batch-size 1024   # on a GPU

Self-contained: renders a synthetic survey store in a temporary folder, exports an (untrained) model into a fake
finished run, then times ``gcnn_spin.cluster.infer.run_part`` over one part holding every image, and prints
img/s with the share of time spent reading (store read, decompression, crop), computing and writing, plus the
projected time for the 8.7 M-galaxy survey.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from gcnn_spin import cli, models
from gcnn_spin.cluster import infer
from gcnn_spin.config import DataConfig
from gcnn_spin.data.store import build_store
from gcnn_spin.io import write_marker
from gcnn_spin.layout import read_run_marker, store_path

SURVEY_SIZE = 8_700_000


class SyntheticSource:
    """Cutouts rendered on the fly from a small synthetic population (cycled to any number of ids)."""

    def __init__(self, n_distinct: int = 64, seed: int = 0):
        from gcnn_spin.data.synthetic import SurveyParams, build_truth
        from gcnn_spin.data.synthetic.survey import render_cutout

        params = SurveyParams(n_gz1=n_distinct, n_survey_only=0, seed=seed)
        truth = build_truth(params)[0]
        self.images = [render_cutout(truth.iloc[i], params) for i in range(min(n_distinct, len(truth)))]

    def load(self, dr8_id: str) -> np.ndarray:
        return self.images[int(dr8_id.split("_")[1]) % len(self.images)]


def make_survey_store(root: Path, n_images: int, image_size: int) -> Path:
    rows = pd.DataFrame({"dr8_id": [f"1000_{i}" for i in range(n_images)],
                         "ra": np.linspace(0, 10, n_images), "dec": np.linspace(-5, 5, n_images)})
    cfg = DataConfig(image_size=image_size, chunk_images=32, shard_images=1024)
    path = store_path(root, "survey")
    build_store(path, rows, SyntheticSource(), margin=False, cfg=cfg, progress=False)
    return path


def make_run(root: Path, model: str, image_size: int) -> Path:
    run = root / "runs" / model / "seed0"
    run.mkdir(parents=True)
    exported = models.export(models.build(model, image_size=image_size).eval())
    models.save_exported(exported, run / "model_export.pt")
    write_marker(run, {"bench": model}, model=model, seed=0)
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="g_resnet18", help="model to time (default: g_resnet18)")
    parser.add_argument("--n-images", type=int, default=1024, help="survey images in the part (default: 1024)")
    parser.add_argument("--image-size", type=int, default=65, help="image side S (default: 65)")
    cli.add_batch_size(parser, 256)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        store = make_survey_store(root, args.n_images, args.image_size)
        build_s = time.perf_counter() - t0
        run = make_run(root, args.model, args.image_size)
        runs = [read_run_marker(run)]
        # warm-up on a throwaway output (allocator, kernels), then the timed pass
        infer.run_part(0, store, runs, root / "warmup", max_array_size=1, batch_size=args.batch_size,
                       device=args.device, progress=False)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        summary = infer.run_part(0, store, runs, root / "pred", max_array_size=1, batch_size=args.batch_size,
                                 device=args.device, progress=False)
        wall = time.perf_counter() - t0
    timings = summary["timings"]
    n = summary["n_images"]
    rate = n / wall
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu"
    print(f"bench-infer: {args.model}, S={args.image_size}, batch {args.batch_size}, {n} images, device {device}, "
          f"torch threads {torch.get_num_threads()}")
    print(f"  store build (not timed below): {build_s:.1f} s")
    print(f"  {'stage':10} {'seconds':>8} {'share':>6}")
    for key in ("read", "compute", "write"):
        print(f"  {key:10} {timings[key]:8.2f} {timings[key] / wall:6.1%}")
    print(f"  {'total':10} {wall:8.2f}")
    print(f"  throughput: {rate:,.0f} img/s -> {SURVEY_SIZE / rate / 60:,.0f} min for 8.7 M galaxies on one such task")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
