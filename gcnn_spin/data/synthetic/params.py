"""Parameters of a synthetic survey: one frozen dataclass, hashed into the survey's completion marker."""

from __future__ import annotations

import dataclasses
import math

#: Bump when the generator's output for the same parameters changes, so old surveys are not reused.
GENERATOR_VERSION = 1

#: Default intrinsic mix (spiral-rich compared with GZ1, so that a small sample is learnable).
DEFAULT_MORPHOLOGY_MIX: tuple[tuple[str, float], ...] = (
    ("spiral", 0.55), ("elliptical", 0.17), ("lenticular", 0.07), ("edge_on", 0.10),
    ("merger", 0.04), ("irregular", 0.04), ("star", 0.03),
)
MORPHOLOGIES: tuple[str, ...] = tuple(name for name, _ in DEFAULT_MORPHOLOGY_MIX)
#: Grid spacing 1/sqrt(density) >= 25" keeps distinct galaxies > 10" apart (jitter is +-0.3 spacing).
MAX_DENSITY_PER_DEG2 = 20000.0


@dataclasses.dataclass(frozen=True)
class SurveyParams:
    """Everything that determines the bytes of a synthetic survey (``workers`` does not).

    Votes: ``swise_bias`` is the probability that a volunteer who would vote Z-wise (CW) votes S-wise (ACW)
    instead (every CW vote is moved with that probability, independently), the GZ1-like human bias that puts
    a positive CVS into the labels. ``true_acw_fraction`` is the true fraction of S-wise (ACW) spirals, met
    exactly (rounded) among the GZ1 galaxies and among the survey-only galaxies; 0.5 = a symmetric sky.
    Rates named ``p_*`` are per GZ1 galaxy and mutually exclusive (one defect per galaxy at most).
    """

    n_gz1: int = 3000
    n_survey_only: int = 2000
    seed: int = 0
    swise_bias: float = 0.0
    true_acw_fraction: float = 0.5
    image_size: int = 424
    jpeg_quality: int = 90
    morphology_mix: tuple[tuple[str, float], ...] = DEFAULT_MORPHOLOGY_MIX
    #: Fraction of spirals drawn small (disc radius 30-60 px instead of 60-130 px in a 424 px cutout).
    small_spiral_fraction: float = 0.2
    #: Median and log-scatter of the disc's central surface brightness (flux units of the stretch).
    disc_i0_median: float = 0.5
    disc_i0_log_sigma: float = 0.7
    sky_sigma: float = 0.015
    #: Mean number of foreground stars per cutout.
    star_rate: float = 0.35
    n_vote_min: int = 20
    n_vote_max: int = 60
    #: Dirichlet concentration of a galaxy's vote probabilities around the model's (volunteer scatter).
    vote_concentration: float = 25.0
    #: Strength of the EL -> CS correction of P_*_DEBIASED for faint, small galaxies (0 = none).
    debias_strength: float = 0.4
    p_no_desi: float = 0.03
    p_no_photometry: float = 0.005
    p_neighbour: float = 0.03
    p_bad_mag_err: float = 0.008
    p_small_r50: float = 0.008
    p_bad_r50_err: float = 0.008
    #: Sky patch: centre (deg) and surface density of galaxies (GZ1 + survey-only) per square degree.
    ra_center: float = 0.0
    dec_center: float = 0.0
    density_per_deg2: float = 600.0
    #: Per-axis scatter of the DESI position about the SDSS (GZ1) one.
    desi_offset_arcsec: float = 0.3

    def __post_init__(self) -> None:
        problems = []
        if self.n_gz1 < 0 or self.n_survey_only < 0 or self.n_gz1 + self.n_survey_only == 0:
            problems.append(f"n_gz1={self.n_gz1}, n_survey_only={self.n_survey_only}: need >= 0 and a total > 0")
        if not 0.0 <= self.swise_bias <= 1.0:
            problems.append(f"swise_bias={self.swise_bias} is not in [0, 1]")
        if not 0.0 <= self.true_acw_fraction <= 1.0:
            problems.append(f"true_acw_fraction={self.true_acw_fraction} is not in [0, 1]")
        if self.image_size < 16:
            problems.append(f"image_size={self.image_size} is below 16 px")
        if not 1 <= self.jpeg_quality <= 100:
            problems.append(f"jpeg_quality={self.jpeg_quality} is not in [1, 100]")
        if not 1 <= self.n_vote_min <= self.n_vote_max:
            problems.append(f"n_vote range [{self.n_vote_min}, {self.n_vote_max}] is empty or below 1")
        names = [name for name, _ in self.morphology_mix]
        unknown = sorted(set(names) - set(MORPHOLOGIES))
        if unknown or len(set(names)) != len(names):
            problems.append(f"morphology_mix names {names}: unknown {unknown} or repeated; valid: {list(MORPHOLOGIES)}")
        weights = [w for _, w in self.morphology_mix]
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            problems.append(f"morphology_mix weights {weights} must be >= 0 with a positive sum")
        rates = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name.startswith("p_")}
        if any(not 0 <= v <= 1 for v in rates.values()) or sum(rates.values()) > 1:
            problems.append(f"defect rates {rates} must each be in [0, 1] and sum to <= 1")
        if not -90 < self.dec_center < 90 or not math.isfinite(self.ra_center):
            problems.append(f"sky patch centre (ra_center={self.ra_center}, dec_center={self.dec_center}) is not valid")
        if not 0 < self.density_per_deg2 <= MAX_DENSITY_PER_DEG2:
            problems.append(f"density_per_deg2={self.density_per_deg2} must be in (0, {MAX_DENSITY_PER_DEG2}] "
                            "(closer galaxies would make the 10\" cross-match ambiguous)")
        if not 0 <= self.desi_offset_arcsec <= 2.0:
            problems.append(f"desi_offset_arcsec={self.desi_offset_arcsec} must be in [0, 2] "
                            "(well inside the 10\" match radius)")
        if problems:
            raise ValueError("invalid synthetic survey parameters:\n  " + "\n  ".join(problems))

    @property
    def n_total(self) -> int:
        return self.n_gz1 + self.n_survey_only

    @property
    def pixel_scale(self) -> float:
        """Factor from the 424 px reference cutout (where sizes are drawn) to this survey's images."""
        return self.image_size / 424.0

    def to_dict(self) -> dict:
        """Plain data for hashing and for ``synthetic_params.json`` (includes :data:`GENERATOR_VERSION`)."""
        out = dataclasses.asdict(self)
        out["morphology_mix"] = [list(pair) for pair in self.morphology_mix]
        out["generator_version"] = GENERATOR_VERSION
        return out
