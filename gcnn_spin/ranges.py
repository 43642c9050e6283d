"""Compact text for sets of indices (shards, parts) in messages and reports."""

from __future__ import annotations

from collections.abc import Iterable


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
