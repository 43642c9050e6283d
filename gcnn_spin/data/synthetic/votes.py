"""Volunteer votes the way Galaxy Zoo 1 collected them, and the table-2 columns derived from them.

Each of ``NVOTE`` (20-60) volunteers picks one of ``VOTE_CLASSES`` = (EL, CW, ACW, EDGE, DK, MG). A galaxy's
vote probabilities come from its truth: a spiral gets its true winding sense with probability growing with its
``clarity`` and EL / DK / the wrong sense otherwise (faint, small, tightly wound, inclined spirals are hard);
EDGE grows with inclination; other morphologies have their own mixes, with CW and ACW always symmetric. The
probabilities are scattered per galaxy (Dirichlet, ``vote_concentration``) and the votes drawn (multinomial).

S-wise bias (``swise_bias = b``): afterwards every CW vote independently becomes an ACW vote with probability
``b`` (drawn from its own random stream, so ``b`` changes nothing else). The truth stays symmetric, the labels
acquire ACW > CW, as in GZ1 (Land et al. 2008).

Fractions are ``counts / NVOTE``, printed to 3 decimals as in the published table, so ``round(P * NVOTE)``
gives the counts back exactly and the six fractions sum to 1 within 0.003.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from gcnn_spin.data.synthetic.params import SurveyParams

VOTE_CLASSES: tuple[str, ...] = ("EL", "CW", "ACW", "EDGE", "DK", "MG")
EL, V_CW, V_ACW, EDGE, DK, MG = range(6)
COUNT_COLUMNS: tuple[str, ...] = tuple(f"n_{name.lower()}" for name in VOTE_CLASSES)
#: Base vote probabilities (EL, CW, ACW, EDGE, DK, MG) of the non-spiral morphologies.
BASE_PROBABILITIES: dict[str, tuple[float, ...]] = {
    "elliptical": (0.90, 0.01, 0.01, 0.01, 0.04, 0.03),
    "lenticular": (0.60, 0.04, 0.04, 0.14, 0.14, 0.04),
    "edge_on": (0.08, 0.015, 0.015, 0.82, 0.04, 0.03),
    "merger": (0.10, 0.03, 0.03, 0.02, 0.17, 0.65),
    "irregular": (0.25, 0.04, 0.04, 0.04, 0.55, 0.08),
    "star": (0.08, 0.005, 0.005, 0.01, 0.87, 0.03),
}


def vote_probabilities(truth: pd.DataFrame) -> np.ndarray:
    """Mean vote probabilities ``(N, 6)`` in :data:`VOTE_CLASSES` order, rows summing to 1."""
    n = len(truth)
    probs = np.zeros((n, 6))
    morph = truth["morphology"].to_numpy()
    vis = truth["visibility"].to_numpy()
    for name, base in BASE_PROBABILITIES.items():
        rows = morph == name
        probs[rows] = base
        # Faint or tiny objects: "don't know" takes votes from everything.
        probs[rows, DK] += 0.4 * (1.0 - vis[rows])
    spiral = morph == "spiral"
    c = truth["clarity"].to_numpy()[spiral]
    sense = truth["sense"].to_numpy()[spiral]
    inc = truth["inclination_deg"].to_numpy()[spiral]
    p_true = 0.08 + 0.87 * c
    p_wrong = 0.02 + 0.06 * (1.0 - c)
    rows = np.flatnonzero(spiral)
    probs[rows, np.where(sense > 0, V_CW, V_ACW)] = p_true
    probs[rows, np.where(sense > 0, V_ACW, V_CW)] = p_wrong
    probs[rows, EL] = 0.04 + 0.40 * (1.0 - c)
    probs[rows, EDGE] = 0.01 + 0.5 * np.clip((inc - 55.0) / 30.0, 0.0, 1.0)
    probs[rows, DK] = 0.02 + 0.20 * (1.0 - c)
    probs[rows, MG] = 0.01
    return probs / probs.sum(axis=1, keepdims=True)


def draw_votes(truth: pd.DataFrame, params: SurveyParams, rng: np.random.Generator,
               bias_rng: np.random.Generator) -> pd.DataFrame:
    """Vote counts per galaxy: ``n_vote`` and :data:`COUNT_COLUMNS` (after the S-wise bias), plus
    ``n_cw_unbiased`` (the CW votes before the bias moved some to ACW)."""
    n = len(truth)
    mean = vote_probabilities(truth)
    span = params.n_vote_max - params.n_vote_min
    n_vote = params.n_vote_min + np.rint(span * rng.beta(2.0, 2.5, n)).astype(np.int64)
    scattered = rng.gamma(params.vote_concentration * mean + 1e-3)
    scattered /= scattered.sum(axis=1, keepdims=True)
    counts = rng.multinomial(n_vote, scattered)
    n_cw_unbiased = counts[:, V_CW].copy()
    moved = bias_rng.binomial(counts[:, V_CW], params.swise_bias)
    counts[:, V_CW] -= moved
    counts[:, V_ACW] += moved
    out = pd.DataFrame(counts, columns=list(COUNT_COLUMNS), index=truth.index).astype(np.int16)
    out.insert(0, "n_vote", n_vote.astype(np.int16))
    out["n_cw_unbiased"] = n_cw_unbiased.astype(np.int16)
    return out


def table2_columns(votes: pd.DataFrame, visibility: np.ndarray, debias_strength: float) -> pd.DataFrame:
    """GZ1 table-2 vote columns from counts: ``NVOTE, P_EL, ..., P_MG, P_CS, P_EL_DEBIASED, P_CS_DEBIASED,
    SPIRAL, ELLIPTICAL, UNCERTAIN``.

    ``P_CS = (CW + ACW + EDGE) / NVOTE``. Debiasing (a stand-in for Bamford et al. 2009's correction of the
    redshift-dependent bias against faint spirals) moves ``debias_strength * (1 - visibility)`` of ``P_EL``
    to ``P_CS``. Flags follow the published "clean" 0.8 threshold on the debiased fractions.
    """
    n_vote = votes["n_vote"].to_numpy().astype(float)
    frac = {name: votes[col].to_numpy() / n_vote for name, col in zip(VOTE_CLASSES, COUNT_COLUMNS)}
    p_cs = (votes["n_cw"] + votes["n_acw"] + votes["n_edge"]).to_numpy() / n_vote
    shift = frac["EL"] * debias_strength * (1.0 - np.asarray(visibility))
    p_el_deb, p_cs_deb = np.round(frac["EL"] - shift, 3), np.round(p_cs + shift, 3)
    out = pd.DataFrame({"NVOTE": votes["n_vote"].to_numpy().astype(np.int64)})
    for name in VOTE_CLASSES:
        out[f"P_{name}"] = np.round(frac[name], 3)
    out["P_CS"] = np.round(p_cs, 3)
    out["P_EL_DEBIASED"] = p_el_deb
    out["P_CS_DEBIASED"] = p_cs_deb
    out["SPIRAL"] = (p_cs_deb > 0.8).astype(np.int64)
    out["ELLIPTICAL"] = (p_el_deb > 0.8).astype(np.int64)
    out["UNCERTAIN"] = (1 - out["SPIRAL"] - out["ELLIPTICAL"]).astype(np.int64)
    return out
