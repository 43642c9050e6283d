"""Data: GZ1 labels, DESI cross-match, SDSS cuts, cutouts, the Zarr stores, the loader, the synthetic survey."""
