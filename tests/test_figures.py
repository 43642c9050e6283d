"""Every figure is written as a non-empty PNG from plain tables; the report shows every table and figure given."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gcnn_spin.analysis import figures
from gcnn_spin.analysis.report import Figure, Section, render, write_report
from gcnn_spin.analysis.tables import Column, summary_table

PNG = b"\x89PNG\r\n\x1a\n"
REPO = Path(__file__).resolve().parents[1]


def assert_png(path, min_bytes=10_000):
    data = path.read_bytes()
    assert data[:8] == PNG and len(data) > min_bytes
    assert not list(path.parent.glob("*.tmp"))


def summary(models, **columns):
    frame = pd.DataFrame({"model": models})
    for key, (mean, std) in columns.items():
        frame[f"{key}_mean"], frame[f"{key}_std"] = mean, std
    return frame


def test_training_curves(tmp_path, rng):
    def history(offset):
        epochs = np.arange(1, 21)
        return pd.DataFrame({"epoch": epochs, "train_loss": 1 / epochs + offset, "val_loss": 1.1 / epochs + offset,
                             "train_accuracy": 1 - 1 / epochs - offset, "val_accuracy": 0.9 - 1 / epochs})

    histories = {"resnet18": [history(0.01 * k) for k in range(3)], "g_resnet18": [history(0.02)]}
    assert_png(figures.training_curves(histories, tmp_path / "curves.png"))


def test_confusion_grid(tmp_path, rng):
    matrices = {m: rng.dirichlet([5, 1, 1], size=3) for m in ("resnet18", "g_resnet18", "g_resnet18_flips",
                                                               "gc_resnet18", "lenet")}
    assert_png(figures.confusion_grid(matrices, tmp_path / "confusion.png", "test", highlight=["gc_resnet18"]))


def test_recovery_plot(tmp_path):
    levels = np.arange(-12, 13, 3.0)
    points = {m: pd.DataFrame({"seed": np.repeat([0, 1], len(levels)), "level": np.tile(levels, 2),
                               "set_cvs": np.tile(levels, 2), "pred_cvs": slope * np.tile(levels, 2)})
              for m, slope in (("resnet18", 0.85), ("gc_resnet18", 0.99))}
    assert_png(figures.recovery_plot(points, {"resnet18": "0.85", "gc_resnet18": "0.99"}, tmp_path / "rec.png"))


def test_rotation_figures(tmp_path, rng):
    angles = np.linspace(0, 180, 9)
    one = {m: pd.DataFrame({"angle_deg": angles, **{f"{c}_mean": rng.uniform(0, 1, 9) for c in ("p_cw", "p_acw",
                                                                                                  "p_other")},
                            **{f"{c}_std": rng.uniform(0, 0.1, 9) for c in ("p_cw", "p_acw", "p_other")},
                            **{k: rng.uniform(0, 1, 9) for k in ("eta_sz", "eta_zn", "eta_sn")}})
           for m in ("resnet18", "g_resnet18")}
    assert_png(figures.rotation_probabilities(one, tmp_path / "rot.png", "galaxy 1_2"))
    per_image = {m: pd.DataFrame({"row": np.arange(200), **{k: rng.beta(2, 5, 200) for k in
                                                            ("eta_sz", "eta_zn", "eta_sn")}}) for m in one}
    assert_png(figures.eta_histograms(per_image, tmp_path / "eta.png"))


def test_survey_sky_and_validation_figures(tmp_path):
    models = ["resnet18", "g_resnet18", "gc_resnet18"]
    counts = summary(models, pct_cw=([1.4, 1.3, 1.5], [0.1, 0.1, 0.0]), pct_acw=([1.5, 1.4, 1.5], [0.1, 0.2, 0.0]),
                     cvs=([23.9, 31.1, -0.5], [18.8, 23.2, 0.4]))
    assert_png(figures.survey_plot(counts, tmp_path / "survey.png"))
    sky = summary(models, cvs_north=([3.0, 1.0, 0.2], [1.0, 2.0, 0.1]), cvs_south=([-1.0, 0.5, np.nan], [1, 1, 1]),
                  dipole=([0.01, 0.02, 0.005], [0.002, 0.004, np.nan]), significance_sigma=([2.1, 3.0, 0.4], [0, 0, 0]))
    assert_png(figures.sky_split_plot(sky, tmp_path / "sky.png"))
    assert_png(figures.validation_plot(summary(models, cvs=([1.0, 2.0, 0.1], [0.5, 0.5, np.nan])), 0.3, 2.5,
                                       tmp_path / "validation.png"))


def test_report_references_every_table_and_figure(tmp_path):
    per_run = pd.DataFrame({"model": ["resnet18", "resnet18"], "seed": [0, 1], "test_loss": [0.4, 0.5]})
    table = summary_table("table6_metrics", "Table 6", "Loss per model.", per_run, [Column("test_loss", "test loss")])
    written = table.write(tmp_path / "tables")
    (tmp_path / "figures").mkdir()
    fig_path = tmp_path / "figures" / "curve.png"
    fig_path.write_bytes(PNG)
    report = write_report([Section("Metrics", "Some text.", [table, Figure(fig_path, "What the curve measures.")]),
                           Section("Empty")], tmp_path, "Results")
    text = report.read_text()
    for path in [*written, fig_path]:
        assert path.relative_to(tmp_path).as_posix() in text
    assert "0.4500 ± 0.0707" in text and "*What the curve measures.*" in text and "## Empty" not in text
    assert render([], tmp_path, "T").startswith("# T")


def test_figure_errors_surface(tmp_path):
    with pytest.raises(KeyError):
        figures.survey_plot(pd.DataFrame({"model": ["x"]}), tmp_path / "bad.png")
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_drawing_leaves_matplotlib_global_state_alone(tmp_path):
    """No backend is chosen and no pyplot figure opened by the library: entry points and users own that."""
    code = ("import sys, matplotlib, numpy as np; from gcnn_spin.analysis import figures; "
            "figures.confusion_grid({'a': np.eye(3)}, sys.argv[1], 't'); "
            "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'; "
            "assert matplotlib.rcParams._get_backend_or_none() is None, 'backend chosen'")
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"} | {"PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "c.png")], capture_output=True, text=True,
                          env=env)
    assert done.returncode == 0, done.stderr
    assert_png(tmp_path / "c.png", min_bytes=1000)


def test_no_module_of_the_package_selects_a_backend():
    offenders = [str(p.relative_to(REPO)) for p in (REPO / "gcnn_spin").rglob("*.py")
                 if "matplotlib.use(" in p.read_text() or "import matplotlib.pyplot" in p.read_text()]
    assert offenders == []
