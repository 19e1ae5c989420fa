"""Trains the round's DeepLabv3+ on its TFRecords with the experiment's settings (resumes).

  python scripts/train_round.py --job_dir work_dirs/demo --round 1
"""

import sys

from deeplab import cli

if __name__ == "__main__":
    sys.exit(cli.stage_main(__doc__, "train"))
