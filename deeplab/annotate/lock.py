"""One process serves a round: the page and a Label Studio import of the same round would
otherwise record the same region twice."""

from __future__ import annotations

from deeplab.experiment.job import Job
from deeplab.experiment.locks import hold


def round_lock(exp: Job, t: int):
    """Only one process serves a round (two would hand the same region to two people)."""
    return hold(exp.round_dir(t) / "annotate.lock", lambda holder: (
        f"round {t} of {exp.job_dir} is being served already ({holder}); open that page instead"))
