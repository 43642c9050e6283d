"""Shared fixtures. Markers (slow, slurm, gpu, network) are registered strictly in pyproject.toml."""

import os

import numpy as np
import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def pytest_collection_modifyitems(config, items):
    """Skip gpu tests without CUDA and network tests unless GCNN_SPIN_NETWORK_TESTS=1."""
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        has_cuda = False
    allow_network = os.environ.get("GCNN_SPIN_NETWORK_TESTS") == "1"
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA device"))
        if "network" in item.keywords and not allow_network:
            item.add_marker(pytest.mark.skip(reason="reaches the internet; set GCNN_SPIN_NETWORK_TESTS=1"))
