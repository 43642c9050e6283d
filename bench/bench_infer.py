"""Survey-inference throughput of one array task: store read -> exported model -> parquet part.

    python bench/bench_infer.py [--model g_resnet18 ...] [--n-images 1024] [--image-size 65] [--device cpu]
    python bench/bench_infer.py --device cuda --image-size 161 --n-images 16384 --batch-size 1024   # on a GPU
    python bench/bench_infer.py --compile        # also: escnn eval vs exported vs torch.compile(exported)

Self-contained: renders a synthetic survey store in a temporary folder, exports an (untrained) model into a fake
finished run, then times ``gcnn_spin.cluster.infer.run_part`` over one part holding every image, and prints
img/s with the share of time spent reading (store read, decompression, crop), computing and writing, plus the
projected time for the 8.7 M-galaxy survey.

``--compile`` then times the model alone on one batch, round-robin (best of ``--rounds``): the escnn model in
eval mode, its plain-PyTorch export and ``torch.compile`` of the export (inductor; on the CPU it needs a C++
compiler), and prints the throughput ratios and the largest logit difference of each against the export. A
compile that fails is reported with its error and left out; the rest of the table stands.
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
from gcnn_spin.io import write_json_atomic, write_marker
from gcnn_spin.layout import store_path
from gcnn_spin.run import finished_run
from gcnn_spin.runtime import autocast

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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def compile_comparison(name: str, image_size: int, batch_size: int, device: torch.device, rounds: int) -> dict:
    """img/s of the escnn model (eval), its export and ``torch.compile(export)`` on one batch; logit differences.

    Under bf16 autocast on CUDA, float32 on the CPU (the settings survey inference runs with).
    """
    torch.manual_seed(0)
    model = models.build(name, image_size=image_size).to(device).eval()
    exported = models.export(model).to(device).eval()
    x = torch.rand(batch_size, 3, image_size, image_size, generator=torch.Generator().manual_seed(0)).to(device)
    modules = {"escnn eval": model, "exported": exported}
    result = {"model": name, "image_size": image_size, "batch_size": batch_size, "device": str(device)}
    with torch.no_grad(), autocast(device):
        reference = exported(x).float()
        result["max_abs_diff_escnn"] = float((model(x).float() - reference).abs().max())
        try:
            compiled = torch.compile(exported)
            t0 = time.perf_counter()
            logits = compiled(x).float()  # the first call compiles
            _sync(device)
            result["compile_s"] = time.perf_counter() - t0
            result["max_abs_diff_compiled"] = float((logits - reference).abs().max())
            modules["compiled"] = compiled
        except Exception as err:  # inductor raises many types (no compiler, unsupported op, ...)
            first_line = (str(err).strip().splitlines() or [""])[0]
            result["compile_error"] = f"{type(err).__name__}: {first_line}"[:500]
        times: dict[str, list[float]] = {key: [] for key in modules}
        for i in range(rounds + 1):  # round-robin, so every variant sees the same machine load; round 0 warms up
            for key, module in modules.items():
                _sync(device)
                t0 = time.perf_counter()
                module(x)
                _sync(device)
                if i:
                    times[key].append(time.perf_counter() - t0)
    result["img_s"] = {key: batch_size / min(t) for key, t in times.items()}
    rate = result["img_s"]
    result["exported_vs_escnn"] = rate["exported"] / rate["escnn eval"]
    if "compiled" in rate:
        result["compiled_vs_escnn"] = rate["compiled"] / rate["escnn eval"]
        result["compiled_vs_exported"] = rate["compiled"] / rate["exported"]
    return result


def print_comparison(r: dict) -> None:
    print(f"compile: {r['model']}, S={r['image_size']}, batch {r['batch_size']}, device {r['device']}, "
          f"torch {torch.__version__}")
    for key, rate in r["img_s"].items():
        print(f"  {key:11} {rate:9,.0f} img/s")
    print(f"  exported / escnn eval: {r['exported_vs_escnn']:.2f}x, max |logit difference| "
          f"{r['max_abs_diff_escnn']:.1e}")
    if "compile_error" in r:
        print(f"  torch.compile failed, left out: {r['compile_error']}")
    else:
        print(f"  compiled / escnn eval: {r['compiled_vs_escnn']:.2f}x, compiled / exported: "
              f"{r['compiled_vs_exported']:.2f}x, max |logit difference| vs exported {r['max_abs_diff_compiled']:.1e} "
              f"(compile {r['compile_s']:.0f} s)")


def survey_part(args: argparse.Namespace) -> list[dict]:
    """Time one inference part per model over one synthetic survey store; print the breakdowns; return figures."""
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu"
    figures = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        store = make_survey_store(root, args.n_images, args.image_size)
        print(f"bench-infer: store of {args.n_images} images built in {time.perf_counter() - t0:.1f} s (not timed)")
        for name in args.model:
            runs = [finished_run(make_run(root, name, args.image_size))]
            # warm-up on a throwaway output (allocator, kernels), then the timed pass
            infer.run_part(0, store, runs, root / "warmup" / name, max_array_size=1, batch_size=args.batch_size,
                           device=args.device, progress=False)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            summary = infer.run_part(0, store, runs, root / "pred" / name, max_array_size=1,
                                     batch_size=args.batch_size, device=args.device, progress=False)
            wall = time.perf_counter() - t0
            timings, n = summary["timings"], summary["n_images"]
            rate = n / wall
            print(f"bench-infer: {name}, S={args.image_size}, batch {args.batch_size}, {n} images, device {device}, "
                  f"torch threads {torch.get_num_threads()}")
            print(f"  {'stage':10} {'seconds':>8} {'share':>6}")
            for key in ("read", "compute", "write"):
                print(f"  {key:10} {timings[key]:8.2f} {timings[key] / wall:6.1%}")
            print(f"  {'total':10} {wall:8.2f}")
            print(f"  throughput: {rate:,.0f} img/s -> {SURVEY_SIZE / rate / 60:,.0f} min for 8.7 M galaxies on one "
                  f"such task")
            figures.append({"model": name, "image_size": args.image_size, "batch_size": args.batch_size,
                            "device": device, "n_images": n, "wall_s": wall, "img_s": rate, "timings_s": timings})
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", nargs="+", default=["g_resnet18"], help="one or more models (one store)")
    parser.add_argument("--n-images", type=int, default=1024, help="survey images in the part (default: 1024)")
    parser.add_argument("--image-size", type=int, default=65, help="image side S (default: 65)")
    cli.add_batch_size(parser, 256)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--compile", action="store_true",
                        help="also compare escnn eval, the export and torch.compile of the export on one batch")
    parser.add_argument("--compile-only", action="store_true", help="only that comparison (no store, no parquet)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds of the comparison (default: 5)")
    parser.add_argument("--json", type=Path, help="also write the figures here as JSON")
    args = parser.parse_args(argv)
    figures = {"args": {k: str(v) for k, v in vars(args).items()}}
    if not args.compile_only:
        figures["survey_part"] = survey_part(args)
    if args.compile or args.compile_only:
        figures["compile"] = [compile_comparison(name, args.image_size, args.batch_size, torch.device(args.device),
                                                 args.rounds) for name in args.model]
        for comparison in figures["compile"]:
            print_comparison(comparison)
    if args.json:
        write_json_atomic(args.json, figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
