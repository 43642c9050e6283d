"""The study's Table 1 (galaxies left after each data stage), kept as data in ``study_table1.toml``.

``counts.md`` sets it beside our counts so that a real run shows at once where it diverges.
"""

from __future__ import annotations

import tomllib
from importlib import resources

import pandas as pd

TABLE1_FILE = "study_table1.toml"
TABLE1_COLUMNS: tuple[str, ...] = ("total", "ACW", "CW", "Other", "CVS")


def study_table1() -> pd.DataFrame:
    """The study's Table 1: index ``dataset`` (our stage names), columns :data:`TABLE1_COLUMNS`."""
    data = tomllib.loads(resources.files("gcnn_spin.data").joinpath(TABLE1_FILE).read_text())
    return pd.DataFrame(data["stage"]).set_index("dataset")[list(TABLE1_COLUMNS)]


def beside_study(counts: pd.DataFrame) -> pd.DataFrame:
    """``counts`` (index dataset, a ``total`` column) plus ``study_total`` and ``ratio`` = ours / study.

    Stages the study does not list (our final train and val sets) get NaN in both.
    """
    study = study_table1()["total"].reindex(counts.index)
    return counts.assign(study_total=study, ratio=counts["total"] / study)
