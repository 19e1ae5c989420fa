"""Takes a driver's lock on its job: bash_files/settings.sh's lock_job opens the job's driver.lock
on a descriptor and runs this on it; the lock stays with the driver's shell after this exits
(deeplab/experiment/locks.py). One line and exit status 2 when another driver runs the job.

  exec 9>> "$JOB_DIR/driver.lock"; python scripts/lock_driver.py --driver_fd 9 --job_dir "$JOB_DIR" --driver_pid $$
"""

import argparse
import sys


def main(argv=None) -> int:
    from deeplab.cli import one_line_errors
    from deeplab.experiment.locks import lock_driver

    p = one_line_errors(argparse.ArgumentParser(description=__doc__,
                                                formatter_class=argparse.RawDescriptionHelpFormatter))
    p.add_argument("--driver_fd", type=int, required=True, help="the descriptor of the driver's open driver.lock")
    p.add_argument("--job_dir", required=True, help="the job folder")
    p.add_argument("--driver_pid", type=int, required=True, help="the driver's pid, written as the holder")
    p.add_argument("--wait_secs", type=float, default=120.0,
                   help="LOCK_WAIT_SECS: how long to wait for a killed driver's stage to end")
    args = p.parse_args(argv)
    lock_driver(args.driver_fd, args.job_dir, args.driver_pid, args.wait_secs)
    return 0


if __name__ == "__main__":
    from deeplab.cli import guarded

    sys.exit(guarded(main))
