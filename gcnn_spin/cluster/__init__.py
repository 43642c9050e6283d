"""Running array stages anywhere: a submitit executor from a cluster profile, task planning and submission.

``make_executor(profile, log_dir, job_name)`` picks SLURM or local processes; ``plan`` / ``submit`` /
``status`` / ``wait`` give every array stage the same shape (see docs/architecture.md). The names below are
imported on first use, so that ``python -m gcnn_spin.cluster.<module>`` and stages that only need
``gcnn_spin.cluster.<module>`` do not load submitit.
"""

import importlib

_EXPORTS = {
    "make_executor": "executor",
    "ResumableTask": "arrays", "Submission": "arrays", "Task": "arrays", "TaskStatus": "arrays",
    "format_plan": "arrays", "format_status": "arrays", "plan": "arrays", "status": "arrays",
    "submit": "arrays", "wait": "arrays",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
