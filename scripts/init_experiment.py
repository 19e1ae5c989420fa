"""Validates an experiment's settings and writes (or, on resume, checks) its config.json.

Called first by the drivers, so that bad settings stop them before any work:

  python scripts/init_experiment.py --job_dir work_dirs/demo --acquisition class_balanced ...
"""

import argparse
import dataclasses
import sys
from pathlib import Path


def _int(text):
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got '{text}'") from None


def _clicks(text):
    """CLICKS_PER_ROUND: a count of clicks, or a share of the base superpixels such as '0.5%'."""
    text = str(text).strip()
    try:
        if text.endswith("%"):
            return 0, float(text[:-1])
        return int(text), 0.0
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"CLICKS_PER_ROUND must be a number of clicks (1000) or a share of the base "
            f"superpixels (0.5%), got '{text}'") from None


def _check_superpixels(exp) -> None:
    """NUM_SUPERPIXELS that the first train image cannot hold is refused before any work."""
    from deeplab.active import superpixels

    c = exp.config
    if not c.num_superpixels:
        return
    h, w = exp.descriptor.read_image(exp.samples[0]).shape[:2]
    superpixels.check_superpixel_count(h, w, c.superpixel_method, c.num_superpixels,
                                       f"'{exp.samples[0].name}'")


def _check_job_dir(job_dir: Path, work_dir: str | None, data_root: Path) -> None:
    """The job folder lies inside WORK_DIR (a JOB_NAME such as `../x` may not leave it) and
    never inside the data root (nothing is written into DATA_DIR)."""
    job = job_dir.resolve()
    if work_dir is not None:
        work = Path(work_dir).resolve()
        if job == work or work not in job.parents:
            raise ValueError(f"the job folder {job_dir} is not inside WORK_DIR {work_dir}: "
                             "JOB_NAME must name a folder under WORK_DIR (no '..', not absolute)")
    root = data_root.resolve()
    if job == root or root in job.parents:
        raise ValueError(f"the job folder {job_dir} lies inside DATA_DIR {data_root}: nothing is "
                         "written into the data; choose a WORK_DIR and JOB_NAME outside it")


def main(argv=None) -> int:
    from deeplab.cli import parse_bool
    from deeplab.experiment.config import ExperimentConfig
    from deeplab.experiment.job import Experiment

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in dataclasses.fields(ExperimentConfig):
        kind = {bool: parse_bool, int: _int, float: float}.get(type(f.default), str)
        if f.name == "job_dir":
            p.add_argument("--job_dir", required=True)
        elif f.name == "clicks_percent":
            continue  # given as CLICKS_PER_ROUND=P%
        elif f.name == "clicks_per_round":
            p.add_argument("--clicks_per_round", type=_clicks, default=(f.default, 0.0),
                           help="clicks per round, or P%% of the train split's base superpixels")
        else:
            p.add_argument(f"--{f.name}", type=kind, default=f.default)
    p.add_argument("--work_dir", default=None,
                   help="WORK_DIR: the job folder must lie inside it (JOB_NAME may not leave it)")
    args = p.parse_args(argv)
    settings = vars(args)
    work_dir = settings.pop("work_dir")
    settings["clicks_per_round"], settings["clicks_percent"] = args.clicks_per_round
    try:
        config = ExperimentConfig(**settings).validate()
        exp = Experiment(config)
        _check_job_dir(Path(config.job_dir), work_dir, exp.data_root)
        from deeplab import cli

        # Generates the synthetic set on first use; checks that the data exist.
        cli.resolve_dataset(argparse.Namespace(dataset=config.dataset, dataset_dir=str(exp.data_root)))
        train = exp.samples
        if config.annotator == "oracle":
            exp.require_labels("the simulated annotator (ANNOTATOR=oracle)")
        if config.regions == "oracle":
            exp.require_labels("REGIONS=oracle")
        if exp.evaluable:
            exp.descriptor.require_labels(
                exp.descriptor.list_split(exp.data_root, "val"), "val", "evaluation",
                f"Add them to labels/, or remove {exp.descriptor.list_file(exp.data_root, 'val')} "
                "to run without evaluation")
        exp.check_splits()
        _check_superpixels(exp)
        config.save_or_check()
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    budget = f"clicks on {config.clicks_percent:g}% of the base superpixels" if config.clicks_percent \
        else f"{config.clicks_per_round} clicks"
    print(f"experiment {config.job_dir}: {config.dataset} ({len(train)} train images), "
          f"{config.rounds} rounds x {budget}, {config.regions} regions, "
          f"{config.acquisition}, sieve={int(config.sieve)}, {config.model_variant}, "
          f"answers by {'people in a browser' if config.annotator == 'human' else 'the oracle'}"
          + ("" if exp.evaluable else "; no val split: rounds are not evaluated"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
