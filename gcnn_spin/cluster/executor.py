"""A submitit executor from a cluster profile: SLURM where ``sbatch`` exists, local processes elsewhere.

The profile's resources become submitit's namespaced parameters (``slurm_partition``, ...); submitit checks
every name and raises ``NameError`` listing the valid ones on a misspelt key in ``extra_sbatch``. With
``container_image`` set, tasks run in the image: ``apptainer exec [--nv] --bind ... IMAGE python`` or, with
``container_runtime = "podman"``, ``podman run --rm --read-only --volume ... IMAGE python``; otherwise in this
interpreter (the project's venv). Either runtime binds the log folder, every folder the tasks read or write (found
in the tasks themselves: :func:`task_paths`) and the profile's ``bind``. Nothing here changes a result, only where
and with what it runs.
"""

from __future__ import annotations

import dataclasses
import shlex
import shutil
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import submitit

from gcnn_spin.config import ClusterProfile, ConfigError
from gcnn_spin.errors import UserError
from gcnn_spin.layout import bind_roots

# What a task in a podman container must see of the job's environment (apptainer passes all of it).
PODMAN_ENV = ("SLURM_*", "SUBMITIT_*", "CUDA_VISIBLE_DEVICES", "GCNN_SPIN_*")


class BackendError(UserError, RuntimeError):
    """The profile asks for a scheduler this machine does not have."""


def resolve_backend(profile: ClusterProfile) -> str:
    """``"slurm"`` or ``"local"``: ``auto`` picks SLURM where ``sbatch`` is on the PATH."""
    has_slurm = shutil.which("sbatch") is not None and shutil.which("srun") is not None
    if profile.executor == "slurm" and not has_slurm:
        raise BackendError(f"cluster profile {profile.name!r} asks for SLURM, but sbatch/srun are not on the PATH")
    if profile.executor == "auto":
        return "slurm" if has_slurm else "local"
    return profile.executor


def paths_in(value: Any) -> Iterator[Path]:
    """Every path in a task argument: ``Path`` objects and absolute path strings, inside containers and dataclasses."""
    if isinstance(value, Path) or (isinstance(value, str) and value.startswith("/")):
        yield Path(value)
    elif isinstance(value, dict) or hasattr(value, "items"):
        for item in value.values():
            yield from paths_in(item)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            yield from paths_in(item)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for field in dataclasses.fields(value):
            yield from paths_in(getattr(value, field.name))


def task_paths(tasks: Iterable[Any]) -> list[Path]:
    """What array tasks read and write: their outputs and every path among their arguments."""
    return sorted({path for task in tasks for path in (task.output, *paths_in((task.args, task.kwargs)))})


def container_binds(profile: ClusterProfile, log_dir: str | Path, paths: Iterable[str | Path] = ()) -> list[str]:
    """The folders a task's container binds: the log folder, the folders holding ``paths`` and what lies beside
    them (:func:`~gcnn_spin.layout.bind_roots`), then the profile's ``bind`` as given."""
    paths = list(paths)
    roots = bind_roots([Path(log_dir) / "submission.json", *paths])
    if Path("/") in roots:
        raise UserError(f"cluster profile {profile.name!r}: a container would have to bind / to reach "
                        f"{', '.join(map(str, paths))}; give paths under a data or scratch folder")
    return list(dict.fromkeys([*map(str, roots), *(b for b in profile.bind if b)]))


def python_command(profile: ClusterProfile, log_dir: str | Path, paths: Sequence[str | Path] = ()) -> str | None:
    """The shell command that starts Python in a task: the container's, or ``None`` for this interpreter.

    Binds :func:`container_binds` at the same paths: submitit passes the task and its result through the log folder.
    """
    if not profile.container_image:
        return None
    binds = container_binds(profile, log_dir, paths)
    runtime = shlex.split(profile.container_command) or [profile.container_runtime]
    if profile.container_runtime == "podman":
        cmd = runtime + ["run", "--rm", "--read-only", "--env", "HOME=/tmp"]
        for name in PODMAN_ENV:
            cmd += ["--env", name]
        if profile.gpus_per_task > 0:
            cmd += ["--device", "nvidia.com/gpu=all"]  # the host's driver through CDI
        for bind in binds:
            cmd += ["--volume", f"{bind}:{bind}"]
        return shlex.join(cmd + ["--entrypoint", "python", profile.container_image])
    image = Path(profile.container_image).expanduser()
    if not image.exists():
        raise FileNotFoundError(f"cluster profile {profile.name!r}: container_image {image} does not exist "
                                "(build it with `make container`, or convert the OCI image: README, Container image)")
    cmd = runtime + ["exec"]
    if profile.gpus_per_task > 0:
        cmd.append("--nv")  # bind the host's NVIDIA driver; the CUDA libraries come from the image
    cmd += ["--bind", ",".join(binds), str(image.resolve()), "python"]
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


def make_executor(profile: ClusterProfile, log_dir: str | Path, job_name: str, create: bool = True,
                  tasks: Sequence[Any] = ()) -> submitit.AutoExecutor:
    """A submitit ``AutoExecutor`` for ``profile`` writing its pickles and logs under ``log_dir``.

    In a container, the tasks' folders are bound (:func:`task_paths` of ``tasks``); with ``create``, the folders
    their outputs go to are made first, so that each can be bound. Raises ``ConfigError`` for an unknown
    ``extra_sbatch`` key (submitit's check, listing the valid names) or
    executor, ``FileNotFoundError`` for a missing container image. ``create=False``: check all that and create
    nothing (a dry run validates the profile like a real submission).
    """
    backend = resolve_backend(profile)
    log_dir = Path(log_dir).resolve()
    if create:
        log_dir.mkdir(parents=True, exist_ok=True)
        if profile.container_image:
            for task in tasks:
                Path(task.output).parent.mkdir(parents=True, exist_ok=True)
    kwargs = {}
    python = python_command(profile, log_dir, task_paths(tasks))
    if python is not None:
        kwargs[f"{backend}_python"] = python
    executor = submitit.AutoExecutor(folder=log_dir, cluster=backend, **kwargs)
    try:
        executor.update_parameters(**executor_parameters(profile, job_name))
    except NameError as err:
        raise ConfigError(f"cluster profile {profile.name!r}: {' '.join(str(err).split())}") from None
    return executor
