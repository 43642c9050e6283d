"""The cluster route inside the image: on the one-node SLURM cluster, `make submit-train` (one model, one seed) and
`make submit-infer` (one part) run in the OCI image through the podman runtime, with every folder outside the
working tree, and their outputs equal those of the same tasks run without the container.

Needs the cluster (jobs/local_cluster/start.sh) and the image (`make image`); skipped, saying which is missing,
without them, and failed instead when GCNN_SPIN_REQUIRE_IMAGE=1 (CI builds the image first).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

import slurm_utils as su
from conftest import TINY_OVERRIDES
from gcnn_spin import layout
from gcnn_spin.cluster import arrays
from gcnn_spin.run import finished_run

pytestmark = [pytest.mark.slurm, pytest.mark.container, pytest.mark.slow]
slurm_cluster = su.slurm_cluster
ROOT = Path(__file__).resolve().parents[1]
PODMAN = ROOT / "containers" / "podman.sh"
IMAGE = os.environ.get("GCNN_SPIN_TEST_IMAGE", "localhost/gcnn_spin:cuda13")
REQUIRE_IMAGE_ENV = "GCNN_SPIN_REQUIRE_IMAGE"
MODEL = "resnet18"
# One survey part: shards larger than the tiny survey.
SETTINGS = [*TINY_OVERRIDES, "train.epochs=1", "data.shard_images=4096"]


@pytest.fixture(scope="module")
def image() -> str:
    reason = None
    if shutil.which("podman") is None:
        reason = "podman is not installed"
    elif subprocess.run([str(PODMAN), "image", "exists", IMAGE], capture_output=True).returncode != 0:
        reason = f"no image {IMAGE} (build it with `make image`)"
    if reason:
        if os.environ.get(REQUIRE_IMAGE_ENV) == "1":
            pytest.fail(f"{REQUIRE_IMAGE_ENV}=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    return IMAGE


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    from gcnn_spin.config import load_experiment
    from gcnn_spin.data.pipeline import Inputs, build_dataset
    from gcnn_spin.data.synthetic import generate_survey

    root = tmp_path_factory.mktemp("container_cluster")
    paths = generate_survey(root / "raw", n_gz1=300, n_survey_only=100, seed=2, swise_bias=0.1, progress=False)
    inputs = Inputs(gz1=paths["gz1"], desi_index=paths["desi_index"], images=paths["jpg_root"],
                    sdss_photometry=paths["sdss_photometry"])
    build_dataset(root / "data", inputs, load_experiment("demo", SETTINGS).data, progress=False)
    return root / "data"


def make(target: str, *variables: str) -> None:
    """``make TARGET`` with this interpreter's venv, never reinstalling it (``-o`` marks the stamp up to date)."""
    venv = Path(sys.executable).parents[1]
    stamp = venv / ".installed"
    env = dict(os.environ, PYTHONPATH=str(ROOT))  # the host's tasks import this tree, as the image holds it
    out = subprocess.run(["make", "-s", "-C", str(ROOT), "-o", str(stamp), f"VENV={venv}", f"STAMP={stamp}", target,
                          "CLUSTER=ci", *variables], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr


def wait_done(logs: Path, timeout_s: float = 900) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        states = {s.task_id: s for s in arrays.status(logs)}
        if all(s.state in ("done", "failed") for s in states.values()):
            failed = {tid: s.log for tid, s in states.items() if s.state != "done"}
            assert not failed, {tid: Path(log).read_text()[-3000:] if log else None for tid, log in failed.items()}
            return
        time.sleep(2)
    pytest.fail(f"tasks in {logs} did not finish within {timeout_s:.0f} s")


def train_and_infer(dataset: Path, out: Path, container: list[str]) -> tuple[Path, Path]:
    """`make submit-train` then `make submit-infer` into ``out``; the run folder and the part file."""
    runs, pred, logs = out / "runs", out / "predictions", out / "logs"
    cluster_args = [f"CLUSTER_ARGS={' '.join(container)}"] if container else []
    make("submit-train", f"DATA={dataset}", f"RUNS={runs}", f"LOGS={logs}", f"MODELS={MODEL}", "SEEDS=0",
         f"SET={' '.join(SETTINGS)}", *cluster_args)
    wait_done(logs / "train")
    make("submit-infer", f"STORE={layout.store_path(dataset, 'survey')}", f"RUNS={runs}", f"PRED={pred}",
         f"LOGS={logs}", *cluster_args)
    wait_done(logs / "infer")
    parts = sorted(pred.rglob("part-*.parquet"))
    assert parts == [layout.part_path(pred, MODEL, 0, 0)]
    return layout.run_dir(runs, MODEL, 0), parts[0]


def test_train_and_infer_run_in_the_image_and_match_the_host(slurm_cluster, image, dataset, tmp_path):
    container = [f"container_image={image}", "container_runtime=podman", f"container_command={PODMAN}"]
    run_c, part_c = train_and_infer(dataset, tmp_path / "in_image", container)
    run_h, part_h = train_and_infer(dataset, tmp_path / "on_host", [])
    for stage in ("train", "infer"):  # the sbatch scripts start the tasks in the image, the host's do not
        assert "run --rm --read-only" in "".join(
            p.read_text() for p in (tmp_path / "in_image" / "logs" / stage).glob("*submission.sh"))
        assert "run --rm" not in "".join(
            p.read_text() for p in (tmp_path / "on_host" / "logs" / stage).glob("*submission.sh"))
    # In the image, the task's host name is the container's and its Python the image's.
    marker_c, marker_h = (finished_run(run).marker["provenance"] for run in (run_c, run_h))
    assert marker_h["host"] == socket.gethostname() != marker_c["host"]
    weights_c = torch.load(run_c / "checkpoint.pt", map_location="cpu", weights_only=False)["model"]
    weights_h = torch.load(run_h / "checkpoint.pt", map_location="cpu", weights_only=False)["model"]
    assert weights_c.keys() == weights_h.keys()
    assert all(torch.equal(weights_c[k], weights_h[k]) for k in weights_c)
    pd.testing.assert_frame_equal(pd.read_parquet(run_c / "test_predictions.parquet"),
                                  pd.read_parquet(run_h / "test_predictions.parquet"))
    pd.testing.assert_frame_equal(pd.read_parquet(part_c), pd.read_parquet(part_h))
