"""Shared fixtures. Markers (slow, slurm, gpu, network) are registered strictly in pyproject.toml."""

import os
from pathlib import Path

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


#: SLURM's query and control tools. Unit tests never reach a real cluster: in every test not marked ``slurm``
#: these answer as on a machine with Debian's SLURM client installed but no cluster running (they fail), so a
#: unit test that queries the scheduler fails the same way everywhere instead of depending on the machine.
SLURM_QUERY_TOOLS = ("sacct", "squeue", "sinfo", "scontrol", "scancel")


def write_fake_tools(folder, names, body: str):
    """Executable shell scripts ``folder/name`` running ``body``; returns ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        tool = folder / name
        tool.write_text(f"#!/bin/sh\n{body}\n")
        tool.chmod(0o755)
    return folder


def flip_byte_in_column(path, column: str) -> None:
    """Flip one bit in the middle of a parquet file's pages of ``column`` (its values, not the footer's names): the
    file keeps its size, so only a content check can see it."""
    import pyarrow.parquet as pq

    metadata = pq.ParquetFile(path).metadata
    chunk = metadata.row_group(0).column(metadata.schema.names.index(column))
    start = chunk.dictionary_page_offset or chunk.data_page_offset
    data = bytearray(Path(path).read_bytes())
    data[start + chunk.total_compressed_size // 2] ^= 0x10
    Path(path).write_bytes(bytes(data))


@pytest.fixture(scope="session")
def unreachable_slurm(tmp_path_factory):
    """A PATH folder whose SLURM tools fail like ``sacct`` without a running slurmdbd."""
    return write_fake_tools(tmp_path_factory.mktemp("no_cluster_bin"), SLURM_QUERY_TOOLS,
                            'echo "$(basename "$0"): error: unit tests must not reach a SLURM cluster '
                            '(mark the test slurm, or fake the query)" >&2; exit 1')


@pytest.fixture(autouse=True)
def no_cluster_for_unit_tests(request, monkeypatch, unreachable_slurm):
    if request.node.get_closest_marker("slurm") is None:
        monkeypatch.setenv("PATH", f"{unreachable_slurm}{os.pathsep}{os.environ.get('PATH', '')}")


#: Config overrides that make every stage tiny: 33 px images (exact for G-ResNets), small shards (several inference parts).
TINY_OVERRIDES = ("data.image_size=33", "data.chunk_images=16", "data.shard_images=64", "train.batch_size=25",
                  "train.epochs=2", "train.num_threads=1", "train.model_options={base_width=4}")


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """A synthetic survey run through the real data pipeline: ``(raw_dir, data_dir, overrides)``."""
    from gcnn_spin.config import load_experiment
    from gcnn_spin.data.pipeline import Inputs, build_dataset
    from gcnn_spin.data.synthetic import generate_survey

    root = tmp_path_factory.mktemp("tiny")
    paths = generate_survey(root / "raw", n_gz1=400, n_survey_only=200, seed=1, swise_bias=0.1, progress=False)
    cfg = load_experiment("demo", list(TINY_OVERRIDES))
    inputs = Inputs(gz1=paths["gz1"], desi_index=paths["desi_index"], images=paths["jpg_root"],
                    sdss_photometry=paths["sdss_photometry"])
    build_dataset(root / "data", inputs, cfg.data, progress=False)
    return root / "raw", root / "data", TINY_OVERRIDES
