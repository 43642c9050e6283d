"""The image's escnn equivariance check (apptainer's %test and `make image-test`): a small D8 net whose output
field is the irrep (1, 0), trivial on rotations and -1 on reflections. Mirroring the image must flip its sign;
rotating by 90 deg must not. Exits 1 naming the broken symmetry, else prints the errors.

    python containers/escnn_check.py [--irrep J K]   (0 0, an invariant field, shows that the check can fail)
"""

import argparse
import sys

import torch
from escnn import gspaces
from escnn import nn as enn


def errors(irrep: tuple[int, int]) -> tuple[float, float, float]:
    """(scale, mirror error, rot90 error) of a random D8 net with output field ``irrep``."""
    torch.manual_seed(0)
    space = gspaces.flipRot2dOnR2(N=8)
    in_type = enn.FieldType(space, 3 * [space.trivial_repr])
    hidden = enn.FieldType(space, 2 * [space.regular_repr])
    out_type = enn.FieldType(space, [space.fibergroup.irrep(*irrep)])
    net = enn.SequentialModule(
        enn.R2Conv(in_type, hidden, kernel_size=5, padding=2),
        enn.ReLU(hidden),
        enn.R2Conv(hidden, out_type, kernel_size=5, stride=2),
    ).eval()
    x = torch.randn(2, 3, 33, 33)

    def delta(images):
        return net(enn.GeometricTensor(images, in_type)).tensor.mean(dim=(2, 3))

    with torch.no_grad():
        d, d_mirror, d_rot = delta(x), delta(torch.flip(x, dims=[3])), delta(torch.rot90(x, 1, dims=(2, 3)))
    return d.abs().max().item(), (d_mirror + d).abs().max().item(), (d_rot - d).abs().max().item()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--irrep", nargs=2, type=int, default=(1, 0), metavar=("J", "K"),
                        help="the output field's D8 irrep (default: 1 0, the chiral one)")
    scale, err_mirror, err_rot = errors(tuple(parser.parse_args(argv).irrep))
    for failed, what in ((scale <= 1e-6, "the check net outputs zeros"),
                         (err_mirror >= 1e-4 * scale, f"mirror did not flip the chiral field: error {err_mirror:.2e}"),
                         (err_rot >= 1e-4 * scale, f"rot90 changed the chiral field: error {err_rot:.2e}")):
        if failed:
            print(f"escnn D8 check failed: {what}", file=sys.stderr)
            return 1
    print(f"escnn D8 check passed: mirror error {err_mirror:.1e}, rot90 error {err_rot:.1e} (scale {scale:.1e})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
