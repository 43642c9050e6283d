"""SDSS DR7 photometry through CasJobs, the route for all of GZ1 (668k objects): write the two files to use there.

Step 1 (this command): ``gz1_objects.csv`` (objID, ra, dec in degrees, from GZ1 table 2) and the query
``sdss_dr7_photometry.sql`` next to it.
Step 2 (CasJobs, https://skyserver.sdss.org/CasJobs, context DR7): import gz1_objects.csv as the MyDB table
``gz1_objects``; submit the query; download the table ``MyDB.gz1_sdss_dr7`` it writes as CSV; then run
``build_dataset.py ... --sdss-photometry gz1_sdss_dr7.csv``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gcnn_spin import cli
from gcnn_spin.data import gz1, sdss
from gcnn_spin.errors import UserError
from gcnn_spin.io import atomic_path, write_text_atomic


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gz1", type=Path, required=True, help="GalaxyZoo1_DR_table2.csv as published")
    p.add_argument("--out", type=Path, required=True, help="folder for gz1_objects.csv and the SQL")
    p.add_argument("--on-bad", choices=("raise", "skip"), default="raise",
                   help="bad GZ1 rows: stop naming them, or skip them with a report (default: %(default)s)")
    cli.add_debug(p)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        table = gz1.read_gz1(args.gz1, on_bad=args.on_bad, report_path=args.out / "gz1.skipped.csv")
    except (UserError, FileNotFoundError) as err:
        print(f"sdss_casjobs: error: {err}", file=sys.stderr)
        return 2
    upload = table[["objid", "ra", "dec"]].rename(columns={"objid": "objID"})
    with atomic_path(args.out / "gz1_objects.csv") as tmp:
        upload.to_csv(tmp, index=False, float_format="%.7f")
    write_text_atomic(args.out / "sdss_dr7_photometry.sql", sdss.casjobs_sql())
    print(f"{args.out / 'gz1_objects.csv'}: {len(upload):,} objects to import into CasJobs as MyDB.gz1_objects\n"
          f"{args.out / 'sdss_dr7_photometry.sql'}: the query to submit (context DR7); download MyDB.gz1_sdss_dr7 "
          "as CSV and pass it to build_dataset.py --sdss-photometry")
    return 0


if __name__ == "__main__":
    from gcnn_spin.errors import run_command

    run_command(main)
