"""Selection: rank this round's eligible regions and spend the click budget (round 0: random).

  python scripts/select_regions.py --job_dir work_dirs/demo --round 1
"""

import sys

from deeplab import cli

if __name__ == "__main__":
    sys.exit(cli.stage_main(__doc__, "select"))
