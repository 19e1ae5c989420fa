"""Locks in the job folder: one process runs a job's stages at a time, one serves a round's
answers. Each is an `flock` on a file, held by the open file itself: a process that dies, however
it dies, leaves nothing stuck (the kernel drops the lock with the process)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from pathlib import Path

from deeplab.errors import CannotContinue


@contextlib.contextmanager
def hold(path: Path | str, busy):
    """Holds an exclusive lock on `path` for the block; when another process holds it, raises
    RuntimeError(busy(holder)), `holder` being what that process wrote into the file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            raise CannotContinue(busy(holder)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S')}".encode(), 0)
        yield
    finally:
        os.close(fd)


def job_lock(job_dir: Path | str):
    """One process runs stages of a job at a time (two would both append a round's answers)."""
    return hold(Path(job_dir) / "job.lock", lambda holder: (
        f"job {job_dir} is being run by another process ({holder}): wait for it to finish or "
        "stop it, then run again (a stopped process leaves no lock behind)"))
