"""Device choice: no silent CPU fallback when CUDA was asked for, explicitly or by a SLURM GPU allocation."""

from pathlib import Path

import pytest
import torch

from gcnn_spin import runtime
from gcnn_spin.runtime import DeviceError, pick_device

DRIVER_TOO_OLD = "The NVIDIA driver on your system is too old (found version 11040)."


@pytest.fixture
def broken_cuda(monkeypatch):
    """A CUDA build of torch on a node whose driver is too old for it: CUDA unavailable, init says why."""
    def init():
        raise RuntimeError(DRIVER_TOO_OLD)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "init", init)
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    monkeypatch.setattr(runtime, "DRIVER_FILE", Path("/nonexistent/nvidia/version"))
    monkeypatch.setattr(runtime.shutil, "which", lambda name: None)
    for name in ("SLURM_JOB_ID", "SLURM_JOB_GPUS", "SLURM_STEP_GPUS", "SLURM_GPUS_ON_NODE", "SLURM_GPUS",
                 "SLURM_GPUS_PER_TASK", "SLURM_GPUS_PER_NODE", "SLURM_TRES_PER_TASK", "GCNN_SPIN_ALLOW_CPU"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_asking_for_cuda_where_it_is_unusable_fails_with_the_reason(broken_cuda):
    with pytest.raises(DeviceError, match=r"--device cuda: CUDA is not usable here: The NVIDIA driver .* too old"):
        pick_device("cuda")
    with pytest.raises(DeviceError, match="--device cuda:1"):
        pick_device("cuda:1")
    assert pick_device("cpu") == torch.device("cpu")


def test_a_cpu_only_torch_build_is_named_as_the_reason(broken_cuda):
    broken_cuda.setattr(torch.version, "cuda", None)
    with pytest.raises(DeviceError, match="CPU-only build"):
        pick_device("cuda")


@pytest.mark.parametrize("variable, value", [("SLURM_JOB_GPUS", "0"), ("SLURM_GPUS_ON_NODE", "1"),
                                             ("SLURM_TRES_PER_TASK", "cpu=8,gres/gpu=1")])
def test_a_slurm_task_given_a_gpu_that_sees_none_fails_loudly(broken_cuda, variable, value):
    broken_cuda.setenv("SLURM_JOB_ID", "123")
    broken_cuda.setenv(variable, value)
    with pytest.raises(DeviceError, match=rf"allocated a GPU \({variable}={value}\) but CUDA is not usable: "
                                          r"The NVIDIA driver .* GCNN_SPIN_ALLOW_CPU=1"):
        pick_device()
    assert pick_device("cpu") == torch.device("cpu")  # an explicit CPU run is allowed
    broken_cuda.setenv("GCNN_SPIN_ALLOW_CPU", "1")
    assert pick_device() == torch.device("cpu")


def test_without_a_gpu_allocation_the_cpu_is_the_default(broken_cuda):
    assert pick_device() == torch.device("cpu")  # a laptop
    broken_cuda.setenv("SLURM_JOB_ID", "123")
    broken_cuda.setenv("SLURM_GPUS_ON_NODE", "0")  # a CPU-only SLURM task
    assert pick_device() == torch.device("cpu")


def test_a_malformed_device_name_is_a_user_error():
    with pytest.raises(DeviceError, match="--device gpu0"):
        pick_device("gpu0")


PROC_VERSION = ("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  535.183.06  Release Build  "
                "(dvs-builder@U16-I2-C03-12-4)  Wed Jun 26 06:46:23 UTC 2024\nGCC version:  gcc version 12.2.0\n")


def test_the_reason_names_the_driver_found_and_the_one_torch_needs(broken_cuda, tmp_path):
    broken_cuda.setattr(torch.version, "cuda", "13.0")
    (tmp_path / "version").write_text(PROC_VERSION)
    broken_cuda.setattr(runtime, "DRIVER_FILE", tmp_path / "version")
    with pytest.raises(DeviceError, match=r"too old .*NVIDIA driver found: 535\.183\.06; this torch .* built for "
                                          r"CUDA 13\.0, which needs driver >= 580\.65\.06 .*requirements-cu12\.lock"):
        pick_device("cuda")


def test_without_the_driver_file_nvidia_smi_is_asked(broken_cuda, tmp_path):
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 550.54.15\n")
    smi.chmod(0o755)
    broken_cuda.setattr(runtime.shutil, "which", lambda name: str(smi) if name == "nvidia-smi" else None)
    assert runtime.driver_version() == "550.54.15"
    assert "needs driver >= 525.60.13" in runtime.driver_summary()  # the CUDA 12 build of the fixture
    assert "requirements-cu12.lock" not in runtime.driver_summary()


def test_a_node_without_any_driver_says_so(broken_cuda):
    with pytest.raises(DeviceError, match=r"NVIDIA driver found: none \(/nonexistent/nvidia/version and "
                                          r"nvidia-smi are missing\)"):
        pick_device("cuda")
