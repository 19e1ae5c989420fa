"""Fits seconds per answer from a job's measured answer times (the page's `elapsed_ms`, or
Label Studio's lead time) as a function of what the selection knows before asking a region:
its size, boundary length, how many base superpixels it merges and the previous model's
uncertainty in it (`deeplab.active.acquisition.COST_FEATURES`). Writes the fit as JSON (default
`<job>/cost_model.json`) for `COST_MODEL=measured CLICK_COST_MODEL=<file>`.

  python scripts/fit_cost_model.py --job_dir work_dirs/mine
"""

import argparse
import sys
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--job_dir", required=True, help="a job whose ledger holds timed answers")
    p.add_argument("--out", default=None, help="default: <job_dir>/cost_model.json")
    args = p.parse_args(argv)
    from deeplab import io_utils
    from deeplab.active import acquisition
    from deeplab.experiment.job import Job
    from deeplab.experiment.answers import timed_answer_features

    exp = Job.open(args.job_dir)
    features, seconds = timed_answer_features(exp)
    model = acquisition.fit_cost_model(features, seconds)
    out = Path(args.out) if args.out else exp.job_dir / "cost_model.json"
    io_utils.write_json(out, {**model.to_json(), "job": str(exp.job_dir)})
    terms = " + ".join(f"{c:.3f} * {n}" for c, n in zip(model.coef, acquisition.COST_FEATURES))
    print(f"seconds = {model.intercept:.3f} + {terms}\n{model.n} timed answers, median "
          f"{model.unit_seconds:.2f} s (one click-equivalent), fit error (RMS) {model.rmse:.2f} s\n{out}")
    return 0


if __name__ == "__main__":
    from deeplab.cli import guarded

    sys.exit(guarded(main))
