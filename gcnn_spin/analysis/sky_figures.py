"""Mollweide maps of HEALPix counts (matplotlib, outside pyplot, saved atomically like every figure)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .figures import _save, _subplots
from .sky import NSIDE, cvs_of, healpix

GRID = (360, 180)  # longitude x latitude samples of the drawn map


def sample_map(values: np.ndarray, nside: int = NSIDE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(lon, lat, image)`` on a regular grid for ``pcolormesh`` on a Mollweide axis (radians; RA grows to the
    left, as on the sky; empty pixels NaN)."""
    import astropy.units as u

    lon = np.linspace(-np.pi, np.pi, GRID[0] + 1)
    lat = np.linspace(-np.pi / 2, np.pi / 2, GRID[1] + 1)
    centres_lon = (lon[:-1] + lon[1:]) / 2
    centres_lat = (lat[:-1] + lat[1:]) / 2
    grid_lon, grid_lat = np.meshgrid(centres_lon, centres_lat)
    ra = np.mod(-grid_lon, 2 * np.pi)  # east to the left
    pixels = healpix(nside).lonlat_to_healpix(ra.ravel() * u.rad, grid_lat.ravel() * u.rad)
    return lon, lat, np.asarray(values)[pixels].reshape(grid_lon.shape)


def sky_maps_plot(maps: Mapping[str, np.ndarray], path: str | Path, nside: int = NSIDE) -> Path:
    """One row per model: spirals per pixel and the CVS per pixel, from ``(npix, 3)`` counts; each column shares
    its colour scale, so the models compare at a glance."""
    fig, axes = _subplots(len(maps), 2, figsize=(11, 3.2 * len(maps)), squeeze=False,
                          subplot_kw={"projection": "mollweide"})
    columns = {"predicted spirals per pixel": {}, "CVS per pixel": {}}
    for label, counts in maps.items():
        spirals = (counts[:, 0] + counts[:, 1]).astype(np.float64)
        columns["predicted spirals per pixel"][label] = np.where(spirals > 0, spirals, np.nan)
        columns["CVS per pixel"][label] = cvs_of(counts)
    for j, (title, values) in enumerate(columns.items()):
        finite = [np.abs(v[np.isfinite(v)]) for v in values.values()]
        limit = max((float(f.max()) for f in finite if f.size), default=1.0)
        cvs_map = title.startswith("CVS")
        for ax, (label, value) in zip(axes[:, j], values.items()):
            lon, lat, image = sample_map(value, nside)
            mesh = ax.pcolormesh(lon, lat, np.ma.masked_invalid(image), cmap="RdBu_r" if cvs_map else "viridis",
                                 vmin=-limit if cvs_map else 0, vmax=limit, shading="flat", rasterized=True)
            ax.set_title(f"{label}: {title}", fontsize=9)
            ticks = np.arange(-150, 151, 30)
            ax.set_xticks(np.radians(ticks), [f"{int(-t % 360)}°" for t in ticks], fontsize=6)
            ax.tick_params(axis="y", labelsize=6)
            ax.grid(True, alpha=0.3)
            fig.colorbar(mesh, ax=ax, orientation="horizontal", fraction=0.05, pad=0.08)
    return _save(fig, path)
