"""Answers: the simulated annotator labels the selected regions (ANNOTATOR=oracle), or people
answer them on the annotation page this stage serves until every region is answered
(ANNOTATOR=human, see scripts/annotate_web.py). Each answer is appended to the ledger once.

  python scripts/annotate_regions.py --job_dir work_dirs/demo --round 1
"""

import sys

from deeplab import cli


def annotate(exp, t: int) -> dict:
    """The answers stage: the page for ANNOTATOR=human, the simulated annotator otherwise."""
    if exp.config.annotator == "human":
        from deeplab.annotate import server

        return server.annotate_round(exp, t)
    from deeplab.experiment import stages

    return stages.annotate_round(exp, t)


if __name__ == "__main__":
    sys.exit(cli.stage_main(__doc__, "annotate", annotate))
