"""Where a task computes: the device and the number of CPU threads (shared by training and inference)."""

from __future__ import annotations

import contextlib
import os

import torch


def pick_device(requested: str | None = None) -> torch.device:
    """``requested`` (``cpu``, ``cuda``, ``cuda:1``), else CUDA when there is one, else the CPU."""
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast(device: torch.device, bf16: bool = True):
    """bf16 autocast on CUDA when asked for; a no-op context elsewhere (CPU runs stay float32)."""
    if device.type == "cuda" and bf16:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def set_cpu_threads(requested: int = 0) -> None:
    """Use ``requested`` CPU threads, else the task's SLURM CPU allocation, else torch's default.

    Oversubscribed cores are costly: OpenMP threads spin while they wait, and two 2-thread processes on two
    cores ran a ResNet18 30x slower than two 1-thread processes.
    """
    n = requested or int(os.environ.get("SLURM_CPUS_PER_TASK", "0") or 0)
    if n > 0:
        torch.set_num_threads(n)
