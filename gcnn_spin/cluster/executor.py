"""A submitit executor from a cluster profile: SLURM where ``sbatch`` exists, local processes elsewhere.

The profile's resources become submitit's namespaced parameters (``slurm_partition``, ...); submitit checks
every name and raises ``NameError`` listing the valid ones on a misspelt key in ``extra_sbatch``. With
``container_image`` set, tasks run as ``apptainer exec [--nv] --bind ... IMAGE python``; otherwise in this
interpreter (the project's venv). Nothing here changes a result, only where and with what it runs.
"""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path
from typing import Any

import submitit

from gcnn_spin.config import ClusterProfile, ConfigError
from gcnn_spin.errors import UserError

EXECUTORS = ("auto", "slurm", "local")


class BackendError(UserError, RuntimeError):
    """The profile asks for a scheduler this machine does not have."""


def resolve_backend(profile: ClusterProfile) -> str:
    """``"slurm"`` or ``"local"``: ``auto`` picks SLURM where ``sbatch`` is on the PATH."""
    if profile.executor not in EXECUTORS:
        raise ConfigError(f"cluster profile {profile.name!r}: executor {profile.executor!r} is not one of {EXECUTORS}")
    has_slurm = shutil.which("sbatch") is not None and shutil.which("srun") is not None
    if profile.executor == "slurm" and not has_slurm:
        raise BackendError(f"cluster profile {profile.name!r} asks for SLURM, but sbatch/srun are not on the PATH")
    if profile.executor == "auto":
        return "slurm" if has_slurm else "local"
    return profile.executor


def python_command(profile: ClusterProfile, log_dir: str | Path) -> str | None:
    """The shell command that starts Python in a task: the container's, or ``None`` for this interpreter.

    The log folder is always bound: submitit passes the task and its result through it.
    """
    if not profile.container_image:
        return None
    image = Path(profile.container_image).expanduser()
    if not image.exists():
        raise FileNotFoundError(f"cluster profile {profile.name!r}: container_image {image} does not exist "
                                "(build it with `make container`)")
    binds = [str(Path(log_dir).resolve())] + [b for b in profile.bind if b]
    cmd = ["apptainer", "exec"]
    if profile.gpus_per_task > 0:
        cmd.append("--nv")  # bind the host's NVIDIA driver; the CUDA libraries come from the image
    cmd += ["--bind", ",".join(dict.fromkeys(binds)), str(image.resolve()), "python"]
    return shlex.join(cmd)


def executor_parameters(profile: ClusterProfile, job_name: str) -> dict[str, Any]:
    """The profile as submitit ``update_parameters`` keywords (generic ones, then ``slurm_``/``local_`` ones)."""
    params: dict[str, Any] = {
        "name": job_name,
        "timeout_min": profile.time_min,
        "cpus_per_task": profile.cpus_per_task,
        "mem_gb": profile.mem_gb,
        "nodes": 1,
        "tasks_per_node": 1,
        "slurm_partition": profile.partition,
        "slurm_array_parallelism": profile.array_parallelism,
        # The local executor always sets CUDA_VISIBLE_DEVICES: to the first n GPUs, or none.
        "local_gpus_per_node": profile.gpus_per_task,
    }
    if profile.gpus_per_task > 0:
        params["slurm_gpus_per_task"] = profile.gpus_per_task
    if profile.account:
        params["slurm_account"] = profile.account
    if profile.qos:
        params["slurm_qos"] = profile.qos
    for key, value in profile.extra_sbatch.items():
        params[f"slurm_{key}"] = value
    return params


def make_executor(profile: ClusterProfile, log_dir: str | Path, job_name: str,
                  create: bool = True) -> submitit.AutoExecutor:
    """A submitit ``AutoExecutor`` for ``profile`` writing its pickles and logs under ``log_dir``.

    Raises ``ConfigError`` for an unknown ``extra_sbatch`` key (submitit's check, listing the valid names) or
    executor, ``FileNotFoundError`` for a missing container image. ``create=False``: check all that and create
    nothing (a dry run validates the profile like a real submission).
    """
    backend = resolve_backend(profile)
    log_dir = Path(log_dir).resolve()
    if create:
        log_dir.mkdir(parents=True, exist_ok=True)
    kwargs = {}
    python = python_command(profile, log_dir)
    if python is not None:
        kwargs[f"{backend}_python"] = python
    executor = submitit.AutoExecutor(folder=log_dir, cluster=backend, **kwargs)
    try:
        executor.update_parameters(**executor_parameters(profile, job_name))
    except NameError as err:
        raise ConfigError(f"cluster profile {profile.name!r}: {' '.join(str(err).split())}") from None
    return executor
