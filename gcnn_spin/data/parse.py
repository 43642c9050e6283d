"""Vectorised text-to-number parsing for catalogue columns (pyarrow kernels; exact 64-bit ids)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

_NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
_INT64_MAX_TEXT = str(np.iinfo(np.int64).max)


def strings(values) -> pa.Array:
    """Any column of text (pandas, numpy, pyarrow) -> a pyarrow string array with blanks trimmed, nulls as ""."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    elif not isinstance(values, pa.Array):
        series = pd.Series(values).reset_index(drop=True)
        text = series.astype(str).astype(object)
        text[series.isna().to_numpy()] = None
        values = pa.array(text, type=pa.string(), from_pandas=True)
    if values.type != pa.string():
        values = pc.cast(values, pa.string())
    return pc.fill_null(pc.utf8_trim_whitespace(values), "")


def parse_numbers(values) -> tuple[np.ndarray, np.ndarray]:
    """Text ``(N,)`` -> (float64 ``(N,)``, ok ``(N,)``): ok where the text is a finite decimal number."""
    text = strings(values)
    ok = pc.match_substring_regex(text, _NUMBER).to_numpy(zero_copy_only=False)
    safe = pc.if_else(pa.array(ok), text, "nan")
    out = pc.cast(safe, pa.float64()).to_numpy(zero_copy_only=False).copy()
    return out, ok & np.isfinite(out)


def parse_objid(values) -> tuple[np.ndarray, np.ndarray]:
    """OBJID text ``(N,)`` -> (int64 ``(N,)``, ok ``(N,)``); exact (objIDs exceed float64's 2**53)."""
    text = strings(values)
    ok = pc.match_substring_regex(text, r"^\d{1,19}$").to_numpy(zero_copy_only=False)
    # Equal-length digit strings compare like the numbers they spell.
    too_big = pc.and_(pc.equal(pc.utf8_length(text), 19), pc.greater(text, _INT64_MAX_TEXT))
    ok &= ~too_big.to_numpy(zero_copy_only=False)
    safe = pc.if_else(pa.array(ok), text, "0")
    return pc.cast(safe, pa.int64()).to_numpy(zero_copy_only=False).copy(), ok
