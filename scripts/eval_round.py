"""Evaluates the round's model on the val split (mIoU, per-class IoU), writes round_XX/eval.json.

  python scripts/eval_round.py --job_dir work_dirs/demo --round 1
"""

import sys

from deeplab import cli

if __name__ == "__main__":
    sys.exit(cli.stage_main(__doc__, "eval"))
