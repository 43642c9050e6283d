from gcnn_spin.ranges import format_ranges


def test_format_ranges():
    assert format_ranges([5, 0, 1, 2, 2]) == "0-2, 5"
    assert format_ranges([]) == ""
    assert format_ranges([7]) == "7"


def test_the_rebuild_command_names_the_array_element_that_holds_the_shard():
    """One grouping (``at_most``) decides which ``--task-id`` holds a shard, in the store stage and in the
    rebuild command a damaged shard's error prints."""
    from pathlib import Path

    from gcnn_spin.config import ClusterProfile
    from gcnn_spin.data.store import rebuild_command, store_paths
    from gcnn_spin.ranges import at_most, group_of

    paths = store_paths(Path("data/stores/survey.zarr"))
    for n_shards in (1, 999, 1000, 1001, 2500):
        groups = at_most(list(range(n_shards)), ClusterProfile.max_array_size)
        assert len(groups) <= ClusterProfile.max_array_size
        for element, shards in enumerate(groups):
            for k in {shards[0], shards[-1]}:
                assert group_of(k, n_shards, ClusterProfile.max_array_size) == element
                command = rebuild_command(paths, {"n_images": 8 * n_shards - 3, "shard_images": 8}, k)
                assert command.endswith(f"--task-id {element}"), (n_shards, k, command)
