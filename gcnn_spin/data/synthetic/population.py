"""Draw the intrinsic galaxy population: morphology, true class, geometry and brightness (one row per galaxy).

Sizes are drawn for the 424 px reference cutout (disc radii 60-130 px, 30-60 px for the small spirals, so that
arms survive the models' crop of the central ~298 px and downscale to S >= 48 px), then scaled to the survey's
``image_size``. ``clarity`` (0-1) says how recognisable the winding of a spiral is to a volunteer; it is
computed from the 424 px quantities, so the votes do not depend on ``image_size``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from gcnn_spin.conventions import ACW, CLASSES, CW, OTHER
from gcnn_spin.data.synthetic.params import SurveyParams

#: Winding sense -> (true label, letter): +1 Z-wise = CW, -1 S-wise = ACW (see ``render`` for the geometry).
SENSES = {+1: (CW, "Z"), -1: (ACW, "S")}
#: Columns in 424-px units that are rescaled to the survey's image size.
PIXEL_COLUMNS = ("disc_radius_px", "disc_scale_px", "bulge_re_px", "arm_r_in_px", "bar_length_px",
                 "companion_dx_px", "companion_dy_px", "psf_sigma_px")


def _smoothstep(t):
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _balanced_senses(n: int, acw_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """``(n,)`` senses with exactly ``round(n * acw_fraction)`` S-wise (-1), in random order."""
    n_acw = int(round(n * acw_fraction))
    senses = np.ones(n, np.int8)
    senses[:n_acw] = -1
    return rng.permutation(senses)


def draw_population(params: SurveyParams, in_gz1: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    """One row per galaxy (``in_gz1`` ``(N,)`` bool) with the render parameters and ``clarity``.

    Every parameter is drawn for every galaxy in a fixed order, then the morphology picks which are used,
    so changing one rate does not reshuffle the others.
    """
    n = len(in_gz1)
    names = np.array([name for name, _ in params.morphology_mix])
    weights = np.array([w for _, w in params.morphology_mix], float)
    morph = names[rng.choice(len(names), size=n, p=weights / weights.sum())]

    def u(lo, hi):
        return rng.uniform(lo, hi, n)

    small = rng.random(n) < params.small_spiral_fraction
    radius = np.where(small, u(30, 60), u(60, 130))
    scale_ratio = u(2.6, 3.4)
    cos_i = u(np.cos(np.radians(70)), 1.0)
    edge_i = u(82, 90)
    pa = u(0, 180)
    n_arms = rng.choice([1, 2, 3, 4], size=n, p=[0.05, 0.6, 0.2, 0.15]).astype(np.int8)
    pitch = u(10, 35)
    arm_strength = u(0.35, 0.9)
    width_power = rng.choice([2, 3, 4, 5, 6], size=n).astype(np.int8)
    phase = u(0, 360)
    barred = rng.random(n) < 0.35
    bar_strength = u(0.4, 1.2)
    bar_frac = u(0.2, 0.35)
    r_in_frac = u(0.12, 0.25)
    bulge_frac = u(0.05, 0.12)
    bulge_n = rng.choice([1, 2, 4], size=n, p=[0.3, 0.4, 0.3]).astype(np.float32)
    bulge_rel = u(0.3, 2.0)
    disc_i0 = np.maximum(0.03, params.disc_i0_median * np.exp(rng.normal(0, params.disc_i0_log_sigma, n)))
    dust = np.where(rng.random(n) < 0.6, u(0.2, 0.8), 0.0)
    ell_re = u(18, 50)
    ell_q = u(0.55, 1.0)
    ell_n = rng.choice([3, 4], size=n, p=[0.3, 0.7]).astype(np.float32)
    ell_ie = 0.1 * np.exp(rng.normal(0, 0.5, n))
    comp_d, comp_ang = u(35, 90), u(0, 2 * np.pi)
    comp_ratio = u(0.3, 1.0)
    irr_radius = u(40, 90)
    star_flux = np.exp(u(np.log(30), np.log(200)))
    psf = u(1.3, 2.4)
    sky = params.sky_sigma * np.exp(u(np.log(0.8), np.log(1.25)))
    n_stars = rng.poisson(params.star_rate, n).astype(np.int16)
    sense = np.zeros(n, np.int8)
    is_spiral = morph == "spiral"
    for group in (in_gz1, ~in_gz1):
        idx = np.flatnonzero(is_spiral & group)
        sense[idx] = _balanced_senses(idx.size, params.true_acw_fraction, rng)

    edge = morph == "edge_on"
    inc = np.degrees(np.arccos(cos_i))
    inc = np.where(edge, edge_i, inc)
    radius = np.where(edge, radius * 1.15, radius)
    radius = np.where(morph == "irregular", irr_radius, radius)
    q = np.sqrt(np.cos(np.radians(inc)) ** 2 + (0.12 * np.sin(np.radians(inc))) ** 2)
    ellipt = (morph == "elliptical") | (morph == "star")
    disc_scale = radius / scale_ratio
    bulge_re = np.where((morph == "lenticular") | edge, 2.0 * bulge_frac * radius, bulge_frac * radius)
    bulge_ie = disc_i0 * np.where(morph == "lenticular", 2.0 * bulge_rel, bulge_rel)
    bulge_ie = np.where(morph == "irregular", 0.0, bulge_ie)
    bulge_re = np.where(morph == "elliptical", ell_re, bulge_re)
    bulge_re = np.where(morph == "star", ell_re / 4.0, bulge_re)
    bulge_ie = np.where(ellipt, ell_ie, bulge_ie)
    bulge_n = np.where(ellipt, ell_n, bulge_n)
    q = np.where(ellipt, ell_q, q)
    disc_i0 = np.where(ellipt, 0.0, disc_i0)
    disc_i0 = np.where(morph == "irregular", 0.5 * disc_i0, disc_i0)
    has_bar = is_spiral & barred
    r_in = np.where(has_bar, bar_frac * radius, r_in_frac * radius)

    out = pd.DataFrame({
        "morphology": morph,
        "true_label": np.where(is_spiral, np.where(sense > 0, CW, ACW), OTHER).astype(np.int8),
        "sense": sense,
        "n_arms": np.where(is_spiral, n_arms, 0).astype(np.int8),
        "pitch_deg": np.where(is_spiral, pitch, np.nan),
        "arm_phase_deg": np.where(is_spiral, phase, 0.0),
        "arm_strength": np.where(is_spiral, arm_strength, 0.0),
        "arm_width_power": np.where(is_spiral, width_power, 0).astype(np.int8),
        "arm_r_in_px": np.where(is_spiral, r_in, np.nan),
        "bar_strength": np.where(has_bar, bar_strength, 0.0),
        "bar_length_px": np.where(has_bar, bar_frac * radius, 0.0),
        "inclination_deg": np.where(ellipt, np.degrees(np.arccos(ell_q)), inc),
        "position_angle_deg": pa,
        "axis_ratio": q,
        "disc_radius_px": np.where(ellipt, 0.0, radius),
        "disc_scale_px": np.where(ellipt, 1.0, disc_scale),
        "disc_i0": disc_i0,
        "bulge_re_px": bulge_re,
        "bulge_sersic_n": bulge_n,
        "bulge_ie": bulge_ie,
        "dust_lane": np.where(edge, dust, 0.0),
        "companion_dx_px": np.where(morph == "merger", comp_d * np.cos(comp_ang), 0.0),
        "companion_dy_px": np.where(morph == "merger", comp_d * np.sin(comp_ang), 0.0),
        "companion_flux_ratio": np.where(morph == "merger", comp_ratio, 0.0),
        "star_flux": np.where(morph == "star", star_flux, 0.0),
        "psf_sigma_px": psf,
        "sky_sigma": sky,
        "n_stars": n_stars,
    })
    out.insert(2, "true_class", np.array(CLASSES)[out["true_label"]])
    out.insert(4, "winding", np.where(sense > 0, "Z", np.where(sense < 0, "S", "")))
    out["visibility"] = visibility(out)
    out["clarity"] = np.where(is_spiral, spiral_clarity(out), 0.0)
    for col in PIXEL_COLUMNS:
        out[col] = out[col] * params.pixel_scale
    return out


def visibility(g: pd.DataFrame) -> np.ndarray:
    """How well any galaxy stands out of the sky (0-1): surface brightness over noise, and apparent size."""
    # Disc at one scale length, or a bulge's mean surface brightness inside re (~3x its value at re).
    peak = np.maximum(g["disc_i0"] * np.exp(-1.0), 3.0 * g["bulge_ie"])
    snr = peak / g["sky_sigma"]
    size = np.maximum(g["disc_radius_px"], 3.0 * g["bulge_re_px"])
    return (snr ** 2 / (snr ** 2 + 2.0 ** 2) * _smoothstep((size - 10.0) / 60.0)).to_numpy()


def spiral_clarity(g: pd.DataFrame) -> np.ndarray:
    """How recognisable a spiral's winding is (0-1), in 424 px units: faint, small, tightly wound (low pitch),
    strongly inclined or weak-armed spirals are hard."""
    # Per-pixel S/N of the arms at 1.5 scale lengths; the eye integrates along an arm, so ~1 is enough.
    snr = g["disc_i0"] * np.exp(-1.5) * g["arm_strength"] / g["sky_sigma"]
    f_snr = snr ** 2 / (snr ** 2 + 1.0)
    f_size = _smoothstep((g["disc_radius_px"] - 15.0) / 45.0)
    f_pitch = _smoothstep((g["pitch_deg"] - 6.0) / 14.0)
    f_inc = _smoothstep((np.cos(np.radians(g["inclination_deg"])) - 0.2) / 0.4)
    f_arm = _smoothstep((g["arm_strength"] - 0.15) / 0.4)
    return (f_snr * f_size * np.sqrt(f_pitch * f_arm) * f_inc).fillna(0.0).to_numpy()
