"""One process serves a round: the page and a Label Studio import of the same round would
otherwise record the same region twice."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket

from deeplab.experiment.job import Experiment


@contextlib.contextmanager
def round_lock(exp: Experiment, t: int):
    """Only one process serves a round (two would hand the same region to two people)."""
    path = exp.round_dir(t) / "annotate.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 200, 0).decode(errors="replace").strip()
            raise RuntimeError(f"round {t} of {exp.job_dir} is being served already ({other}); "
                               "open that page instead") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode(), 0)
        yield
    finally:
        os.close(fd)
