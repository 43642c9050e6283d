"""Where a task computes: the device and the number of CPU threads (shared by training and inference)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import torch

from .errors import UserError


#: Set to 1 to let a SLURM task that was given a GPU run on the CPU when CUDA is not usable.
ALLOW_CPU_ENV = "GCNN_SPIN_ALLOW_CPU"
#: Variables SLURM sets in a job that was allocated GPUs (``--gpus*``, ``--gres=gpu``): lists of GPU ids...
SLURM_GPU_IDS = ("SLURM_JOB_GPUS", "SLURM_STEP_GPUS")
#: ... and counts (``0`` = none).
SLURM_GPU_COUNTS = ("SLURM_GPUS_ON_NODE", "SLURM_GPUS", "SLURM_GPUS_PER_TASK", "SLURM_GPUS_PER_NODE")


#: The oldest NVIDIA driver that runs torch builds for each CUDA major version (CUDA's minor-version
#: compatibility; README, "GPU drivers"): requirements.lock is CUDA 13, requirements-cu12.lock CUDA 12.
DRIVER_FOR_CUDA = {"12": "525.60.13", "13": "580.65.06"}
DRIVER_FILE = Path("/proc/driver/nvidia/version")
_DRIVER_RE = re.compile(r"Kernel Module(?: for \S+)?\s+(\d+(?:\.\d+)+)")


class DeviceError(UserError):
    """The device asked for (or the GPU a SLURM task was given) cannot be used."""


def driver_version() -> str | None:
    """The NVIDIA driver version of this node: from ``/proc/driver/nvidia/version``, else ``nvidia-smi``."""
    with contextlib.suppress(OSError):
        found = _DRIVER_RE.search(DRIVER_FILE.read_text())
        if found:
            return found.group(1)
    smi = shutil.which("nvidia-smi")
    if smi:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                                 text=True, timeout=30).stdout.split()
            if out:
                return out[0]
    return None


def driver_summary() -> str:
    """The driver found and the one this torch build needs, e.g. for a task that cannot use CUDA."""
    found = driver_version() or f"none ({DRIVER_FILE} and nvidia-smi are missing)"
    major = torch.version.cuda.split(".")[0]
    needed = DRIVER_FOR_CUDA.get(major)
    text = (f"NVIDIA driver found: {found}; this torch {torch.__version__} is built for CUDA {torch.version.cuda}"
            + (f", which needs driver >= {needed}" if needed else ""))
    if major != "12":
        text += f" (for older drivers: requirements-cu12.lock, driver >= {DRIVER_FOR_CUDA['12']})"
    return text


def cuda_unavailable_reason() -> str:
    """Why CUDA cannot be used here, in the driver's own words where it gives some, with the driver versions."""
    if torch.version.cuda is None:
        return f"this torch {torch.__version__} is a CPU-only build"
    try:
        torch.cuda.init()  # raises with the reason: no driver, a driver too old for the wheels, no device...
    except Exception as err:  # noqa: BLE001 - its message is the reason we report
        return f"{' '.join(str(err).split())} [{driver_summary()}]"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return ("no GPU is visible" + (f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else "")
            + f" [{driver_summary()}]")


def slurm_gpu_request() -> str | None:
    """``NAME=value`` of the variable showing that this SLURM job was allocated GPUs, else ``None``."""
    if "SLURM_JOB_ID" not in os.environ:
        return None
    for name in SLURM_GPU_IDS + SLURM_GPU_COUNTS:
        value = os.environ.get(name, "").strip()
        if value and (name in SLURM_GPU_IDS or value != "0"):
            return f"{name}={value}"
    tres = os.environ.get("SLURM_TRES_PER_TASK", "")
    return f"SLURM_TRES_PER_TASK={tres}" if "gpu" in tres else None


def pick_device(requested: str | None = None) -> torch.device:
    """``requested`` (``cpu``, ``cuda``, ``cuda:1``), else CUDA when there is one, else the CPU.

    Never a silent fallback: asking for CUDA where it is not usable raises :class:`DeviceError` with the reason,
    and so does a SLURM task that was allocated a GPU but sees none, unless ``GCNN_SPIN_ALLOW_CPU=1`` (or
    ``--device cpu``) says the CPU is meant.
    """
    if requested:
        try:
            device = torch.device(requested)
        except RuntimeError as err:
            raise DeviceError(f"--device {requested}: {err}") from None
        if device.type == "cuda":
            if not torch.cuda.is_available():
                raise DeviceError(f"--device {requested}: CUDA is not usable here: {cuda_unavailable_reason()}")
            if device.index is not None and device.index >= torch.cuda.device_count():
                raise DeviceError(f"--device {requested}: only {torch.cuda.device_count()} GPU(s) are visible")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    request = slurm_gpu_request()
    if request and os.environ.get(ALLOW_CPU_ENV, "") in ("", "0"):
        raise DeviceError(
            f"this SLURM task was allocated a GPU ({request}) but CUDA is not usable: {cuda_unavailable_reason()}; "
            f"fix the driver or the container's --nv, or set {ALLOW_CPU_ENV}=1 (or pass --device cpu) to run on "
            "the CPU")
    return torch.device("cpu")


def _gpu_recipe(device: torch.device, on_cpu: bool) -> bool:
    """Whether the GPU recipe (bf16 autocast, channels-last) applies: on CUDA, and on the CPU when asked."""
    return device.type == "cuda" or (on_cpu and device.type == "cpu")


def autocast(device: torch.device, bf16: bool = True, on_cpu: bool = False):
    """bf16 autocast on CUDA when asked for; a no-op context elsewhere (CPU runs stay float32).

    ``on_cpu=True`` applies the same bf16 autocast on the CPU, so tests run the GPU recipe there.
    """
    if bf16 and _gpu_recipe(device, on_cpu):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def channels_last(x, device: torch.device, enabled: bool = True, on_cpu: bool = False):
    """A model or a 4-d batch in channels-last memory format on CUDA when ``enabled`` (on the CPU too with
    ``on_cpu``); anything else is returned unchanged."""
    if not (enabled and _gpu_recipe(device, on_cpu)):
        return x
    if isinstance(x, torch.nn.Module):
        return x.to(memory_format=torch.channels_last)
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


def set_cpu_threads(requested: int = 0) -> None:
    """Use ``requested`` CPU threads, else the task's SLURM CPU allocation, else torch's default.

    Oversubscribed cores are costly: OpenMP threads spin while they wait, and two 2-thread processes on two
    cores ran a ResNet18 30x slower than two 1-thread processes.
    """
    n = requested or int(os.environ.get("SLURM_CPUS_PER_TASK", "0") or 0)
    if n > 0:
        torch.set_num_threads(n)
