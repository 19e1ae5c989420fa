"""Writes results.csv (one row per evaluated round) and al_curve.png at the job root and
prints the table.

  python scripts/record_results.py --job_dir work_dirs/demo
"""

import argparse
import sys


def main(argv=None) -> int:
    from deeplab import cli

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--job_dir", required=True, help="the job folder")
    p.add_argument("--unless_started", type=int, default=None, metavar="ROUND",
                   help="print nothing when that round has begun (warm_up.sh: a later driver prints "
                        "the table of a job past its warm-up)")
    args = p.parse_args(argv)
    from deeplab.experiment.results import record

    return cli.guarded(record, args.job_dir, True, args.unless_started, what="results")


if __name__ == "__main__":
    sys.exit(main())
