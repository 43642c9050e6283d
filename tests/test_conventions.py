import numpy as np
import pytest

from gcnn_spin.conventions import (ACW, CW, OTHER, class_counts, counts_table, cvs, hard_class,
                                   predicted_spirals, soft_targets)

# (ACW, CW, CVS) rows of the study's Table 1.
REFERENCE_TABLE_1 = [
    (32_189, 30_356, 7.33), (31_660, 29_872, 7.21), (8_711, 8_160, 4.24), (8_549, 8_003, 4.24),
    (1_753, 1_580, 3.00), (6_796, 6_423, 3.24),
]


@pytest.mark.parametrize("n_acw, n_cw, expected", REFERENCE_TABLE_1)
def test_cvs_reproduces_reference_table_1(n_acw, n_cw, expected):
    assert round(cvs(n_acw, n_cw), 2) == pytest.approx(expected, abs=0.005)


def test_cvs_sign_and_empty():
    assert cvs(10, 0) > 0 and cvs(0, 10) < 0
    assert np.isnan(cvs(0, 0))


def test_hard_class_rule_uses_strict_half():
    targets = soft_targets([0.6, 0.5, 0.1, 0.2], [0.1, 0.2, 0.51, 0.5], [0.3, 0.3, 0.39, 0.3])
    assert hard_class(targets).tolist() == [CW, OTHER, ACW, OTHER]


def test_predicted_spirals_threshold_and_refuses_logits():
    probs = np.array([[0.5, 0.2, 0.3], [0.2, 0.7, 0.1], [0.4, 0.4, 0.2]])
    assert predicted_spirals(probs).tolist() == [CW, ACW, OTHER]
    with pytest.raises(ValueError, match="logits"):
        predicted_spirals(np.array([[3.0, -1.0, 0.5]]))


def test_counts_table_layout():
    table = counts_table({"a": [CW, ACW, ACW, OTHER], "b": [OTHER]})
    assert list(table.columns) == ["total", "ACW", "CW", "Other", "CVS"]
    assert table.loc["a"].to_dict() == class_counts([CW, ACW, ACW, OTHER])
    assert table.loc["a", "CVS"] == round(cvs(2, 1), 2)
