"""The overlap index η on known answers, and the MC-dropout rotation study on a tiny torch model."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from gcnn_spin.analysis.overlap import gaussian_overlap, kde_on_grid, overlap_index
from gcnn_spin.analysis.rotation import (ANGLES_DEG, PAIRS, compare_models, enable_mc_dropout, mc_probabilities,
                                         mean_over_angles, overlaps, rotation_table, select_images)


def test_identical_samples_overlap_fully(rng):
    x = rng.uniform(0, 1, 10)
    assert overlap_index(x, x) == pytest.approx(1.0, abs=1e-6)
    # also where the reflection matters: a sample piled at a boundary keeps all its mass on [0, 1]
    assert overlap_index(np.zeros(10), np.zeros(10)) == pytest.approx(1.0, abs=1e-6)
    assert overlap_index(np.ones(7), np.ones(7)) == pytest.approx(1.0, abs=1e-6)


def test_far_apart_samples_do_not_overlap():
    assert overlap_index(np.zeros(10), np.ones(10)) < 1e-4
    assert overlap_index(np.full(10, 0.05), np.full(10, 0.95)) < 1e-3


@pytest.mark.parametrize("mu_a, mu_b, sigma", [(0.35, 0.65, 0.05), (0.45, 0.55, 0.08), (0.4, 0.6, 0.02)])
def test_two_gaussians_match_the_closed_form(rng, mu_a, mu_b, sigma):
    a, b = rng.normal(mu_a, sigma, 20000), rng.normal(mu_b, sigma, 20000)
    broadened = math.hypot(sigma, 0.1)  # the KDE convolves each sample with the 0.1 kernel
    expected = gaussian_overlap(mu_a, mu_b, broadened)
    assert overlap_index(a, b) == pytest.approx(expected, abs=0.01)
    assert overlap_index(a, b) != pytest.approx(gaussian_overlap(mu_a, mu_b, sigma), abs=0.03)  # not the raw σ


def test_density_integrates_to_one_and_batches_match_single_calls(rng):
    samples = rng.uniform(0, 1, (4, 3, 10))
    dens = kde_on_grid(samples)
    assert dens.shape == (4, 3, 512)
    assert np.trapz(dens, dx=1 / 511, axis=-1) == pytest.approx(np.ones((4, 3)), abs=1e-6)
    eta = overlap_index(samples, samples[::-1])
    assert eta.shape == (4, 3)
    assert eta[1, 2] == pytest.approx(overlap_index(samples[1, 2], samples[2, 2]))
    assert overlap_index(samples[0, 0], samples[1, 1]) == pytest.approx(overlap_index(samples[1, 1], samples[0, 0]))


# ----------------------------------------------------------------------------- rotation study


class TinyNet(torch.nn.Module):
    """Brightness-weighted features -> BatchNorm -> Dropout -> 3 logits: enough to test MC dropout wiring."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.norm = torch.nn.BatchNorm1d(8)
        self.drop = torch.nn.Dropout(0.5)
        self.fc = torch.nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(self.drop(self.norm(self.conv(x).mean(dim=(2, 3)))))


class RecordingRotate:
    """A rotate-and-crop (affine grid) that records the angles it was asked for."""

    def __init__(self):
        self.angles = []

    def __call__(self, images, angles, out_size):
        self.angles.append(angles.detach().cpu().numpy().copy())
        cos, sin = torch.cos(angles), torch.sin(angles)
        ratio = out_size / images.shape[-1]
        theta = torch.stack([torch.stack([ratio * cos, -ratio * sin, 0 * cos], -1),
                             torch.stack([ratio * sin, ratio * cos, 0 * cos], -1)], 1)
        grid = F.affine_grid(theta, (len(images), 3, out_size, out_size), align_corners=False)
        return F.grid_sample(images, grid, align_corners=False)


class FakeStore:
    """What the rotation study reads from a labelled store: margin images, rows, attrs, read_block."""

    def __init__(self, n=6, size=12, margin=19, rng=None):
        rng = rng or np.random.default_rng(0)
        self.images = rng.integers(0, 256, (n, 3, margin, margin), dtype=np.uint8)
        self.attrs = {"image_size": size, "margin_size": margin, "margin": True, "chunk_images": 4}
        self.image_size = size
        labels = np.eye(3)[np.arange(n) % 3] * 0.9 + 0.05 / 1.0
        self.rows = pd.DataFrame({"dr8_id": [f"1_{i}" for i in range(n)], "p_cw": labels[:, 0],
                                  "p_acw": labels[:, 1], "p_other": labels[:, 2], "ok": True})
        self.reads = 0
        self.identity = "fake-store-content"  # what layout.store_identity reads of a real store

    def __len__(self):
        return len(self.images)

    def read_block(self, start, stop):
        self.reads += 1
        return self.images[start:stop]


def test_mc_dropout_turns_on_dropout_only():
    net = TinyNet()
    assert enable_mc_dropout(net) == 1
    assert net.drop.training and not net.norm.training and not net.training
    with pytest.raises(ValueError, match="no dropout"):
        enable_mc_dropout(torch.nn.Sequential(torch.nn.Linear(2, 3)))


def test_mc_probabilities_batch_every_angle_and_pass():
    net, rotate = TinyNet(), RecordingRotate()
    enable_mc_dropout(net)
    images = torch.rand(2, 3, 19, 19)
    probs = mc_probabilities(net, images, 12, n_passes=10, rotate=rotate)
    assert probs.shape == (2, 9, 10, 3)
    assert torch.allclose(probs.sum(-1), torch.ones(2, 9, 10), atol=1e-5)
    assert len(rotate.angles) == 1  # one batch for all angles
    assert np.allclose(rotate.angles[0], np.tile(np.radians(np.linspace(0, 180, 9)), 2), atol=1e-6)
    assert probs[:, :, :, 0].std(dim=-1).min() > 0  # dropout is on: the passes differ
    # angle 0 needs no rotation: its mean matches the model's eval-mode output only in expectation, but the
    # passes at angle 0 of image 0 must come from image 0 (not image 1)
    net.eval()
    crops = rotate(images, torch.zeros(2), 12)
    with torch.no_grad():
        eval_probs = torch.softmax(net(crops), -1)
    err_right = (probs[0, 0].mean(0) - eval_probs[0]).abs().sum()
    err_wrong = (probs[0, 0].mean(0) - eval_probs[1]).abs().sum()
    assert err_right < err_wrong


def test_overlaps_compare_the_right_classes():
    probs = np.zeros((1, 2, 10, 3))
    probs[..., 0], probs[..., 1], probs[..., 2] = 0.9, 0.1, 0.0  # CW far from ACW and Other; ACW near Other
    eta = overlaps(probs)
    assert set(eta) == set(PAIRS) and eta["eta_sz"].shape == (1, 2)
    assert eta["eta_sz"][0, 0] < 0.01 and eta["eta_zn"][0, 0] < 0.01 and eta["eta_sn"][0, 0] > 0.4


def test_mean_over_angles_uses_every_angle():
    table = pd.DataFrame({"row": [5] * 9, "angle_deg": ANGLES_DEG, "eta_sz": np.arange(9.0),
                          "eta_zn": 0.5, "eta_sn": 0.2})
    means = mean_over_angles(table)
    assert means.loc[0, "eta_sz"] == pytest.approx(4.0)  # not 8.0, the last angle's value


def test_rotation_table_and_model_comparison():
    store, rotate = FakeStore(), RecordingRotate()
    rows = select_images(store.rows, 5, seed=1)
    assert len(rows) == 5 and np.array_equal(rows, select_images(store.rows, 5, seed=1))
    table = rotation_table(TinyNet(), store, rows, n_passes=4, batch_images=2, rotate=rotate, progress=False)
    assert len(table) == 5 * 9 and set(table["row"]) == set(rows)
    assert store.reads <= 2  # rows come chunk by chunk (chunk_images = 4), not image by image
    assert table["dr8_id"].tolist()[:9] == [f"1_{rows[0]}"] * 9
    assert ((table[list(PAIRS)] >= 0) & (table[list(PAIRS)] <= 1 + 1e-9)).all().all()
    a = pd.DataFrame({"row": [1, 2, 3, 4], "eta_sz": [0.1, 0.2, 0.3, 0.4], "eta_zn": 0.5, "eta_sn": 0.5})
    b = pd.DataFrame({"row": [2, 3, 4, 9], "eta_sz": [0.3, 0.1, 0.5, 0.0], "eta_zn": 0.4, "eta_sn": 0.5})
    comparison = compare_models({"m1": a, "m2": b}).iloc[0]
    assert comparison["n_images"] == 3
    assert comparison["eta_sz_a_lower"] == pytest.approx(2 / 3) and comparison["eta_sz_b_lower"] == pytest.approx(1 / 3)
    assert comparison["eta_zn_b_lower"] == 1.0 and comparison["eta_sn_a_lower"] == 0.0  # ties count for neither
    assert comparison["eta_sn_within"] == 1.0 and comparison["eta_sz_within"] == 0.0


def test_model_comparison_counts_lower_only_beyond_the_tolerance():
    """The study's count: a model has the lower ⟨η⟩ only by more than 0.01; the rest are within 0.01."""
    a = pd.DataFrame({"row": range(5), "eta_sz": [0.100, 0.100, 0.100, 0.100, 0.100], "eta_zn": 0.5, "eta_sn": 0.5})
    b = pd.DataFrame({"row": range(5), "eta_sz": [0.105, 0.095, 0.130, 0.050, 0.1099], "eta_zn": 0.5, "eta_sn": 0.5})
    row = compare_models({"m1": a, "m2": b}).iloc[0]
    assert (row["eta_sz_a_lower"], row["eta_sz_within"], row["eta_sz_b_lower"]) == pytest.approx((0.2, 0.6, 0.2))
    loose = compare_models({"m1": a, "m2": b}, tolerance=0.0).iloc[0]
    assert (loose["eta_sz_a_lower"], loose["eta_sz_within"], loose["eta_sz_b_lower"]) == pytest.approx((0.6, 0, 0.4))
    assert list(row.index[3:6]) == ["eta_sz_a_lower", "eta_sz_within", "eta_sz_b_lower"]


def test_survey_store_without_margin_is_refused():
    store = FakeStore(margin=12)
    store.attrs["margin"] = False
    with pytest.raises(ValueError, match="no margin"):
        rotation_table(TinyNet(), store, np.arange(2), rotate=RecordingRotate(), progress=False)


def test_study_runs_with_the_data_package_rotation():
    pytest.importorskip("gcnn_spin.data.augment")
    store = FakeStore(n=3)
    table = rotation_table(TinyNet(), store, np.arange(3), n_passes=3, progress=False)  # default rotate_crop
    assert len(table) == 27 and table[list(PAIRS)].notna().all().all()


def test_rotation_task_writes_output_and_marker_once(tmp_path, monkeypatch):
    import gcnn_spin.data.store as store_module
    from gcnn_spin.run import discover_runs
    from gcnn_spin.analysis.studies import load_study, run_rotation_task
    from gcnn_spin.io import read_marker, write_marker
    from conftest import flip_byte_in_column

    run_dir = tmp_path / "runs" / "g_resnet18" / "seed1"
    run_dir.mkdir(parents=True)
    torch.save(TinyNet(), run_dir / "model_export.pt")
    (run_dir / "metrics.json").write_text('{"val": {"loss": 1, "accuracy": 0.5}, "test": {"loss": 1, "accuracy": 0.5}}')
    for name in ("history.csv", "test_predictions.parquet"):
        (run_dir / name).write_text("")
    write_marker(run_dir, {"x": 1}, model="g_resnet18", seed=1)
    fake = FakeStore()
    monkeypatch.setattr(store_module, "open_store", lambda path: fake)
    (run,) = discover_runs(tmp_path / "runs")
    assert run.complete
    out = run_rotation_task(run, tmp_path / "results", tmp_path / "test.zarr", n_images=4, n_passes=3,
                            rotate=RecordingRotate(), progress=False, device="cpu")
    assert out.name == "seed1.parquet" and out.parent.name == "g_resnet18" and read_marker(out) is not None
    assert len(pd.read_parquet(out)) == 4 * 9
    first = read_marker(out)
    rotate = RecordingRotate()
    run_rotation_task(run, tmp_path / "results", tmp_path / "test.zarr", n_images=4, n_passes=3, rotate=rotate,
                      progress=False, device="cpu")
    assert rotate.angles == [] and read_marker(out) == first  # done: skipped
    tables, issues = load_study(tmp_path / "results", "rotation", [run])
    assert list(tables) == [("g_resnet18", 1)] and not issues

    flip_byte_in_column(out, "p_cw_mean")  # same size: the marker still vouches for it
    tables, issues = load_study(tmp_path / "results", "rotation", [run])
    assert tables == {} and len(issues) == 1  # reported as damaged, never read
    assert f"rotation study output {out.name}: damaged: {out}: cannot read this rotation study output" in \
        issues[0].problem and "checksum" in issues[0].problem


def test_the_study_codes_average_keeps_only_the_last_angle():
    """The study's code reset η inside its angle loop: ⟨η⟩ = η(last angle) / n_angles."""
    angles = [0.0, 20.0, 40.0, 60.0, 80.0, 100.0, 120.0, 140.0, 160.0]
    table = pd.DataFrame({"row": [3] * 9 + [5] * 9, "angle_deg": angles[::-1] + angles,
                          "eta_sz": np.r_[np.arange(9.0)[::-1], np.full(9, 0.9)], "eta_zn": 0.0, "eta_sn": 1.0})
    bugged = rotation_mean(table, True).set_index("row")
    assert bugged.loc[3, "eta_sz"] == pytest.approx(8 / 9)  # row 3's 160° value is 8, whatever the row order
    assert bugged.loc[5, "eta_sz"] == pytest.approx(0.1) and bugged.loc[5, "eta_sn"] == pytest.approx(1 / 9)
    assert rotation_mean(table, False).set_index("row").loc[3, "eta_sz"] == pytest.approx(4.0)


def rotation_mean(table, bug):
    return mean_over_angles(table, study_code_bug=bug)


def _study_code_overlap(x, y, beta=0.1, n_z=100):
    """The study's formula, written out loop by loop: unreflected KDE on 100 points, sum(min) * (1/100)."""
    z = np.linspace(0, 1, n_z)
    f = [np.array([sum(math.exp(-0.5 * (zi - v) ** 2 / beta ** 2) for v in s) / (len(s) * beta * math.sqrt(2 * math.pi))
                   for zi in z]) for s in (x, y)]
    return float(np.minimum(*f).sum() / n_z)


def test_study_code_kde_is_the_studys_formula(rng):
    from gcnn_spin.analysis.rotation import overlaps

    probs = rng.dirichlet([1, 1, 1], size=(2, 3, 10))  # (B, A, P, 3)
    etas = overlaps(probs, kde="study_code")
    assert etas["eta_sz"][1, 2] == pytest.approx(_study_code_overlap(probs[1, 2, :, 1], probs[1, 2, :, 0]), abs=1e-12)
    assert etas["eta_sn"][0, 1] == pytest.approx(_study_code_overlap(probs[0, 1, :, 1], probs[0, 1, :, 2]), abs=1e-12)
    # without reflection, identical samples piled at a boundary overlap by about half, not fully
    piled = np.zeros((1, 1, 10, 3))
    assert 0.45 < overlaps(piled, kde="study_code")["eta_sz"][0, 0] < 0.6
    assert overlaps(piled)["eta_sz"][0, 0] == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="rotation_study.kde='silverman': must be one of reflected, study_code"):
        overlaps(probs, kde="silverman")


def test_the_studies_stage_takes_its_rotation_settings_from_the_config():
    import argparse

    from gcnn_spin.analysis.studies import rotation_settings
    from gcnn_spin.errors import UserError

    def args(config, *overrides, **kw):
        return argparse.Namespace(config=config, overrides=list(overrides), n_images=kw.get("n_images"),
                                  passes=None, select_seed=0)

    study, head_only = rotation_settings(args("experiment"))
    assert study["angles_deg"] == tuple(float(a) for a in range(0, 180, 20)) and study["kde"] == "study_code"
    assert head_only and study["n_passes"] == 10 and study["n_images"] == 1000
    demo, _ = rotation_settings(args("demo", n_images=40))
    assert demo["angles_deg"] == ANGLES_DEG and demo["kde"] == "reflected" and demo["n_images"] == 40
    with pytest.raises(UserError, match="rotation_study.kde"):
        rotation_settings(args("demo", "rotation_study.kde=silverman"))
