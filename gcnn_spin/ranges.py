"""Sets of indices (shards, parts, tasks): consecutive groups of them, and compact text for messages and reports."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


def chunks(items: Sequence[Any], size: int) -> list[list[Any]]:
    """Consecutive pieces of at most ``size`` items."""
    if size < 1:
        raise ValueError(f"chunk size must be >= 1, got {size}")
    return [list(items[i:i + size]) for i in range(0, len(items), size)]


def group_size(n_items: int, max_groups: int) -> int:
    """Items per group when ``n_items`` are cut into at most ``max_groups`` consecutive groups of equal size."""
    if max_groups < 1:
        raise ValueError(f"max_groups must be >= 1, got {max_groups}")
    return max(1, -(-n_items // max_groups))


def at_most(items: Sequence[Any], max_groups: int) -> list[list[Any]]:
    """Consecutive groups of equal size (the last one shorter), at most ``max_groups`` of them.

    The one grouping helper: shards into inference parts, shards into store-build tasks, tasks into the
    elements of an sbatch array (``--task-id K`` runs group K; :func:`group_of` says which K holds an item).
    """
    size = group_size(len(items), max_groups)
    return chunks(items, size) if items else []


def group_of(index: int, n_items: int, max_groups: int) -> int:
    """The group of :func:`at_most` (``n_items`` items, ``max_groups``) that holds item ``index``."""
    return index // group_size(n_items, max_groups)


def format_ranges(indices: Iterable[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2, 5"`` (sorted, duplicates dropped)."""
    ks = sorted(set(indices))
    out, start = [], None
    for i, k in enumerate(ks):
        if start is None:
            start = k
        if i + 1 == len(ks) or ks[i + 1] != k + 1:
            out.append(str(start) if start == k else f"{start}-{k}")
            start = None
    return ", ".join(out)
