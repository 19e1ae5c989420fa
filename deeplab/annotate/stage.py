"""The answers stage of a round: who answers its queried regions is ANNOTATOR's choice, and this
is the one place that chooses. `oracle`: the simulated annotator (deeplab/experiment/simulated.py,
the ground truth); `human`: people on the annotation page (deeplab/annotate/server.py);
`label_studio`: people in a running Label Studio (deeplab/annotate/ls_loop.py). Each returns the
same figures (deeplab.experiment.answers.stage_summary), recorded in the round's manifest."""

from __future__ import annotations

import os

from deeplab.experiment.job import Job


def annotate_stage(exp: Job, t: int) -> dict:
    """Round t's answers from the job's ANNOTATOR; the stage's figures."""
    annotator = exp.config.annotator
    if annotator == "human":
        from deeplab.annotate.server import serve_round

        return serve_round(exp, t, token=os.environ.get("ANNOTATE_TOKEN") or None)
    if annotator == "label_studio":
        from deeplab.annotate.ls_loop import label_studio_round

        return label_studio_round(exp, t)
    from deeplab.experiment.simulated import oracle_round

    return oracle_round(exp, t)
