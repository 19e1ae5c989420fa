"""Runs several stages of one round in one process, in order (what the drivers call: one
TensorFlow start per round instead of one per stage), stopping at the first that fails. Each
stage is the same as its own script's (scripts/gen_adaptive_spx.py, select_regions.py,
annotate_regions.py, build_round_data.py, train_round.py, eval_round.py), skipped when its
manifest says it is complete. With --record_results, the job's results.csv and al_curve.png
afterwards (written when they changed, as scripts/record_results.py writes them, without printing
the table: each driver prints it once, at its end). With STAGE_LOG set, every stage (and the
results) gets its own record in that log.

  python scripts/run_round.py --job_dir work_dirs/demo --round 1 --stages regions,select,annotate,data,train,eval
"""

import argparse
import os
import sys

from deeplab import cli


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_round_flags(p)
    p.add_argument("--stages", default="select,annotate,data,train,eval",
                   help=f"comma-separated, in order; of {','.join(cli.STAGES)}")
    p.add_argument("--record_results", action="store_true",
                   help="then write results.csv and al_curve.png (scripts/record_results.py also prints the table)")
    args = p.parse_args(argv)
    stages = [s for s in args.stages.split(",") if s]
    log = os.environ.get("STAGE_LOG") or None
    rc = cli.guarded(cli.run_stages, args.job_dir, args.round, stages, log, what="error")
    if rc or not args.record_results:
        return rc
    from deeplab.experiment.results import record

    return cli.logged(log, "record_results", ["--job_dir", str(args.job_dir)],
                      lambda: cli.guarded(record, args.job_dir, False, what="results"))


if __name__ == "__main__":
    sys.exit(main())
