"""Locks in the job folder: one lock per job (`job.lock`: one driver runs the job, one process its
stages) and one per round's answers (one process serves them). Each is an `flock` on a file, held
by the open file itself: a process that dies, however it dies, leaves nothing stuck (the kernel
drops the lock with the last process holding the file open).

A round driver holds its job's lock for all of its run: its shell opens `job.lock` on a descriptor
that every script it starts inherits (bash_files/settings.sh's lock_job, naming it in
AL_JOB_LOCK_FD), and scripts/lock_driver.py takes the lock on that descriptor. An flock belongs to
the open file, not to the process that took it, so the lock stays with the shell after the helper
exits, and with a script the shell started until that ends. A script that runs stages takes the
same lock (job_lock): through the inherited descriptor when its driver holds it, else on its own.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import socket
import sys
import time
from pathlib import Path

from deeplab.errors import CannotContinue


def _write_holder(fd: int, pid: int) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {pid} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}".encode(), 0)


def _holder(path: Path) -> str:
    """Who holds the lock file `path`, as its holder wrote it."""
    try:
        return path.read_text(errors="replace").strip() or "another process"
    except OSError:
        return "another process"


def _take(fd: int) -> bool:
    """The lock on `fd` taken (or already held through this open file); False: another holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextlib.contextmanager
def hold(path: Path | str, busy):
    """Holds an exclusive lock on `path` for the block; when another process holds it, raises
    CannotContinue(busy(holder)), `holder` being what that process wrote into the file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if not _take(fd):
            raise CannotContinue(busy(_holder(path)))
        _write_holder(fd, os.getpid())
        yield
    finally:
        os.close(fd)


def round_lock(job, t: int):
    """Only one process serves a round's answers (the page and a Label Studio import of the same
    round would hand the same region to two people, or record it twice)."""
    return hold(job.round_dir(t) / "annotate.lock", lambda holder: (
        f"round {t} of {job.job_dir} is being served already ({holder}); open that page instead"))


JOB_LOCK = "job.lock"
LOCK_FD_ENV = "AL_JOB_LOCK_FD"  # the descriptor on which a round driver holds its job's lock


def driver_lock_fd() -> int | None:
    """The descriptor of the job's lock that the driver which started this process holds and
    named in AL_JOB_LOCK_FD, when it is open here; None otherwise."""
    fd = os.environ.get(LOCK_FD_ENV, "")
    if not fd.isdigit():
        return None
    try:
        os.fstat(int(fd))
    except OSError:
        return None
    return int(fd)


def _inherited(path: Path) -> int | None:
    """driver_lock_fd() when it is the lock file `path` itself (the same device and inode)."""
    fd = driver_lock_fd()
    try:
        same = fd is not None and os.path.samestat(os.fstat(fd), os.stat(path))
    except OSError:
        return None
    return fd if same else None


def _busy(job_dir, holder: str) -> str:
    return (f"job {job_dir} is being run by another process ({holder}): wait for it to finish or "
            "stop it, then run again (a stopped process leaves no lock behind)")


@contextlib.contextmanager
def job_lock(job_dir: Path | str):
    """One process runs stages of a job at a time (two would both append a round's answers): the
    job's lock, held for the block, or already held for it by the driver that started it."""
    path = Path(job_dir) / JOB_LOCK
    fd = _inherited(path)
    if fd is None:
        with hold(path, lambda holder: _busy(job_dir, holder)):
            yield
        return
    if not _take(fd):  # the driver's own lock (the same open file): taking it again changes nothing
        raise CannotContinue(_busy(job_dir, _holder(path)))
    yield


def lock_driver(fd: int, job_dir: Path | str, driver_pid: int, wait_secs: float) -> None:
    """Takes the lock of `job_dir` on `fd` (the driver's own open `job.lock`) for the driver
    `driver_pid`. Another process holding it stops this driver. A holder named in the file that
    was a driver of this machine and no longer runs (killed, a stage it started still ending)
    is waited for, up to `wait_secs`, and then named as the cause."""
    path = Path(job_dir) / JOB_LOCK
    if not _take(fd):
        holder = _holder(path)
        m = re.fullmatch(r"pid (\d+) on (.*) since .*", holder)
        if not (m and m[2] == socket.gethostname() and not Path(f"/proc/{m[1]}").exists()):
            raise CannotContinue(_busy(job_dir, holder))
        print(f"job {job_dir}: its last driver (pid {m[1]}) is gone; waiting up to {wait_secs:g} s "
              "for its stage to end", file=sys.stderr, flush=True)
        deadline = time.monotonic() + wait_secs
        while not _take(fd):
            if time.monotonic() >= deadline:
                raise CannotContinue(
                    f"job {job_dir} is still locked {wait_secs:g} s after its driver (pid {m[1]}) "
                    f"ended: a process it started still runs ('fuser {path}' names it); stop it, "
                    "then run again")
            time.sleep(0.2)
    _write_holder(fd, driver_pid)
