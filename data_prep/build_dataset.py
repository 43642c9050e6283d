"""Build the dataset: GZ1 labels -> DESI match -> SDSS cuts -> splits -> catalogue, counts and Zarr stores.

Thin entry point over :mod:`gcnn_spin.data.pipeline`; every stage is reused on a rerun when finished.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from gcnn_spin import cli
from gcnn_spin.config import load_experiment
from gcnn_spin.data import pipeline, sdss
from gcnn_spin.data.cutouts import DEFAULT_CUTOUT_URL
from gcnn_spin.data.bad_rows import BadRowsError, EmptyInputError
from gcnn_spin.data.images import BadImageError
from gcnn_spin.errors import UserError


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gz1", type=Path, required=True, help="GalaxyZoo1_DR_table2.csv as published")
    p.add_argument("--desi-index", type=Path, required=True,
                   help="the Galaxy Zoo DESI catalogue as published (e.g. gz_desi_deep_learning_catalog_friendly"
                        ".parquet; parquet, or CSV by any other suffix): dr8_id, ra, dec are read, the rest ignored")
    p.add_argument("--images", type=Path,
                   help="folder holding jpg/{brickid}/{dr8_id}.jpg (give the folder above jpg/)")
    p.add_argument("--sdss-photometry", type=Path,
                   help="offline SDSS table (objID, petroR50_r, petroR50Err_r, petroMagErr_r, "
                        "n_neighbours_1arcsec); without it SkyServer DR7 is queried (cached in OUT/cache/sdss)")
    p.add_argument("--cutout-service", action="store_true",
                   help="fetch every cutout from the Legacy Surveys viewer (cached in OUT/cache) instead of --images; "
                        "never both: they differ in pixel scale")
    p.add_argument("--out", type=Path, required=True, help="output folder (DATA)")
    cli.add_config(p)
    p.add_argument("--on-bad", choices=("raise", "skip"), default="raise",
                   help="bad input rows/images: stop naming them, or skip them with a report "
                        "(default: %(default)s)")
    p.add_argument("--workers", type=cli.at_least(1, "--workers"), default=1, help="store-building processes (default: %(default)s)")
    p.add_argument("--stores", default=",".join(pipeline.STORE_SPLITS),
                   help="comma-separated stores to build, '' for none (default: %(default)s)")
    p.add_argument("--sdss-url", help="SkyServer base URL (default: astroquery's)")
    p.add_argument("--sdss-batch-size", type=int, default=sdss.DEFAULT_BATCH_SIZE,
                   help="objects per SkyServer request, at most (default: %(default)s)")
    p.add_argument("--sdss-max-query-bytes", type=int, default=sdss.MAX_QUERY_BYTES,
                   help="longest GET query string sent to SkyServer; batches shrink to fit "
                        "(default: %(default)s, IIS's default maxQueryString)")
    p.add_argument("--sdss-rate", type=float, default=sdss.DEFAULT_REQUESTS_PER_S,
                   help="max SkyServer requests per second (default: %(default)s)")
    p.add_argument("--cutout-url", default=DEFAULT_CUTOUT_URL, help="cutout service URL (default: %(default)s)")
    p.add_argument("--cutout-rate", type=float, default=5.0,
                   help="max cutout requests per second (default: %(default)s)")
    cli.add_dry_run(p, "list the stages and whether each would run, the SkyServer requests and (with "
                       "--cutout-service) the cutout requests, and their least durations; touch nothing")
    cli.add_quiet(p, "log warnings only, no progress bars")
    cli.add_debug(p)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_experiment(args.config, args.overrides).data
        inputs = pipeline.Inputs(gz1=args.gz1, desi_index=args.desi_index, images=args.images,
                                 sdss_photometry=args.sdss_photometry, cutout_service=args.cutout_service,
                                 sdss_url=args.sdss_url, cutout_url=args.cutout_url, cutout_rate=args.cutout_rate,
                                 sdss_batch_size=args.sdss_batch_size,
                                 sdss_max_query_bytes=args.sdss_max_query_bytes, sdss_rate=args.sdss_rate)
        if args.dry_run:
            print(pipeline.plan(args.out, inputs, cfg, on_bad=args.on_bad).to_string(index=False))
            print(pipeline.plan_sdss(args.out, inputs, cfg))
            cutout_plan = pipeline.plan_cutouts(args.out, inputs)
            if cutout_plan:
                print(cutout_plan)
            return 0
        stores = [s for s in args.stores.split(",") if s.strip()]
        summary = pipeline.build_dataset(args.out, inputs, cfg, on_bad=args.on_bad, workers=args.workers,
                                         stores=stores, progress=not args.quiet)
    except (UserError, BadRowsError, EmptyInputError, BadImageError, sdss.SdssQueryError, pipeline.InputsError,
            pipeline.CutoutFetchError, FileNotFoundError) as err:
        print(f"build_dataset: error: {err}", file=sys.stderr)
        return 2
    print((args.out / "counts.md").read_text(), end="")
    print(f"reasons: {summary['n_reason']}")
    if not summary["complete"]:
        print("build_dataset: SDSS answers are missing (see sdss.failed.csv); no store was built. Rerun to retry.",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    from gcnn_spin.errors import run_command

    run_command(main)
