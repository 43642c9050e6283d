"""The layout: every value read from a marker, a flag or a folder name is checked before it becomes a path."""

import json

import pytest

from gcnn_spin import layout
from gcnn_spin.run import discover_runs, finished_runs
from gcnn_spin.errors import UserError
from gcnn_spin.io import write_marker


@pytest.mark.parametrize("name", ["../../elsewhere", "a/b", "..", "", ".hidden", "x" * 101, 3, None])
def test_a_name_that_is_not_one_folder_is_refused(name):
    with pytest.raises(UserError, match="cannot name a folder"):
        layout.check_name(name)


@pytest.mark.parametrize("seed", [-1, "0", 1.0, True, None])
def test_a_seed_that_names_no_seed_folder_is_refused(seed):
    with pytest.raises(UserError, match="is not a seed"):
        layout.check_seed(seed, "grid.seeds")


def test_paths_are_built_only_from_checked_values(tmp_path):
    assert layout.run_dir(tmp_path, "g_resnet18", 3) == tmp_path / "g_resnet18" / "seed3"
    assert layout.part_path(tmp_path, "resnet18_nr", 0, 7).name == "part-00007.parquet"
    for bad in (lambda: layout.run_dir(tmp_path, "m", -1), lambda: layout.part_path(tmp_path, "../x", 0, 0),
                lambda: layout.study_path(tmp_path, "rotation", "a/b", 0)):
        with pytest.raises(UserError):
            bad()


@pytest.mark.parametrize("field, value, says", [("model", "../../elsewhere", "model '../../elsewhere' cannot name"),
                                                 ("run", "../../elsewhere", "run '../../elsewhere' cannot name"),
                                                 ("seed", -1, "seed: -1 is not a seed")])
def test_names_and_seeds_from_markers_are_checked_before_they_become_paths(tmp_path, field, value, says):
    """An edited run marker must not send inference or studies outside their folders, nor make a run that no
    discovery finds: the marker is named; collect reports the run as incomplete."""
    run = tmp_path / "runs" / "resnet18" / "seed0"
    run.mkdir(parents=True)
    write_marker(run, {"x": 1}, **{"model": "resnet18", "seed": 0, field: value})
    with pytest.raises(UserError, match=rf"run marker {run}\.done: .*{says}"):
        finished_runs(tmp_path / "runs")
    (found,) = discover_runs(tmp_path / "runs")
    assert not found.complete and "unreadable or without model and seed" in found.problem
    assert json.loads((tmp_path / "runs" / "resnet18" / "seed0.done").read_text())[field] == value


def test_a_run_folder_whose_name_cannot_be_a_run_is_named_not_used(tmp_path):
    """Without a marker a run is known by its folder: a name that cannot be one path component is its problem."""
    (tmp_path / "runs" / "res net" / "seed0").mkdir(parents=True)
    (found,) = discover_runs(tmp_path / "runs")
    assert not found.complete and "'res net' cannot name a folder" in found.problem
    assert finished_runs(tmp_path / "runs") == []
