"""gcnn_spin: spin chirality of spiral galaxies with group-equivariant CNNs."""

import warnings

__version__ = "0.1.0"

# escnn's optional py3nj (SO(3) Clebsch-Gordan coefficients, needs gfortran) is deliberately not installed:
# gcnn_spin only uses the planar groups C_N and D_N.
warnings.filterwarnings("ignore", message="`py3nj` package not found")
