"""docs/study_deviations.md knows every key where the study config departs from the study's code."""

import math
import re
import tomllib
from pathlib import Path

import pytest

from gcnn_spin.config import load_experiment, to_dict

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "study_deviations.md"
VALUES = ROOT / "docs" / "study_code_values.toml"
COLUMNS = 6  # #, what, where in the study, our study config, why, expected effect


def settings() -> list[dict]:
    return tomllib.loads(VALUES.read_text())["setting"]


def config_value(config: dict, key: str):
    node = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(f"{key}: not a key of the experiment config (stale entry in {VALUES.name}?)")
        node = node[part]
    return node


def same(a, b) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-12)
    return a == b


def rows() -> list[list[str]]:
    lines = [line for line in PAGE.read_text().splitlines() if re.match(r"\|\s*\d+\s*\|", line)]
    return [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines]


def test_every_differing_key_has_a_row():
    config = to_dict(load_experiment("experiment"))
    table = rows()
    differing = [s["key"] for s in settings() if not same(config_value(config, s["key"]), s["study_code"])]
    assert differing, "the comparison must see at least the known differences (e.g. data.image_size)"
    missing = [key for key in differing if not any(f"`{key}`" in row[3] for row in table)]
    assert not missing, f"keys differing from the study's code without a row in {PAGE.name}: {missing}"


def test_keys_quoted_in_the_page_exist():
    """A row names config keys by their dotted path; a renamed or removed key leaves a stale row, caught here."""
    config = to_dict(load_experiment("experiment"))
    for row in rows():
        for key in re.findall(r"`((?:data|train|grid|rotation_study|tables)\.[a-z_.]+)`", row[3]):
            config_value(config, key)


def test_rows_are_complete_and_numbered():
    table = rows()
    assert [int(r[0]) for r in table] == list(range(1, len(table) + 1))
    for row in table:
        assert len(row) == COLUMNS and all(row), f"row {row[0]} has an empty or missing column"


def test_a_new_difference_is_caught(monkeypatch):
    """The check can fail: a study config with AdamW weight decay would need a row."""
    config = to_dict(load_experiment("experiment", ["train.weight_decay=0.01"]))
    entry = next(s for s in settings() if s["key"] == "train.weight_decay")
    assert not same(config_value(config, entry["key"]), entry["study_code"])
    assert not any("`train.weight_decay`" in row[3] for row in rows())


def test_stale_keys_are_refused():
    with pytest.raises(KeyError, match="stale"):
        config_value(to_dict(load_experiment("experiment")), "train.no_such_key")


def test_the_report_links_the_page():
    from gcnn_spin.analysis import collect

    assert "docs/study_deviations.md" in collect.DEVIATIONS_NOTE  # the report's preamble (tests/test_collect.py)


def test_the_study_codes_choices_can_be_switched_on():
    """Row 3's bug is off in the study config and takes the study code's value when switched on; the spread over
    seeds and the tables' val and test columns are the code's, and ours are one switch away."""
    study = to_dict(load_experiment("experiment"))
    switched = to_dict(load_experiment("experiment", ["data.study_code_split_bug=true", "tables.spread_ddof=1"]))
    code = {s["key"]: s["study_code"] for s in settings()}
    assert same(config_value(switched, "data.study_code_split_bug"), code["data.study_code_split_bug"])
    assert not same(config_value(study, "data.study_code_split_bug"), code["data.study_code_split_bug"])
    assert same(config_value(study, "tables.spread_ddof"), code["tables.spread_ddof"])
    assert not same(config_value(switched, "tables.spread_ddof"), code["tables.spread_ddof"])
    ours = to_dict(load_experiment("experiment", ["tables.val_columns=evaluated",
                                                  "train.tables_checkpoint=least_val_loss"]))
    for key in ("tables.val_columns", "train.tables_checkpoint"):
        assert same(config_value(study, key), code[key])
        assert not same(config_value(ours, key), code[key])
