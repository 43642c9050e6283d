"""Atomic file writes and completion markers: nothing half-written is ever taken for finished.

Every stage that can run as an array task writes its outputs with :func:`atomic_path` (unique temporary
name in the same directory, then ``os.replace``) and writes its marker last with :func:`write_marker`.
Durability: the temporary file is fsynced before the rename and its directory after, so after a crash of the
machine a marker never vouches for an output whose bytes or name were still only in the page cache.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import hashlib
import json
import os
import platform
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .errors import DISK_FULL, disk_full, reading

MARKER_SUFFIX = ".done"
#: The marker keys holding the SHA-256 and the size in bytes of a file output.
DIGEST_KEY = "output_sha256"
SIZE_KEY = "output_bytes"


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a unique temporary path next to ``target``; on success fsync it, ``os.replace`` it onto ``target``
    and fsync the directory.

    On an exception the temporary file is removed and ``target`` is untouched; a full disk becomes a
    :class:`~gcnn_spin.errors.DiskFullError` naming ``target`` and the space left.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix + ".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        fsync_file(tmp_path)
        os.replace(tmp_path, target)
        fsync_dir(target.parent)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        if isinstance(err, OSError) and err.errno in DISK_FULL:
            raise disk_full(err, target) from err
        raise


def fsync_file(path: str | os.PathLike) -> None:
    """Flush a written file's bytes to the disk (not just the page cache)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | os.PathLike) -> None:
    """Make the names created or renamed in directory ``path`` durable.

    Some network file systems refuse to fsync a directory (``EINVAL``); there the rename is as durable as the
    file system makes it, and nothing more can be done.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def remove_stale_temporaries(target: str | os.PathLike) -> list[Path]:
    """Delete temporary files that :func:`atomic_path` left for ``target`` when its process was killed.

    Call it only where no other process can be writing ``target`` (array tasks never share an output).
    """
    target = Path(target)
    stale = list(target.parent.glob(f".{target.name}.*.tmp")) if target.parent.exists() else []
    for path in stale:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return stale


def write_text_atomic(target: str | os.PathLike, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)


def write_json_atomic(target: str | os.PathLike, obj: Any) -> None:
    write_text_atomic(target, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_parquet(table, path: str | os.PathLike, index: bool | None = False) -> None:
    """Write a pandas DataFrame to ``path`` as parquet with a CRC of every page, which :func:`read_parquet`
    verifies: a flipped byte in the data is an error, not a silently different value. ``index``: as pandas'
    (``None`` keeps a range index as metadata, any other as columns)."""
    table.to_parquet(path, index=index, write_page_checksum=True)


def write_parquet_atomic(table, target: str | os.PathLike) -> None:
    """Write a pandas DataFrame to ``target`` as checksummed parquet (no index), atomically."""
    with atomic_path(target, suffix=".parquet") as tmp:
        write_parquet(table, tmp)


def read_parquet(path: str | os.PathLike, columns: list[str] | None = None, what: str = "file", fix: str = ""):
    """A parquet file as a pandas DataFrame, its page checksums verified (files written without them are read
    unchecked); a damaged or unreadable file is an :class:`~gcnn_spin.errors.InputError` naming ``path``, what it
    is and ``fix``."""
    import pyarrow.parquet as pq

    with reading(path, what, fix):
        table = pq.read_table(path, columns=columns, use_pandas_metadata=True, page_checksum_verification=True)
        return table.to_pandas()


def file_digest(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes (hex): what an output's marker records so that any changed byte is seen."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def config_hash(config: Any) -> str:
    """Short stable hash of a JSON-serialisable config (dicts, dataclasses via ``asdict`` first)."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def provenance() -> dict[str, Any]:
    """Where and when something was made: host, time, git commit, SLURM ids when inside a job."""
    info: dict[str, Any] = {
        "time_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "python": platform.python_version(),
        "git_commit": _git_commit(),
    }
    for key in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        if key in os.environ:
            info[key.lower()] = os.environ[key]
    return info


def marker_path(output: str | os.PathLike) -> Path:
    """The completion marker that belongs to an output file or directory."""
    output = Path(output)
    return output.with_name(output.name + MARKER_SUFFIX)


def write_marker(output: str | os.PathLike, config: Mapping[str, Any] | None = None, **extra: Any) -> Path:
    """Write the completion marker of ``output`` (call it after the output itself is in place).

    A file output's SHA-256 and size are recorded (``output_sha256``, ``output_bytes``): a size changed since is
    seen by every check, any byte changed by a deep one (:func:`gcnn_spin.artifacts.verdict`).
    """
    payload = {"output": Path(output).name, "provenance": provenance(), **extra}
    if Path(output).is_file():
        payload[DIGEST_KEY] = file_digest(output)
        payload[SIZE_KEY] = Path(output).stat().st_size
    if config is not None:
        payload["config_hash"] = config_hash(config)
    path = marker_path(output)
    write_json_atomic(path, payload)
    return path


def read_marker(output: str | os.PathLike) -> dict[str, Any] | None:
    """The marker's content, or ``None`` when the output is not complete.

    A marker that is not JSON (a disk full when it was written by something other than :func:`write_marker`)
    raises :class:`~gcnn_spin.errors.InputError` saying to delete it: its output is then redone.
    """
    path = marker_path(output)
    if not path.exists():
        return None
    with reading(path, "completion marker", f"delete {path} (its output is then redone)"):
        return json.loads(path.read_text())
