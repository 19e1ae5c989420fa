"""Round data: paint every answer so far, sieve with the previous round's model (round >= 1), write label PNGs and TFRecords, report label noise.

  python scripts/build_round_data.py --job_dir work_dirs/demo --round 1
"""

import sys

from deeplab import cli

if __name__ == "__main__":
    sys.exit(cli.stage_main(__doc__, "data"))
