"""The fully supervised reference of a comparison: the job's model and schedule trained on every
ground-truth pixel of the train split (round 0 of its own job), then evaluated.

  python scripts/train_full.py --job_dir work_dirs/compare/full_s0

Stages (data, train, eval) resume like a round's; `data` records `clicks` = the number of base
superpixels of the train split (what asking every one would cost) and `labelled_px`.
"""

import argparse
import sys


def main(argv=None) -> int:
    from deeplab import cli
    from deeplab.experiment import stages

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--job_dir", required=True, help="a job initialised by scripts/init_experiment.py")
    args = p.parse_args(argv)
    for stage, fn in (("data", stages.full_data), ("train", stages.train_stage),
                      ("eval", stages.eval_stage)):
        code = cli.run_stage(args.job_dir, 0, stage, fn)
        if code:
            return code
    return 0


if __name__ == "__main__":
    from deeplab.cli import guarded

    sys.exit(guarded(main))
