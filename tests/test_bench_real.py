"""make bench-real end to end on the real fixture: one epoch, one pipeline model and the torchvision baseline."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "real_sample"


@pytest.mark.slow  # two tiny trainings and the store builds: ~30 s on one core
def test_bench_real_runs_the_pipeline_model_and_the_baseline_side_by_side(tmp_path):
    out = subprocess.run([sys.executable, str(REPO / "bench" / "bench_real.py"), "--sample", str(FIXTURE),
                          "--out", str(tmp_path), "--models", "gc_resnet18", "--seeds", "0", "--epochs", "1",
                          "--oversample"],
                         cwd=REPO, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    runs = pd.read_csv(tmp_path / "runs.csv")
    assert sorted(runs["model"]) == sorted(["gc_resnet18", "torchvision_resnet18"])
    assert runs["test_accuracy"].between(0, 1).all()
    assert (tmp_path / "results.md").read_text().count("gc_resnet18") >= 1
    assert (tmp_path / "learning_curves.png").stat().st_size > 0
