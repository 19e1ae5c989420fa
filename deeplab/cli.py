"""Flags shared by the scripts, defined once, and how they resolve to data."""

from __future__ import annotations

import argparse
import errno
from pathlib import Path

from deeplab.datasets import DATASET_NAMES, get_dataset
from deeplab.errors import BadInput, MissingFile, Unavailable, UserError
from deeplab.parallel import DRIVER_ENV  # set by bash_files/settings.sh: the driver's shell


def add_dataset_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default="synthetic", choices=DATASET_NAMES,
                        help="data set name (default: the embedded synthetic street scenes; "
                             "folder: any folder of images, see datasets/README.md)")
    parser.add_argument("--dataset_dir", default=None,
                        help="data root in the data set's layout (default: datasets/<name>; "
                             "the synthetic set is generated there on first use)")


def add_superpixel_flags(parser: argparse.ArgumentParser, prefix: str = "standalone: ") -> None:
    """The base superpixels' flags (a script in an experiment takes them from its config)."""
    from deeplab.active.superpixels import METHODS

    parser.add_argument("--method", default="seeds", choices=METHODS,
                        help=f"{prefix}the base superpixels' algorithm (the paper: seeds)")
    parser.add_argument("--num_superpixels", type=int, default=None,
                        help=f"{prefix}base superpixels per image (default: image area / --superpixel_size_px)")
    parser.add_argument("--superpixel_size_px", type=float, default=256.0,
                        help=f"{prefix}a base superpixel's mean size in pixels when --num_superpixels "
                             "is not given (paper: 256)")


def add_executor_flags(parser: argparse.ArgumentParser) -> None:
    """Where per-image work runs, and where derived data are cached."""
    from deeplab.parallel import EXECUTORS

    parser.add_argument("--num_workers", type=int, default=1, help="processes (or Ray CPUs)")
    parser.add_argument("--executor", default="local", choices=EXECUTORS,
                        help="local process pool, or Ray (RAY_ADDRESS: an existing cluster)")
    parser.add_argument("--cache_dir", default="work_dirs/cache",
                        help="derived data (superpixel maps, val TFRecords), never the data root")


def make_executor(args: argparse.Namespace):
    from deeplab.parallel import make_executor as make

    return make(args.executor, args.num_workers)


def data_cache(args: argparse.Namespace, root: Path):
    from deeplab.experiment.cache import DataCache

    return DataCache(args.cache_dir, args.dataset, root)


def resolve_dataset(args: argparse.Namespace):
    """Returns (descriptor, root); generates the synthetic set in its default root if it is
    asked for and missing. A folder the user named (--dataset_dir, DATA_DIR) is never written
    into: without the synthetic set there, it is refused."""
    descriptor = get_dataset(args.dataset, args.dataset_dir)
    root = Path(args.dataset_dir) if args.dataset_dir else descriptor.default_root()
    if args.dataset == "synthetic" and not (root / "synthetic.json").is_file():
        if args.dataset_dir:
            raise MissingFile(
                f"DATA_DIR {root} holds no synthetic data set (no synthetic.json), and a folder "
                "you name is not written into: generate one there with `python "
                f"scripts/make_synthetic.py --dataset_dir {root}`, set DATASET to your data's "
                "layout, or leave DATA_DIR empty")
        from deeplab.datasets import synthetic

        print(f"generating the synthetic data set in {root} (first use)")
        synthetic.generate(root, progress=True)
    if not root.is_dir():
        raise MissingFile(
            f"data root {root} for '{args.dataset}' does not exist: set DATA_DIR to the data's "
            f"folder (the drivers), pass --dataset_dir (a script), or put the data at {root}"
        )
    return descriptor, root


def parse_bool(text) -> bool:
    """Flag values 1/0, true/false, yes/no (never the strings 'True'/'False' passed along)."""
    t = str(text).lower()
    if t in ("1", "true", "yes"):
        return True
    if t in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected 1/0 or true/false, got '{text}'")


def parse_shard(text: str) -> tuple[int, int]:
    """Parses `--shard i/n` (0 <= i < n)."""
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard must look like i/n, got '{text}'") from None
    if not 0 <= i < n:
        raise argparse.ArgumentTypeError(f"--shard {text}: need 0 <= i < n")
    return i, n


def parse_ints(text) -> tuple[int, ...]:
    """`769,769` or `769x769` (DeepLab's crop sizes) as a tuple of ints."""
    try:
        return tuple(int(v) for v in str(text).replace("x", ",").split(",") if v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 769,769, got '{text}'") from None


def parse_float(text) -> float:
    """A finite float (NaN and infinity are refused wherever a number is read)."""
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got '{text}'")
    return value


def _flag_parser(hint):
    """The parser of a dataclass field's type: bool, int, float, str, tuple of ints, or any of
    them or None (`none` or an empty value)."""
    import types
    import typing

    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1:
        inner = _flag_parser(args[0])
        return lambda text: None if str(text).lower() in ("", "none") else inner(text)
    if typing.get_origin(hint) is tuple:
        return parse_ints
    return {bool: parse_bool, int: int, float: parse_float, str: str}[hint]


def add_dataclass_flags(parser: argparse.ArgumentParser, cls, skip=(), only=None,
                        names: dict | None = None, helps: dict | None = None) -> list[str]:
    """One flag per field of dataclass `cls` (`--field`, or `--names[field]`), with the field's
    default and a parser for its type: the command line and the dataclass cannot disagree.
    A field without default is a required flag. Returns the fields added."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls)
    added = []
    for f in dataclasses.fields(cls):
        if f.name in skip or (only is not None and f.name not in only):
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        shown = "" if required else f" (default: {default})"
        flag = (names or {}).get(f.name, f.name)
        parser.add_argument(f"--{flag}", dest=f.name, metavar=flag.upper(),
                            type=_flag_parser(hints[f.name]), default=default, required=required,
                            help=(helps or {}).get(f.name, "") + shown)
        added.append(f.name)
    return added


def one_line_errors(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """A flag error is one line naming the flag (exit status 2), not argparse's usage page."""
    import sys

    def error(message):
        print(f"error: {message} (--help lists the flags)", file=sys.stderr)
        sys.exit(2)

    parser.error = error
    return parser


def add_round_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--job_dir", required=True, help="$WORK_DIR/$JOB_NAME of the experiment")
    parser.add_argument("--round", type=int, required=True, help="round index (0 = warm-up)")


# The one class of errors a user can fix (bad input, a missing or damaged file, a setting the data
# cannot hold, a ledger that disagrees with the job, a full disk, a port in use, a missing optional
# package): one line naming the file or value and the fix. Anything else but the refusals below,
# a library's own ValueError or OSError included, is a defect of this code (or an error it does
# not name yet): it keeps its traceback.
EXPECTED_ERRORS = UserError
DEBUG_ENV = "AL_DEBUG"
# The one OSError shown the same way: the system's refusal of a path it names (a full disk or
# quota, no permission, a read-only file system, a folder that cannot be made), raised wherever a
# file is written or read. It is the machine's state or a setting's path, and it names the path.
REFUSED = {errno.ENOSPC: "free space", errno.EDQUOT: "free space (a disk quota)",
           errno.EACCES: "give this user access to it", errno.EPERM: "give this user access to it",
           errno.EROFS: "choose a writable place",
           errno.ENOENT: "check the path (WORK_DIR, DATA_DIR or CACHE_DIR may name a place that "
                         "cannot be made)",
           errno.ENOTDIR: "check the path (a part of it is a file)"}


def user_error(e: BaseException) -> UserError | None:
    """`e` as the one-line error a user can fix, or None for a defect (it keeps its traceback)."""
    if isinstance(e, EXPECTED_ERRORS):
        return e
    if isinstance(e, OSError) and e.errno in REFUSED and e.filename:
        return Unavailable(f"{e.filename}: {e.strerror}; {REFUSED[e.errno]} and run again (what "
                           "is saved stays saved)")
    return None


def follow_driver() -> None:
    """A script that a driver started (its parent is the shell named by AL_DRIVER_PID, or the
    STAGE_LOG wrapper, which names itself there for its child) ends with it: Linux sends it
    SIGTERM when that parent exits, so a driver stopped on its own leaves no script running
    behind it as a second writer (what SIGTERM stops resumes)."""
    import os

    from deeplab.parallel import end_with_parent

    end_with_parent(os.environ.get(DRIVER_ENV, ""))


def guarded(fn, *args, what: str = "error") -> int:
    """Runs `fn(*args)` (a script's work, returning its exit status): an expected error is
    one line on stderr and exit status 2, without a traceback unless AL_DEBUG=1; Ctrl-C is
    one line and exit status 130."""
    import os
    import sys

    follow_driver()
    try:
        return fn(*args)
    except KeyboardInterrupt:
        where = "" if what == "error" else f" ({what})"
        print(f"\nstopped{where}: what is saved stays saved; run it again to continue",
              file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 (anything but a user's error is raised again)
        shown = user_error(e)
        if shown is None or os.environ.get(DEBUG_ENV, "") not in ("", "0"):
            raise
        message = str(shown).strip() or type(shown).__name__
        print(f"{what}: {message} ({DEBUG_ENV}=1 shows the traceback)", file=sys.stderr)
        return 2


def _plain(info: dict) -> str:
    """A stage's figures as `name value` pairs, long lists (the answers' digests) by length."""
    def value(v):
        if isinstance(v, list) and len(v) > 8:
            return f"{len(v)} entries"
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    return ", ".join(f"{k.replace('_', ' ')} {value(v)}" for k, v in info.items())


def describe_stage(stage: str, info: dict) -> str:
    """A stage's manifest entry in words, as the drivers print it (the manifest keeps the
    numbers): what was asked, answered, labelled, trained and measured."""
    try:
        if stage == "regions":
            text = (f"{info['images']} images, {info['regions_per_image_before']:.1f} base superpixels -> "
                    f"{info['regions_per_image_after']:.1f} adaptive regions per image (ASA "
                    f"{info['asa_before']:.3f} -> {info['asa_after']:.3f})")
        elif stage == "select":
            text = (f"{info['spent']:,} regions asked of {info['regions_total']:,} ({info['method']}; "
                    f"{info['regions_per_image']:.1f} regions per image, {info['mean_region_px']:.0f} px "
                    f"on average)" + ("; the pool is spent" if info.get("exhausted") else ""))
        elif stage == "annotate":
            text = (f"{info['answers']:,} answers, {info['labelled_answers']:,} of them with a class, "
                    f"{info['clicks']:,} clicks")
        elif stage == "data" and info.get("full"):
            text = f"every ground-truth pixel of {info['images']} images: {info['labelled_px']:,} px"
        elif stage == "data":
            text = f"{info['images']} images, {info['labelled_px']:,} labelled px"
            if info.get("sieve"):
                text += (f" after sieving removed {info['sieved_px']:,} px ("
                         f"{100 * info['sieved_wrong_share']:.1f} % of them wrongly labelled)")
            text += (f"; wrong labels {100 * info['noise_before']:.2f} % before sieving, "
                     f"{100 * info['noise_after']:.2f} % after")
            for key, name in (("propagated", "propagated"), ("self_trained", "self-trained")):
                if info.get(f"{key}_px"):
                    wrong = info.get(f"{key}_wrong_share")
                    text += (f"; {info[f'{key}_px']:,} px {name} ({100 * info[f'{key}_share']:.1f} % of the "
                             f"labels" + ("" if wrong is None else f", {100 * wrong:.1f} % of them wrong") + ")")
        elif stage == "train":
            text = (f"{info['steps']} steps, final loss {info['final_loss']:.3f}, "
                    f"{info['images_per_second']:.1f} images/s")
        elif stage == "eval":
            text = (f"mIoU {100 * info['miou']:.2f} %" if info.get("miou") is not None
                    else f"not evaluated: {info.get('reason', 'no val split')}")
        else:
            text = _plain(info)
    except (KeyError, TypeError, ValueError):  # a manifest of another version: its figures as they are
        text = _plain(info)
    return text


def run_stage(job_dir, t: int, stage: str, fn=None) -> int:
    """Runs one stage of round t unless its manifest says it is complete; records it. `fn(exp, t)`
    is the stage's work (None: the registry's, imported only when the stage has work to do)."""
    from deeplab.experiment.job import Job

    exp = Job.open(job_dir)
    if not 0 <= t < exp.config.rounds:
        print(f"round {t} is outside 0..{exp.config.rounds - 1} (ROUNDS={exp.config.rounds})")
        return 2
    if exp.done(t, stage):
        print(f"round {t}: {stage} already complete, skipped")
        return 0
    from deeplab.experiment.locks import job_lock

    with job_lock(exp.job_dir):  # two drivers on one job: the second stops here
        if exp.done(t, stage):  # finished by the other process meanwhile
            print(f"round {t}: {stage} already complete, skipped")
            return 0
        exp.check_answered_images()
        info = (fn or stage_function(stage))(exp, t)
        exp.mark(t, stage, info)
    print(f"round {t}: {stage} done: {describe_stage(stage, info)}")
    return 0


# The stage registry: each stage of a round, in the order a round runs them, as the script that
# runs it alone (scripts/<name>.py, the name the stage log records) and its function
# `f(exp, t) -> dict` by `module:function` name (imported only when the stage runs). The
# scripts, scripts/run_round.py and the tests all run stages from here.
STAGES = {
    "regions": ("gen_adaptive_spx", "deeplab.experiment.stages:regions_stage"),
    "select": ("select_regions", "deeplab.experiment.stages:select_stage"),
    "annotate": ("annotate_regions", "deeplab.annotate.stage:annotate_stage"),
    "data": ("build_round_data", "deeplab.experiment.stages:data_stage"),
    "train": ("train_round", "deeplab.experiment.stages:train_stage"),
    "eval": ("eval_round", "deeplab.experiment.stages:eval_stage"),
}


def stage_function(stage: str):
    """The function of a stage of STAGES."""
    import importlib

    module, func = STAGES[stage][1].split(":")
    return getattr(importlib.import_module(module), func)


def _stopped(t: int, stage: str) -> int:
    import sys

    print(f"\nstopped: round {t}'s {stage} stage is not complete; what is saved stays "
          "saved, run the driver again to continue", file=sys.stderr)
    return 130


def stage_main(doc: str, stage: str, argv=None) -> int:
    """`main` of a per-stage script: parses --job_dir/--round and runs the stage's function."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_round_flags(p)
    args = p.parse_args(argv)
    try:
        return guarded(run_stage, args.job_dir, args.round, stage, what=f"round {args.round}: {stage}")
    except KeyboardInterrupt:
        return _stopped(args.round, stage)


def run_stages(job_dir, t: int, stages: list[str], log=None) -> int:
    """Runs stages of round t in order in this process (one TensorFlow start for all of them),
    stopping at the first that fails; with `log` (a stage log), one record per stage under the
    name of its script, as if each had run alone."""
    import functools

    unknown = [s for s in stages if s not in STAGES]
    if unknown or not stages:
        raise BadInput(f"--stages names no stage or an unknown one ({', '.join(unknown)}); "
                       f"valid: {', '.join(STAGES)}")
    def one(stage: str) -> int:
        try:
            return guarded(run_stage, job_dir, t, stage, what=f"round {t}: {stage}")
        except KeyboardInterrupt:
            return _stopped(t, stage)

    for stage in stages:
        rc = logged(log, STAGES[stage][0], ["--job_dir", str(job_dir), "--round", str(t)],
                    functools.partial(one, stage))
        if rc:
            return rc
    return 0


def logged(log, script: str, args: list[str], call) -> int:
    """Runs call() (it returns an exit status) in this process; with `log` (a stage log), appends
    one record of its wall time, CPU time and peak memory under the name of the script that
    does the same work alone."""
    import os
    import resource
    import time

    t0, u0 = time.perf_counter(), _cpu_seconds(resource)
    rc = call()
    if log:
        from deeplab.experiment import stage_log

        peak = max(resource.getrusage(r).ru_maxrss for r in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
        stage_log.append(log, {"script": script, "args": args, "seconds": round(time.perf_counter() - t0, 3),
                               "cpu_seconds": round(_cpu_seconds(resource) - u0, 3),
                               "max_rss_mb": round(peak / 1024.0, 1), "rc": rc, "pid": os.getpid()})
    return rc


def _cpu_seconds(resource) -> float:
    return sum(u.ru_utime + u.ru_stime for u in (resource.getrusage(resource.RUSAGE_SELF),
                                                 resource.getrusage(resource.RUSAGE_CHILDREN)))


# ---------------------------------------------------------------------------- DeepLab's command lines
def add_tfrecord_flags(p: argparse.ArgumentParser) -> None:
    """The flags of DeepLab's command lines that read TFRecords (python -m deeplab.train, .eval)."""
    p.add_argument("--dataset", default="synthetic",
                   help="the data set the TFRecords were made from (its classes and ignore label)")
    p.add_argument("--tfrecord_dir", default=None, help="folder holding the TFRecords (required)")
    p.add_argument("--dataset_dir", default=None, help=argparse.SUPPRESS)
    p.add_argument("--classes", default=None,
                   help="with --dataset folder: the data set's classes.json (class count, ignore label)")


def check_tfrecord_flags(p: argparse.ArgumentParser, args) -> None:
    """--dataset_dir means the data root in every script; here the TFRecords are --tfrecord_dir."""
    if args.dataset_dir is not None:
        p.error("--dataset_dir is the data root in this project's scripts; pass the folder of "
                f"TFRecords as --tfrecord_dir {args.dataset_dir}")
    if args.tfrecord_dir is None:
        p.error("--tfrecord_dir (the folder of TFRecords) is required")


def dataset_for_tfrecords(p: argparse.ArgumentParser, args):
    """The descriptor of --dataset (a folder data set: from --classes)."""
    from deeplab.datasets.descriptors import FolderDataset

    if args.dataset == "folder":
        if not args.classes:
            p.error("--dataset folder needs --classes DATA_DIR/classes.json")
        try:
            return FolderDataset.from_classes(args.classes)
        except UserError as e:
            p.error(str(e))
    return get_dataset(args.dataset)
