"""Runs one stage script and appends what it cost to a log: one JSON line per run with the
script's name, arguments, wall seconds, CPU seconds and peak resident memory (of the script's
process and the processes it waited for), and its exit status. The drivers run every stage
through it when STAGE_LOG is set (bash_files/settings.sh, `py`); bash_files/paper_check.sh
reads the log.

  python -m deeplab.experiment.stage_log --log stages.jsonl -- scripts/select_regions.py --job_dir J --round 0
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def run_logged(log: Path | str, command: list[str]) -> int:
    """Runs `python command...` and appends its record to `log`; returns its exit status."""
    from deeplab.parallel import DRIVER_ENV, end_with_parent

    # The wrapper ends with the driver that started it, and the script with the wrapper (it
    # names the wrapper as its driver): a stopped driver leaves neither behind.
    end_with_parent(os.environ.get(DRIVER_ENV, ""))
    env = {**os.environ, DRIVER_ENV: str(os.getpid())}
    t0 = time.perf_counter()
    # the job's lock that the driver holds reaches the script through the wrapper (locks.py)
    from deeplab.experiment.locks import driver_lock_fd

    fd = driver_lock_fd()
    proc = subprocess.Popen([sys.executable, *command], env=env, pass_fds=() if fd is None else (fd,))
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except KeyboardInterrupt:  # the script got the same signal; let it finish first
        _, status, usage = os.wait4(proc.pid, 0)
    rc = os.waitstatus_to_exitcode(status)
    proc.returncode = rc
    record = {"script": Path(command[0]).stem, "args": command[1:],
              "seconds": round(time.perf_counter() - t0, 3),
              "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3),
              "max_rss_mb": round(usage.ru_maxrss / 1024.0, 1),  # Linux: kilobytes
              "rc": rc}
    append(log, record)
    return rc


def append(log: Path | str, record: dict) -> None:
    """Appends one record (a whole line per write: a stopped run leaves whole records)."""
    with open(log, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_log(log: Path | str) -> list[dict]:
    """The records of a stage log, in order (a torn last line is left out)."""
    out = []
    for line in Path(log).read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--log", required=True, help="the JSON-lines file to append to")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- script.py [arguments]")
    args = p.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        p.error("give the script to run after --")
    return run_logged(args.log, command)


if __name__ == "__main__":
    sys.exit(main())
