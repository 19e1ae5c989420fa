"""Writes results.csv (one row per evaluated round) and al_curve.png at the job root and
prints the table.

  python scripts/record_results.py --job_dir work_dirs/demo
"""

import argparse
import sys


def main(argv=None) -> int:
    from deeplab import cli

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--job_dir", required=True)
    args = p.parse_args(argv)
    return cli.guarded(_record, args.job_dir, what="results")


def _record(job_dir) -> int:
    from deeplab.experiment.job import Experiment
    from deeplab.experiment.results import format_results, write_results

    exp = Experiment.open(job_dir)
    rows = write_results(exp)
    if not rows:
        print("no evaluated round yet")
        return 0
    print(format_results(rows))
    curve = exp.job_dir / "al_curve.png"
    print(f"\n{exp.job_dir / 'results.csv'}" + (f"\n{curve}" if curve.is_file() else
                                                 "\n(no AL curve: no round was evaluated)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
