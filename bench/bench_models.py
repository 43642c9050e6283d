"""Per-model cost: parameters, FLOPs, build time, train and inference throughput, peak memory (``make bench-models``).

First a cost table: parameters, FLOPs of one prediction (``torch.utils.flop_counter`` on the exported module, batch
1, two passes for two-pass models; a multiply-add counts 2) and build time of every model, the G-ResNets under
both width rules (``"fixparams"``, the study's, and ``"channels"``; see ``gcnn_spin.models.fields``).

Train throughput is forward + backward + AdamW step on random images with soft targets; inference compares the
escnn model in eval mode (cached filters) with its plain-PyTorch export. Every model runs one train step and one
inference batch per round, round-robin after a warm-up round, so the ratios printed at the end
(``gc_resnet18 / g_resnet18``: target <= 1.15; ``g_resnet18_c / g_resnet18``: the two-pass cost) compare models
measured side by side under the same machine load. Times are the best of ``--rounds`` (other work on a shared
machine only ever adds time); every time is kept in the ``--json`` output. Peak memory of the first train step
(activations, gradients, AdamW state): CUDA ``max_memory_allocated``; on CPU the resident-set high-water mark
above the RSS before it, after returning freed heap to the OS (Linux ``/proc/self/clear_refs``, glibc
``malloc_trim``).

The first escnn build of a kernel type in a process derives its basis (seconds); later builds reuse it, so the
build times depend on the order (models are built in registry order).

    python bench/bench_models.py                                    # CPU, S=64, batch 16 (~2 min)
    python bench/bench_models.py --device cuda --image-size 160 --bf16 --batch-size 100
    python bench/bench_models.py --models 'g_resnet18*' gc_resnet18 --rounds 5
    python bench/bench_models.py --costs-only --image-size 161          # params and FLOPs at the study's size
    python bench/bench_models.py --costs-only --image-size 160 --models '*lenet' --architecture study_code
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import re
import time
from pathlib import Path

import torch
from tqdm import tqdm

from gcnn_spin import models as M
from gcnn_spin.io import write_json_atomic
from gcnn_spin.models.export import to_program
from gcnn_spin.models.specs import WIDTH_RULES

RATIOS = (("gc_resnet18", "g_resnet18", "one-pass chiral D8 vs C8 (target <= 1.15)"),
          ("g_resnet18_c", "g_resnet18", "two-pass predict cost"),
          ("gc_resnet50", "g_resnet50", "one-pass chiral D8 vs C8"),
          ("g_resnet50_c", "g_resnet50", "two-pass predict cost"))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="*", default=[], help="names or wildcards (default: every registered model)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i] (default: cpu)")
    p.add_argument("--image-size", type=int, default=64, help="S of the (B, 3, S, S) inputs (default: 64)")
    p.add_argument("--batch-size", type=int, default=16, help="images per step (default: 16)")
    p.add_argument("--rounds", type=int, default=5, help="timed train rounds and inference repeats (default: 5)")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast for train and inference")
    p.add_argument("--channels-last", action="store_true", help="channels_last memory format (CUDA)")
    p.add_argument("--base-width", type=int, default=64, help="ResNet stem width (default: 64, torchvision's)")
    p.add_argument("--width", choices=WIDTH_RULES, default="channels",
                   help="G-ResNet width rule of the timed models (default: channels; the cost table shows both)")
    p.add_argument("--architecture", choices=("study_code",),
                   help="build the models that take it as the study's code did (default: each model's own layout)")
    p.add_argument("--costs-only", action="store_true", help="print the parameter/FLOP table only, no timing")
    p.add_argument("--program", action="store_true", help="also time the torch.export program of each model")
    p.add_argument("--json", type=Path, help="also write the results here as JSON")
    return p.parse_args(argv)


def build_options(name: str, args: argparse.Namespace, width: str | None = None) -> dict:
    """The build options ``name`` accepts among ``--base-width``, ``--architecture`` and the width rule."""
    accepted = M.options(name)
    opts = {"base_width": args.base_width} if "base_width" in accepted else {}
    if args.architecture and "architecture" in accepted:
        opts["architecture"] = args.architecture
    if "width" in accepted:
        opts["width"] = width or args.width
    return opts


def count_flops(module: torch.nn.Module, image_size: int) -> int:
    """FLOPs of one ``(1, 3, S, S)`` prediction of ``module`` (eval mode)."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, 3, image_size, image_size)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module.eval()(x)
    return counter.get_total_flops()


def cost_rows(selected: list[str], args: argparse.Namespace) -> list[dict]:
    """Parameters, FLOPs per prediction and build time of each model, per width rule where it has one (CPU)."""
    rows = []
    for name in tqdm(selected, desc="params and FLOPs", unit="model"):
        widths = WIDTH_RULES if "width" in M.options(name) else (None,)
        for width in widths:
            t0 = time.perf_counter()
            model = M.build(name, image_size=args.image_size, **build_options(name, args, width))
            build_s = time.perf_counter() - t0
            rows.append({"model": name, "width": width or "-", "params": sum(p.numel() for p in model.parameters()),
                         "gflops": count_flops(M.export(model), args.image_size) / 1e9, "build_s": build_s})
    return rows


def _plain_twin(name: str) -> str | None:
    """The plain ResNet a ResNet-family model is compared with (None for LeNets)."""
    s = M.spec(name)
    if s.family != "resnet":
        return None
    return "resnet50" if s.block == "bottleneck" else "resnet18"


def cost_table(rows: list[dict], args: argparse.Namespace) -> str:
    plain = {r["model"]: r for r in rows if r["width"] == "-"}
    layout = f", architecture {args.architecture}" if args.architecture else ""
    lines = [f"Cost per prediction at S={args.image_size}, base width {args.base_width}{layout} (CPU build times)",
             "| model | width | params | GFLOPs | params / plain | GFLOPs / plain | build s |", "|" + "---|" * 7]
    for r in rows:
        ref = plain.get(_plain_twin(r["model"]))
        ratios_ = [f"{r[key] / ref[key]:.2f}" if ref else "-" for key in ("params", "gflops")]
        lines.append(f"| {r['model']} | {r['width']} | {r['params'] / 1e6:.2f} M | {r['gflops']:.2f} | "
                     f"{ratios_[0]} | {ratios_[1]} | {r['build_s']:.1f} |")
    return "\n".join(lines)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rss_kib(field: str) -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"{field}:\s+(\d+)", text).group(1))


def _release_freed_memory() -> None:
    """Hand freed heap pages back to the OS so that RSS measures the next model, not the previous ones."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


@contextlib.contextmanager
def peak_memory(device: torch.device, out: dict):
    """Record the peak MiB of the enclosed work in ``out["peak_mb"]`` (None where it cannot be measured)."""
    _release_freed_memory()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        yield
        out["peak_mb"] = (torch.cuda.max_memory_allocated(device) - before) / 2**20
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark (Linux)
        before = _rss_kib("VmRSS")
    except OSError:
        before = None
    yield
    out["peak_mb"] = None if before is None else (_rss_kib("VmHWM") - before) / 1024


class Bench:
    """One model, its export, optimiser and a fixed random batch; each method times one step in seconds."""

    def __init__(self, name: str, args: argparse.Namespace, device: torch.device):
        self.name, self.device, self.args = name, device, args
        t0 = time.perf_counter()
        self.model = M.build(name, image_size=args.image_size, **build_options(name, args)).to(device)
        _sync(device)
        self.build_s = time.perf_counter() - t0
        if args.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        g = torch.Generator().manual_seed(0)
        size, batch = args.image_size, args.batch_size
        self.x = torch.rand(batch, 3, size, size, generator=g).to(device)
        self.y = torch.softmax(torch.randn(batch, 3, generator=g), dim=1).to(device)
        if args.channels_last:
            self.x = self.x.contiguous(memory_format=torch.channels_last)
        self.exported: torch.nn.Module | None = None
        self.export_s = float("nan")
        self.times: dict[str, list[float]] = {"train": [], "infer": [], "infer_export": [], "infer_program": []}

    def autocast(self):
        if not self.args.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def export(self) -> None:
        t0 = time.perf_counter()
        self.exported = M.export(self.model)
        self.export_s = time.perf_counter() - t0
        if self.args.program:
            self.program = to_program(self.exported, self.args.image_size).module()

    def train_step(self) -> float:
        self.model.train()
        _sync(self.device)
        t0 = time.perf_counter()
        with self.autocast():
            loss = torch.nn.functional.cross_entropy(self.model(self.x).float(), self.y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        _sync(self.device)
        return time.perf_counter() - t0

    def infer_step(self, module: torch.nn.Module, switch_mode: bool = True) -> float:
        if switch_mode:  # escnn expands and caches its filters here, outside the timing
            module.eval()
        with torch.inference_mode(), self.autocast():
            _sync(self.device)
            t0 = time.perf_counter()
            module(self.x)
            _sync(self.device)
        return time.perf_counter() - t0

    def round(self, record: bool) -> None:
        """One train step and one inference batch of the model, its export (and program)."""
        steps = {"train": self.train_step, "infer": lambda: self.infer_step(self.model),
                 "infer_export": lambda: self.infer_step(self.exported)}
        if self.args.program:
            steps["infer_program"] = lambda: self.infer_step(self.program, switch_mode=False)  # eval graph
        for key, step in steps.items():
            seconds = step()
            if record:
                self.times[key].append(seconds)


def select(args: argparse.Namespace) -> list[str]:
    selected = M.names(args.models) if args.models else M.names()
    if not selected:
        raise SystemExit(f"no model matches {args.models}; valid names: {', '.join(M.names())}")
    return selected


def run(args: argparse.Namespace) -> list[dict]:
    device = torch.device(args.device)
    selected = select(args)
    benches, rows = [], []
    for name in tqdm(selected, desc="build, export, memory", unit="model"):
        bench = Bench(name, args, device)
        row = {"model": name, "group": M.spec(name).group or "-",
               "params": sum(p.numel() for p in bench.model.parameters()), "build_s": bench.build_s}
        with peak_memory(device, row):
            bench.train_step()  # first step: allocates activations, gradients and AdamW state
        bench.export()
        row["export_s"] = bench.export_s
        benches.append(bench)
        rows.append(row)
    # Round-robin: every model runs once per round, so all see the same machine load; round 0 is a warm-up.
    for i in tqdm(range(args.rounds + 1), desc="timed rounds (round-robin)", unit="round"):
        for bench in benches:
            bench.round(record=i > 0)
    for bench, row in zip(benches, rows):
        row["times_s"] = bench.times
        row["train_step_s"] = min(bench.times["train"])
        row["train_img_s"] = args.batch_size / row["train_step_s"]
        for key in ("infer", "infer_export", "infer_program"):
            if bench.times[key]:
                row[f"{key}_img_s"] = args.batch_size / min(bench.times[key])
    return rows


def ratios(rows: list[dict]) -> list[dict]:
    by_name = {r["model"]: r for r in rows}
    return [{"pair": f"{a} / {b}", "what": what, "train_time_ratio": by_name[a]["train_step_s"] /
             by_name[b]["train_step_s"]} for a, b, what in RATIOS if a in by_name and b in by_name]


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(rows: list[dict], args: argparse.Namespace) -> str:
    head = ("model", "group", "params", "build s", "train img/s", "infer img/s", "export img/s", "peak MB")
    lines = [f"S={args.image_size}, batch {args.batch_size}, device {args.device}, G-ResNet width {args.width}"
             f"{', bf16' if args.bf16 else ''}, torch threads {torch.get_num_threads()}, best of {args.rounds}",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join([
            r["model"], r["group"], f"{r['params'] / 1e6:.2f} M", f"{r['build_s']:.1f}", f"{r['train_img_s']:.1f}",
            f"{r['infer_img_s']:.1f}", f"{r['infer_export_img_s']:.1f}", _fmt(r.get("peak_mb"), ".0f")]) + " |")
    if args.program:
        lines.append("torch.export program img/s: " + ", ".join(
            f"{r['model']} {r['infer_program_img_s']:.1f}" for r in rows))
    for q in ratios(rows):
        lines.append(f"{q['pair']}: {q['train_time_ratio']:.2f}x train time ({q['what']})")
    return "\n".join(lines)


def main(argv=None) -> None:
    args = parse_args(argv)
    costs = cost_rows(select(args), args)
    print(cost_table(costs, args))
    rows = [] if args.costs_only else run(args)
    if rows:
        print(table(rows, args))
    if args.json:
        write_json_atomic(args.json, {"args": vars(args), "costs": costs, "rows": rows, "ratios": ratios(rows)})


if __name__ == "__main__":
    main()
