#!/usr/bin/env python
"""Write a synthetic survey (GZ1 table, DESI index + cutouts, SDSS photometry, truth) into a folder RAW.

Example: python data_prep/make_synthetic.py --out RAW --n-gz1 3000 --n-survey 2000 --seed 0 --swise-bias 0.1 --workers 2
A rerun with the same parameters does nothing; see gcnn_spin.data.synthetic for the model.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tomllib

from gcnn_spin import cli
from gcnn_spin.config import ConfigError, from_mapping
from gcnn_spin.data.synthetic import SurveyExistsError, SurveyParams, generate_survey
from gcnn_spin.data.synthetic.sheet import survey_sheet
from gcnn_spin.data.synthetic.survey import summary


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = SurveyParams()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", required=True, help="folder RAW to write the survey into")
    parser.add_argument("--n-gz1", type=int, default=defaults.n_gz1, help="galaxies with GZ1 labels")
    parser.add_argument("--n-survey", type=int, default=defaults.n_survey_only,
                        help="survey-only galaxies (in the DESI index, not in GZ1)")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="random seed: same seed, same bytes")
    parser.add_argument("--swise-bias", type=float, default=defaults.swise_bias,
                        help="probability that a volunteer's CW (Z-wise) vote becomes ACW (S-wise)")
    parser.add_argument("--true-acw-fraction", type=float, default=defaults.true_acw_fraction,
                        help="true fraction of S-wise (ACW) spirals; 0.5 = symmetric sky")
    parser.add_argument("--image-size", type=int, default=defaults.image_size, help="cutout side in px")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any other SurveyParams field (value read as TOML), e.g. --set star_rate=0.5; repeatable")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes rendering cutouts (the bytes do not depend on it)")
    parser.add_argument("--overwrite", action="store_true", help="replace a finished survey made with other parameters")
    parser.add_argument("--sheet", metavar="PNG", help="also save a contact sheet of 24 cutouts with their truth")
    cli.add_quiet(parser)
    cli.add_debug(parser)
    return parser.parse_args(argv)


def build_params(args: argparse.Namespace) -> SurveyParams:
    values = {"n_gz1": args.n_gz1, "n_survey_only": args.n_survey, "seed": args.seed, "swise_bias": args.swise_bias,
              "true_acw_fraction": args.true_acw_fraction, "image_size": args.image_size}
    for item in args.set:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        try:
            values[key.strip()] = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            values[key.strip()] = raw
    base = {f.name: getattr(SurveyParams(), f.name) for f in dataclasses.fields(SurveyParams)}
    return from_mapping(SurveyParams, {**base, **values}, "SurveyParams")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        params = build_params(args)
        paths = generate_survey(args.out, params, workers=args.workers, overwrite=args.overwrite,
                                progress=not args.quiet)
    except (ConfigError, ValueError, SurveyExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for name, path in paths.items():
        print(f"{name:16s} {path}")
    print(summary(args.out).to_string())
    if args.sheet:
        survey_sheet(args.out, args.sheet)
        print(f"{'sheet':16s} {args.sheet}")
    return 0


if __name__ == "__main__":
    from gcnn_spin.errors import run_command

    run_command(main)
