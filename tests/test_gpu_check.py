"""bench/gpu_check.sh as a dry run on the CPU (tiny sizes): every step runs and the table gathers every figure."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("resnet18", "g_resnet18", "g_resnet18_c", "gc_resnet18")


@pytest.mark.slow  # builds, trains, exports and compiles four models: a minute or more on 2 cores
def test_gpu_check_dry_run_on_cpu_writes_one_table(tmp_path):
    out = tmp_path / "gpu_check"
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", "WIDTH_RULES": "fixparams no_such_rule"}
    done = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), "--device", "cpu", "--quick",
                           "--out", str(out)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    table = (out / "gpu_check.md").read_text()
    assert table.startswith("GPU check on CPU")
    rows = [line for line in table.splitlines() if line.startswith("| ")][1:]
    for model in MODELS:
        assert any(r.startswith(f"| train | {model} | channels | ") for r in rows), model
        assert any(r.startswith(f"| train | {model} | fixparams | ") for r in rows), model
        assert any(r.startswith(f"| survey inference (store -> parquet) | {model} | ") for r in rows), model
    assert any(r.startswith("| exported model alone | lenet |") and ("compiled" in r or "compile failed" in r)
               for r in rows)
    assert sum(r.startswith("| loader on cpu") for r in rows) == 2
    assert any(r.startswith("| train | - | no_such_rule | - |") for r in rows)  # an unknown width rule is skipped
    assert any(r.startswith("| CUDA-only tests |") for r in rows)
    assert (out / "train_channels.json").exists() and (out / "loader.json").exists()
