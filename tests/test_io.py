import json

import numpy as np
import pandas as pd
import pytest

from conftest import flip_byte_in_column
from gcnn_spin.artifacts import is_done
from gcnn_spin.errors import InputError
from gcnn_spin.io import (atomic_path, config_hash, marker_path, read_marker, read_parquet, remove_stale_temporaries,
                          write_marker, write_parquet_atomic)


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


def test_marker_and_output_are_fsynced_file_then_rename_then_directory(tmp_path, monkeypatch):
    """A crash of the machine between write and rename must not leave a marker vouching for unflushed bytes."""
    import os

    from gcnn_spin.io import write_parquet_atomic

    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        kind = "dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "file"
        events.append((f"fsync {kind}", os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", os.path.basename(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    import pandas as pd

    out = tmp_path / "part-00000.parquet"
    write_parquet_atomic(pd.DataFrame({"x": [1, 2]}), out)
    write_marker(out, n_rows=2)
    tmp_names = [name for kind, name in events if kind == "fsync file"]
    assert [kind for kind, _ in events] == ["fsync file", "replace", "fsync dir"] * 2
    assert all(name.endswith(".tmp") for name in tmp_names)  # the temporary is flushed before it gets its name
    assert [name for kind, name in events if kind != "fsync file"] == [
        "part-00000.parquet", tmp_path.name, "part-00000.parquet.done", tmp_path.name]


def test_a_failed_fsync_leaves_the_target_untouched(tmp_path, monkeypatch):
    import os

    target = tmp_path / "out.txt"
    target.write_text("old")

    def broken_fsync(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="Input/output"):
        with atomic_path(target) as tmp:
            tmp.write_text("new")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_a_flipped_byte_anywhere_in_a_parquet_pages_data_is_an_error_naming_the_file(tmp_path):
    """Every page carries a CRC that read_parquet checks: a flip in any column's data is refused (a plain read
    would return other numbers without a word); a file written without page CRCs is read as before."""
    rng = np.random.default_rng(0)
    table = pd.DataFrame({"dr8_id": [f"1_{i}" for i in range(3000)], "p_cw": rng.random(3000, dtype=np.float32),
                          "ra": rng.uniform(0, 360, 3000)})
    path = tmp_path / "part-00000.parquet"
    write_parquet_atomic(table, path)
    pd.testing.assert_frame_equal(read_parquet(path), table)
    clean = path.read_bytes()
    for column in table.columns:
        path.write_bytes(clean)
        flip_byte_in_column(path, column)
        with pytest.raises(InputError, match=rf"^{path}: cannot read this prediction part \(.*checksum.*\); "
                                             "delete it and predict it again$"):
            read_parquet(path, what="prediction part", fix="delete it and predict it again")
    unchecked = tmp_path / "old.parquet"
    table.to_parquet(unchecked, index=False)
    pd.testing.assert_frame_equal(read_parquet(unchecked, ["ra"]), table[["ra"]])
