"""Render one synthetic galaxy as a DESI-like RGB cutout ``(S, S, 3) uint8`` (vectorised numpy, ~ms each).

Image frame (one definition for every synthetic stage):
    pixel ``(row, col)`` of the array is shown with row 0 at the **top**; the model works in ``x = col - c``
    (right) and ``y = c - row`` (**up**, as the image is seen), ``c = (S - 1) / 2``, so the centre of the
    image is exactly between pixels for even ``S`` and mirroring the array maps the pixel grid onto itself.
    Angles are counter-clockwise **as seen on the image** (from +x towards +y-up).

Position angle: ``position_angle_deg`` is the astronomical PA of the major axis for a north-up, east-left
cutout: measured from up (north) towards left (east), i.e. counter-clockwise as seen.

Winding sense (Galaxy Zoo 1 wording, see ``gcnn_spin.conventions``): a log-spiral arm in the disc plane is
``phi(r) = phase + sense * ln(r / r_in) / tan(pitch)`` with ``phi`` counter-clockwise as seen.

* ``sense = +1``, **Z-wise = CW**: going outward along an arm, its position angle increases, i.e. the arm
  turns counter-clockwise as seen; traced inward from its tip it turns clockwise. A two-armed one looks like
  the letter Z: the Z's diagonal runs from bottom-left to top-right and at its top end the stroke turns left
  (counter-clockwise), at its bottom end right. With trailing arms the disc rotates clockwise.
* ``sense = -1``, **S-wise = ACW**: the mirror image, like the letter S (position angle decreases outward).

The disc frame ``(u, v)`` is a proper rotation of ``(x, y)`` (then ``v`` is stretched by ``1/q``), so position
angle and inclination never change the sense. Mirroring an image equals rendering the opposite sense with
``arm_phase -> -arm_phase`` and ``position_angle -> -position_angle`` (left-right) or ``180 - position_angle``
(up-down); both are tested, as are the Z shape and the rate ``1 / tan(pitch)`` of the turning.

Seeing is applied in closed form instead of by a convolution (which would cost more than the rest): every
profile is softened at the core by the PSF's sigma and the arm modulation is damped by
``exp(-(k sigma)^2 / 2)``, the exact Gaussian-blur factor of a sinusoid whose local wavenumber for an m-armed log
spiral is ``k = m / (r sin(pitch))``; foreground stars are drawn as the PSF itself.
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Mapping

import numpy as np
from PIL import Image

#: RGB colours (DESI g, r, z shown as B, G, R): old stars red-yellow, young arms blue.
BULGE_RGB = np.array([1.00, 0.78, 0.55], np.float32)
DISC_RGB = np.array([0.95, 0.86, 0.74], np.float32)
ARM_RGB = np.array([0.55, 0.72, 1.00], np.float32)
CLUMP_RGB = np.array([0.60, 0.74, 1.00], np.float32)
STAR_RGB = np.array([1.00, 0.97, 0.92], np.float32)
DUST_RGB = np.array([0.85, 0.75, 0.65], np.float32)  # fraction of light a dust lane removes per channel
#: asinh stretch: ``u = asinh(f / beta) / asinh(f_max / beta)``, like the Legacy Surveys RGB jpgs.
STRETCH_BETA = 0.03
STRETCH_MAX = 4.0
#: Sky noise per channel relative to ``sky_sigma`` (z noisiest).
NOISE_RGB = np.array([1.15, 1.0, 1.05], np.float32)
SERSIC_B = {1: 1.678, 2: 3.672, 3: 5.670, 4: 7.669}


@functools.lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """``x`` (right) and ``y`` (up) of every pixel relative to the image centre, each ``(S, S)`` float32."""
    c = (size - 1) / 2.0
    idx = np.arange(size, dtype=np.float32) - np.float32(c)
    x = np.broadcast_to(idx[None, :], (size, size)).copy()
    y = np.broadcast_to(-idx[:, None], (size, size)).copy()
    return x, y


@functools.lru_cache(maxsize=4)
def noise_bank(seed: int, size: int) -> np.ndarray:
    """Unit-variance sky noise ``(3, 2S, 2S)`` float32, slightly pixel-correlated like a resampled cutout.

    One bank per (survey seed, image size); each galaxy takes a random window of it, randomly flipped:
    fresh normals for every 424 px cutout would cost more than rendering the galaxy.
    """
    from scipy import ndimage

    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5C1]))
    bank = rng.standard_normal((3, 2 * size, 2 * size), dtype=np.float32)
    bank = ndimage.gaussian_filter(bank, sigma=(0, 0.6, 0.6), mode="wrap")
    return (bank / bank.std(axis=(1, 2), keepdims=True)).astype(np.float32)


def _sersic(r_over_re: np.ndarray, n: float) -> np.ndarray:
    """``exp(-b_n ((r/re)^(1/n) - 1))``: surface brightness relative to its value at ``re``."""
    n_int = int(round(n))
    if n_int in SERSIC_B and abs(n - n_int) < 1e-6:
        root = {1: lambda a: a, 2: np.sqrt, 3: np.cbrt, 4: lambda a: np.sqrt(np.sqrt(a))}[n_int](r_over_re)
        b = SERSIC_B[n_int]
    else:
        root, b = np.power(r_over_re, 1.0 / n), 2.0 * n - 1.0 / 3.0
    return np.exp(np.float32(-b) * (root - np.float32(1.0)))


def _disc_frame(x, y, pa_deg: float, q: float):
    """Disc-plane coordinates: ``u`` along the major axis, ``w`` along the minor axis as seen (unstretched)."""
    pa = math.radians(pa_deg)
    s, c = np.float32(math.sin(pa)), np.float32(math.cos(pa))
    u = -s * x + c * y
    w = -c * x - s * y
    return u, w


def _smoothstep(t: np.ndarray) -> np.ndarray:
    """0 below 0, 1 above 1, a smooth cubic between (``t`` is modified in place)."""
    np.maximum(t, 0.0, out=t)
    np.minimum(t, 1.0, out=t)
    return t * t * (3.0 - 2.0 * t)


def spiral_pattern(r, phi, n_arms: int, pitch_deg: float, sense: int, phase_deg: float, r_in: float,
                   width_power: int, psf_sigma: float, r2: np.ndarray | None = None) -> np.ndarray:
    """Arm density relative to the disc mean ``(S, S)``: 1 on average, peaks on the arms (see module doc)."""
    tan_p = math.tan(math.radians(pitch_deg))
    wind = np.log(r / np.float32(r_in)) * np.float32(sense / tan_p)
    wave = np.cos(np.float32(n_arms) * (phi - wind - np.float32(math.radians(phase_deg))))
    crest = (1.0 + wave) * 0.5
    shape = crest
    for _ in range(int(width_power) - 1):
        shape = shape * crest
    mean = math.comb(2 * int(width_power), int(width_power)) / 4.0 ** int(width_power)
    # Gaussian seeing damps a pattern of wavenumber k = m / (r sin(pitch)) by exp(-(k sigma)^2 / 2).
    k2_r2 = (n_arms / math.sin(math.radians(pitch_deg))) ** 2
    damp = np.exp(np.float32(-0.5 * psf_sigma ** 2 * k2_r2) / (r * r if r2 is None else r2))
    return 1.0 + damp * (shape * np.float32(1.0 / mean) - 1.0)


def _add(image: np.ndarray, component: np.ndarray, rgb: np.ndarray, scale: float = 1.0) -> None:
    """``image (3, S, S) += scale * rgb x component (S, S)``, one contiguous plane at a time (fast)."""
    for channel in range(3):
        image[channel] += component * np.float32(rgb[channel] * scale)


def _central(half: float, image: np.ndarray, x: np.ndarray, y: np.ndarray):
    """Views of the central square (half-width ``half`` px, symmetric about the centre) of ``image (3, S, S)``
    and of the grids: profiles are computed only where they are not negligible."""
    size = x.shape[-1]
    lo = max(0, math.floor((size - 1) / 2.0 - half))
    box = slice(lo, size - lo)
    return image[:, box, box], x[box, box], y[box, box]


def _disc_galaxy(image, x, y, g: Mapping, psf2: float) -> None:
    """Bulge + exponential disc (+ bar, arms, dust lane) of a disc galaxy centred at ``(x, y) = 0``."""
    q = float(g["axis_ratio"])
    h = float(g["disc_scale_px"])
    # Beyond 9 scale lengths the disc is < 1e-4 of its centre, far below the sky noise.
    image, x, y = _central(9.0 * h + 3.0, image, x, y)
    u, w = _disc_frame(x, y, float(g["position_angle_deg"]), q)
    v = w * np.float32(1.0 / q)
    r2 = u * u + v * v + np.float32(psf2)
    r = np.sqrt(r2)
    disc = np.float32(g["disc_i0"]) * np.exp(r * np.float32(-1.0 / h))
    n_arms = int(g.get("n_arms", 0) or 0)
    if n_arms > 0 and float(g.get("arm_strength", 0.0)) > 0:
        r_in = float(g["arm_r_in_px"])
        phi = np.arctan2(v, u)
        pattern = spiral_pattern(r, phi, n_arms, float(g["pitch_deg"]), int(g["sense"]), float(g["arm_phase_deg"]),
                                 r_in, int(g["arm_width_power"]), float(g["psf_sigma_px"]), r2=r2)
        envelope = _smoothstep((r - np.float32(0.6 * r_in)) * np.float32(1.0 / (0.8 * r_in)))
        in_arms = disc * (np.float32(g["arm_strength"]) * envelope)
        _add(image, disc - in_arms, DISC_RGB)
        _add(image, in_arms * pattern, ARM_RGB)
    else:
        _add(image, disc, DISC_RGB)
    bar = float(g.get("bar_strength", 0.0) or 0.0)
    if bar > 0:
        beta = math.radians(float(g["arm_phase_deg"]))
        cb, sb = np.float32(math.cos(beta)), np.float32(math.sin(beta))
        bu = (u * cb + v * sb) * np.float32(1.0 / float(g["bar_length_px"]))
        bv = (-u * sb + v * cb) * np.float32(1.0 / (0.3 * float(g["bar_length_px"])))
        t = bu * bu + bv * bv
        _add(image, np.float32(bar * float(g["disc_i0"])) * np.exp(-(t * t)), BULGE_RGB)
    # Bulge: rounder than the disc; beyond 15 re it is negligible.
    re = float(g["bulge_re_px"])
    if float(g["bulge_ie"]) > 0:
        qb = 1.0 - 0.5 * (1.0 - q)
        _elliptical(*_central(15.0 * re + 3.0, image, x, y), {**g, "axis_ratio": qb}, psf2)
    dust = float(g.get("dust_lane", 0.0) or 0.0)
    if dust > 0:
        # Mid-plane lane of an (almost) edge-on disc, a little off the centre line as in real edge-ons.
        width = max(1.2, 0.4 * h * q)
        lane = np.exp(-0.5 * ((w - np.float32(0.7 * width)) * np.float32(1.0 / width)) ** 2)
        lane *= np.exp(-np.abs(u) * np.float32(0.5 / h))
        for channel in range(3):
            image[channel] *= 1.0 - np.float32(dust * DUST_RGB[channel]) * lane


def _elliptical(image, x, y, g: Mapping, psf2: float, dx: float = 0.0, dy: float = 0.0, scale: float = 1.0) -> None:
    q = float(g["axis_ratio"])
    u, w = _disc_frame(x - np.float32(dx), y - np.float32(dy), float(g["position_angle_deg"]), q)
    v = w * np.float32(1.0 / q)
    r = np.sqrt(u * u + v * v + np.float32(psf2))
    _add(image, _sersic(r * np.float32(1.0 / float(g["bulge_re_px"])), float(g["bulge_sersic_n"])), BULGE_RGB,
         float(g["bulge_ie"]) * scale)


def _blob(x, y, cx: float, cy: float, sigma: float) -> np.ndarray:
    dx, dy = x - np.float32(cx), y - np.float32(cy)
    return np.exp((dx * dx + dy * dy) * np.float32(-0.5 / sigma ** 2))


def _merger(image, x, y, g: Mapping, psf2: float, rng: np.random.Generator) -> None:
    """Two overlapping galaxies and a tidal tail (a one-armed, open, faint spiral: its sense means nothing)."""
    _disc_galaxy(image, x, y, {**g, "n_arms": 0, "bar_strength": 0.0, "dust_lane": 0.0}, psf2)
    dx, dy = float(g["companion_dx_px"]), float(g["companion_dy_px"])
    companion = {**g, "bulge_re_px": 0.6 * float(g["bulge_re_px"]) + 4.0,
                 "position_angle_deg": float(rng.uniform(0, 180)), "axis_ratio": float(rng.uniform(0.5, 1.0))}
    _elliptical(image, x, y, companion, psf2, dx, dy, float(g["companion_flux_ratio"]))
    # Tidal tail: a narrow one-armed pattern riding on a broad faint disc around the pair.
    hx, hy = 0.5 * dx, 0.5 * dy
    u, v = x - np.float32(hx), y - np.float32(hy)
    r = np.sqrt(u * u + v * v + np.float32(psf2))
    span = float(np.hypot(dx, dy)) + 2.0 * float(g["disc_scale_px"])
    broad = np.float32(0.12 * float(g["disc_i0"])) * np.exp(r * np.float32(-2.0 / span))
    tail = spiral_pattern(r, np.arctan2(v, u), 1, float(rng.uniform(25, 45)), int(rng.choice([-1, 1])),
                          float(rng.uniform(0, 360)), 0.5 * span, 8, float(g["psf_sigma_px"]))
    _add(image, broad * tail * _smoothstep((r - np.float32(0.4 * span)) * np.float32(1.0 / (0.4 * span))), DISC_RGB)


def _irregular(image, x, y, g: Mapping, psf2: float, rng: np.random.Generator) -> None:
    """Clumpy blue blob with a faint diffuse envelope (a "don't know" galaxy)."""
    size = float(g["disc_radius_px"])
    _disc_galaxy(image, x, y, {**g, "n_arms": 0, "bar_strength": 0.0, "dust_lane": 0.0}, psf2)
    for _ in range(int(rng.integers(3, 9))):
        cx, cy = rng.normal(0, 0.35 * size, 2)
        sigma = math.sqrt(float(rng.uniform(0.04, 0.14) * size) ** 2 + psf2)
        _add(image, _blob(x, y, cx, cy, sigma), CLUMP_RGB, float(g["disc_i0"]) * float(rng.uniform(1.0, 3.0)))


def add_star(image, x, y, cx: float, cy: float, flux: float, psf_sigma: float, rgb: np.ndarray) -> None:
    """A point source: Gaussian PSF core plus a faint wide halo, on a patch around ``(cx, cy)`` only."""
    size = image.shape[-1]
    c = (size - 1) / 2.0
    col, row = cx + c, c - cy
    half = int(min(size, 10 * psf_sigma + 4 * math.sqrt(flux) + 8))
    r0, r1 = max(0, int(row) - half), min(size, int(row) + half + 1)
    c0, c1 = max(0, int(col) - half), min(size, int(col) + half + 1)
    if r0 >= r1 or c0 >= c1:
        return
    px, py = x[r0:r1, c0:c1], y[r0:r1, c0:c1]
    d2 = (px - np.float32(cx)) ** 2 + (py - np.float32(cy)) ** 2
    core = np.exp(d2 * np.float32(-0.5 / psf_sigma ** 2))
    halo = np.float32(0.02) * (1.0 + d2 * np.float32(1.0 / (3.0 * psf_sigma) ** 2)) ** -2.5
    _add(image[:, r0:r1, c0:c1], core + halo, rgb, flux)


def galaxy_flux(g: Mapping, size: int, rng: np.random.Generator) -> np.ndarray:
    """Noise-free flux ``(3, S, S)`` float32 (RGB planes) of the object in truth row ``g`` (no sky, no
    foreground stars)."""
    x, y = _grid(size)
    image = np.zeros((3, size, size), np.float32)
    psf = float(g["psf_sigma_px"])
    psf2 = psf * psf
    kind = g["morphology"]
    if kind in ("spiral", "lenticular", "edge_on"):
        _disc_galaxy(image, x, y, g, psf2)
    elif kind == "elliptical":
        _elliptical(image, x, y, g, psf2)
    elif kind == "merger":
        _merger(image, x, y, g, psf2, rng)
    elif kind == "irregular":
        _irregular(image, x, y, g, psf2, rng)
    elif kind == "star":
        # A bright star over a small faint galaxy: volunteers answer "star / don't know".
        _elliptical(image, x, y, g, psf2, *rng.normal(0, 6, 2))
        add_star(image, x, y, *rng.normal(0, 1.5, 2), flux=float(g["star_flux"]), psf_sigma=psf, rgb=STAR_RGB)
    else:
        raise ValueError(f"galaxy {g.get('galaxy_index', '?')}: unknown morphology {kind!r}")
    return image


def stretch(flux: np.ndarray) -> np.ndarray:
    """Flux planes ``(3, S, S)`` -> display RGB ``(S, S, 3)`` uint8 with the Legacy Surveys' asinh stretch."""
    out = np.arcsinh(flux * np.float32(1.0 / STRETCH_BETA))
    out *= np.float32(255.0 / math.asinh(STRETCH_MAX / STRETCH_BETA))
    out += np.float32(0.5)
    np.clip(out, 0.0, 255.0, out=out)
    planes = out.astype(np.uint8)
    # PIL interleaves the planes faster than a numpy transpose copy.
    return np.asarray(Image.merge("RGB", [Image.fromarray(p) for p in planes]))


def render_galaxy(g: Mapping, size: int, rng: np.random.Generator, *, noise_seed: int = 0,
                  clean: bool = False) -> np.ndarray:
    """Cutout ``(S, S, 3)`` uint8 of truth row ``g``: galaxy, foreground stars, sky noise, stretch.

    ``clean=True`` leaves out the stars and the noise (for tests of the geometry). ``rng`` is the galaxy's own
    generator, so the result does not depend on which process renders it.
    """
    flux = galaxy_flux(g, size, rng)
    if not clean:
        x, y = _grid(size)
        psf = float(g["psf_sigma_px"])
        for _ in range(int(g.get("n_stars", 0) or 0)):
            cx, cy = rng.uniform(-0.48 * size, 0.48 * size, 2)
            temp = rng.uniform(0, 1)
            rgb = np.array([1.0, 0.85 + 0.15 * temp, 0.65 + 0.35 * temp], np.float32)
            add_star(flux, x, y, cx, cy, float(np.exp(rng.uniform(np.log(0.3), np.log(40.0)))), psf, rgb)
        bank = noise_bank(noise_seed, size)
        oy, ox = rng.integers(0, size, 2)
        flip_y, flip_x = (1 - 2 * rng.integers(0, 2, 2)).tolist()
        window = bank[:, oy:oy + size, ox:ox + size][:, ::flip_y, ::flip_x]  # flips keep rows contiguous
        for channel in range(3):
            flux[channel] += window[channel] * np.float32(NOISE_RGB[channel] * float(g["sky_sigma"]))
    return stretch(flux)


def encode_jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    """RGB ``(S, S, 3)`` uint8 -> JPEG bytes (baseline, 4:2:0, like the Galaxy Zoo DESI cutouts)."""
    buf = io.BytesIO()
    Image.fromarray(image, "RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
