from gcnn_spin.ranges import format_ranges


def test_format_ranges():
    assert format_ranges([5, 0, 1, 2, 2]) == "0-2, 5"
    assert format_ranges([]) == ""
    assert format_ranges([7]) == "7"
