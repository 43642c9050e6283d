"""The artifact model: done, or missing / stale / damaged and why; the one answer every stage asks."""

import pytest

from gcnn_spin.artifacts import Artifact, checked, is_done, verdict
from gcnn_spin.io import config_hash, marker_path, write_marker, write_text_atomic


def made(tmp_path, config=None):
    out = tmp_path / "table.csv"
    write_text_atomic(out, "a,b\n1,2\n")
    write_marker(out, config or {"k": 1})
    return out


def test_a_finished_output_is_done_and_its_marker_records_its_digest(tmp_path):
    out = made(tmp_path)
    found = verdict(out, config_hash({"k": 1}))
    assert found.done and str(found) == "done" and is_done(out, {"k": 1}) and is_done(out)


def test_without_a_marker_it_is_missing(tmp_path):
    (tmp_path / "table.csv").write_text("a\n")
    found = verdict(tmp_path / "table.csv")
    assert (found.state, found.why) == ("missing", "no completion marker table.csv.done")


def test_made_for_other_inputs_it_is_stale_and_says_from_what(tmp_path):
    out = made(tmp_path)
    found = verdict(out, config_hash({"k": 2}))
    assert found.state == "stale"
    assert found.why == (f"made from {config_hash({'k': 1})[:12]}, now {config_hash({'k': 2})[:12]} (its inputs "
                         "or settings changed since)")


@pytest.mark.parametrize("damage", ["one byte changed", "one byte cut off", "output deleted", "marker cut short"])
def test_bytes_that_are_no_longer_the_ones_written_are_damaged(tmp_path, damage):
    """Every check sees a size, a missing file or a bad marker; a byte changed in place only a deep one
    (:func:`checked` says which was made)."""
    out = made(tmp_path)
    if damage == "one byte changed":
        out.write_text("a,b\n1,3\n")  # same size
        says = "table.csv changed after it was written (SHA-256 "
        assert verdict(out, config_hash({"k": 1})).done  # markers and sizes only
        assert "size" in checked(False) and "SHA-256" in checked(True) and "--deep" in checked(True)
    elif damage == "one byte cut off":
        size = out.stat().st_size
        out.write_bytes(out.read_bytes()[:-1])
        says = "table.csv changed after it was written (SHA-256 "  # deep: the digest, whatever the size
        assert verdict(out, config_hash({"k": 1})).why == (f"table.csv changed after it was written ({size} bytes, "
                                                           f"now {size - 1})")
    elif damage == "output deleted":
        out.unlink()
        says = f"its output {out} is missing"
    else:
        marker_path(out).write_text('{"output": "tab')
        says = "cannot read this completion marker"
    found = verdict(out, config_hash({"k": 1}), deep=True)
    assert found.state == "damaged" and says in found.why and not is_done(out)  # the pipeline stages: deep


def test_an_outputs_own_check_is_asked_and_told_how_deep(tmp_path):
    out = tmp_path / "virtual"
    write_marker(out, {"k": 1})  # a virtual output (like a store shard): only its own check judges its bytes
    asked = []

    def check(deep):
        asked.append(deep)
        return "its file is gone" if deep else None

    artifact = Artifact(out, config_hash({"k": 1}), check)
    assert artifact.done and str(artifact.verdict(deep=True)) == "damaged: its file is gone"
    assert asked == [False, True]
