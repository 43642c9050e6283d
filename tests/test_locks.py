"""The two locks: requirements.lock (torch for CUDA 13) and requirements-cu12.lock (the newest torch on PyPI built
for CUDA 12, for older drivers) differ only in the torch stack, `make ... CUDA=12` picks the second, and both
resolve, pin for pin, against the index pip is configured for (marked registry: it asks the index)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LOCKS = {"13": ROOT / "requirements.lock", "12": ROOT / "requirements-cu12.lock"}
TORCH_STACK = re.compile(r"^(torch|torchvision|triton|nvidia-.*|cuda-.*)$")


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            found[re.sub(r"[-_.]+", "-", name).lower()] = version
    return found


def test_the_locks_differ_only_in_the_torch_stack():
    cu13, cu12 = pins(LOCKS["13"]), pins(LOCKS["12"])
    rest13 = {k: v for k, v in cu13.items() if not TORCH_STACK.match(k)}
    rest12 = {k: v for k, v in cu12.items() if not TORCH_STACK.match(k)}
    assert rest12 == rest13
    nvidia12 = [k for k in cu12 if k.startswith("nvidia-")]
    assert nvidia12 and all(k.endswith("-cu12") for k in nvidia12)  # CUDA 12 runtime libraries only
    assert not any(k.endswith("-cu12") for k in cu13)
    assert int(cu12["torch"].split(".")[1]) < int(cu13["torch"].split(".")[1])
    assert cu12["cuda-bindings"].startswith("12.")


@pytest.mark.parametrize("cuda, lock", [("13", "requirements.lock"), ("12", "requirements-cu12.lock")])
def test_make_picks_the_lock_with_CUDA(cuda, lock):
    dry = subprocess.run(["make", "-n", "-C", str(ROOT), "setup", "image", f"CUDA={cuda}", "VENV=/nonexistent/venv"],
                         capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    assert f"pip install -q --no-deps -r {lock}" in dry.stdout
    assert f"build_image.sh --lock {lock} --tag localhost/gcnn_spin:cuda{cuda}" in dry.stdout
    wrong = subprocess.run(["make", "-n", "-C", str(ROOT), "setup", "CUDA=11"], capture_output=True, text=True)
    assert wrong.returncode != 0 and "CUDA=11: use CUDA=13 or CUDA=12" in wrong.stderr


@pytest.mark.registry
@pytest.mark.slow
@pytest.mark.parametrize("cuda", ["13", "12"])
def test_lock_resolves_against_the_index(cuda, tmp_path):
    report = tmp_path / "report.json"
    out = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--ignore-installed",
                          "--quiet", "--report", str(report), "-r", str(LOCKS[cuda])],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    resolved = {re.sub(r"[-_.]+", "-", item["metadata"]["name"]).lower(): item["metadata"]["version"]
                for item in json.loads(report.read_text())["install"]}
    assert resolved == pins(LOCKS[cuda])
