"""gcnn_spin: spin chirality of spiral galaxies with group-equivariant CNNs."""

__version__ = "0.1.0"
