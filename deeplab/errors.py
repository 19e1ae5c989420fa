"""The one error class for what a user can fix.

`UserError` is raised for bad input and for faults the code names (a missing or damaged file, a
setting the data cannot hold, a full disk, a port in use, a job another process holds): its
message names the file or value and the fix. The scripts print it as one line (`cli.guarded`);
any other exception is a defect of this code and keeps its traceback.

Each subclass is also the built-in error it used to be, so `except ValueError` (or
`FileNotFoundError`, `OSError`, ...) in code outside this project still catches it.
"""

from __future__ import annotations


class UserError(Exception):
    """An error a user can fix; the message names the file or value and the fix."""


class BadInput(UserError, ValueError):
    """A value, file content or setting this code cannot use."""


class MissingFile(UserError, FileNotFoundError):
    """A file or folder that should exist does not."""


class Unavailable(UserError, OSError):
    """The machine refuses: a full disk, a port in use, a cluster that does not answer."""


class CannotContinue(UserError, RuntimeError):
    """The job's state stops the work: a stage not run yet, a lock held, a damaged checkpoint."""


class MissingPackage(UserError, ImportError):
    """An optional package that the asked-for feature needs (the message gives the pip line)."""
