"""Answers: the simulated annotator labels the selected regions (ANNOTATOR=oracle), or people
answer them on the annotation page this stage serves until every region is answered
(ANNOTATOR=human, see scripts/annotate_web.py). Each answer is appended to the ledger once.

  python scripts/annotate_regions.py --job_dir work_dirs/demo --round 1
"""

import sys

from deeplab import cli

if __name__ == "__main__":
    sys.exit(cli.stage_main(__doc__, "annotate"))
