import json

import pytest

from gcnn_spin.io import (atomic_path, config_hash, is_done, marker_path, read_marker, remove_stale_temporaries,
                          write_marker)


def test_atomic_path_replaces_target_only_on_success(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]  # no temp file left
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"


def test_marker_records_config_hash_and_provenance(tmp_path):
    out = tmp_path / "part-00001.parquet"
    assert not is_done(out)
    config = {"model": "gc_resnet18", "seed": 3}
    write_marker(out, config, n_rows=5)
    assert marker_path(out).name == "part-00001.parquet.done"
    marker = read_marker(out)
    assert marker["n_rows"] == 5 and marker["config_hash"] == config_hash(config)
    assert "time_utc" in marker["provenance"]
    assert is_done(out) and is_done(out, config) and not is_done(out, {"model": "other"})
    json.loads(marker_path(out).read_text())


def test_stale_temporaries_of_a_killed_writer_are_removed(tmp_path):
    target = tmp_path / "part-00003.parquet"
    stale = tmp_path / ".part-00003.parquet.abc123.parquet.tmp"
    other = tmp_path / ".part-00004.parquet.def456.parquet.tmp"
    stale.write_text("half")
    other.write_text("someone else's")
    assert remove_stale_temporaries(target) == [stale]
    assert not stale.exists() and other.exists()
