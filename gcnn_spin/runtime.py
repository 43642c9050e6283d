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


def trained_image_size(module: torch.nn.Module) -> int | None:
    """The crop size a built or exported model was made for (``model.model_options``), if it records one."""
    size = getattr(module, "model_options", {}).get("image_size")
    return int(size) if size else None


def set_cpu_threads(requested: int = 0) -> None:
    """Use ``requested`` CPU threads, else the task's SLURM CPU allocation, else torch's default.

    Oversubscribed cores are costly: OpenMP threads spin while they wait, and two 2-thread processes on two
    cores ran a ResNet18 30x slower than two 1-thread processes.
    """
    n = requested or int(os.environ.get("SLURM_CPUS_PER_TASK", "0") or 0)
    if n > 0:
        torch.set_num_threads(n)
