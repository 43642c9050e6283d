"""Turn a real-sample folder (GZ1 table-2 rows, gz1_to_dr8.csv, jpg/) into the raw layout build_dataset.py reads.

    python data_prep/real_sample.py --sample ../shared/real_sample --out raw_real
    python data_prep/build_dataset.py --gz1 raw_real/GalaxyZoo1_DR_table2.csv \\
        --desi-index raw_real/desi_index.parquet --images raw_real --sdss-photometry raw_real/sdss_photometry.csv \\
        --out data_real --config demo --set 'data.downsample_bins=[]'

The inputs a real sample lacks are filled in under stated assumptions (DESI position = GZ1 position; every galaxy
passes the SDSS cuts with no neighbour within 1"); OUT/ASSUMPTIONS.md says which files are real and which assumed.
Thin entry point over :mod:`gcnn_spin.data.real_sample`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gcnn_spin.errors import UserError
from gcnn_spin.data.real_sample import prepare_raw


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sample", type=Path, required=True, help="real-sample folder")
    p.add_argument("--out", type=Path, required=True, help="raw folder to write (RAW)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        paths = prepare_raw(args.sample, args.out)
    except (UserError, FileNotFoundError, FileExistsError) as err:
        print(f"real_sample: error: {err}", file=sys.stderr)
        return 2
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    from gcnn_spin.errors import run_command

    run_command(main)
