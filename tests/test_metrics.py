import numpy as np
import torch

from gcnn_spin.metrics import classification_metrics, confusion_matrix, soft_cross_entropy, spiral_summary


def test_soft_cross_entropy_matches_definition():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.1, 0.2, 0.3]])
    targets = torch.tensor([[0.7, 0.2, 0.1], [0.0, 0.0, 1.0]])
    expected = -(targets * torch.log_softmax(logits, -1)).sum(-1).mean()
    assert torch.allclose(soft_cross_entropy(logits, targets), expected)
    # with one-hot targets it equals the ordinary cross-entropy
    onehot = torch.nn.functional.one_hot(torch.tensor([0, 2]), 3).float()
    assert torch.allclose(soft_cross_entropy(logits, onehot), torch.nn.functional.cross_entropy(logits, torch.tensor([0, 2])))


def test_confusion_matrix_rows_normalised_and_empty_rows_zero():
    m = confusion_matrix(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]))
    assert np.allclose(m, [[0.5, 0.5, 0], [0, 1, 0], [0, 0, 0]])


def test_spiral_summary_counts_probabilities():
    probs = np.array([[0.6, 0.3, 0.1], [0.1, 0.8, 0.1], [0.2, 0.7, 0.1], [0.3, 0.3, 0.4]])
    s = spiral_summary(probs)
    assert (s["n_cw"], s["n_acw"], s["n_other"]) == (1, 2, 1)
    assert np.isclose(s["cvs"], (2 - 1) / np.sqrt(3))


def test_classification_metrics_accuracy_and_loss():
    targets = np.array([[0.8, 0.1, 0.1], [0.1, 0.1, 0.8]])
    probs = np.array([[0.7, 0.2, 0.1], [0.6, 0.2, 0.2]])
    m = classification_metrics(probs, targets)
    assert m["accuracy"] == 0.5
    assert np.isclose(m["loss"], -(targets * np.log(probs)).sum(1).mean())
