"""Validates an experiment's settings and writes (or, on resume, checks) its config.json.

Called first by the drivers, so that bad settings stop them before any work:

  python scripts/init_experiment.py --job_dir work_dirs/demo --acquisition class_balanced ...
"""

import argparse
import sys
from pathlib import Path


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
    from deeplab.errors import BadInput

    job = job_dir.resolve()
    if work_dir is not None:
        work = Path(work_dir).resolve()
        if job == work or work not in job.parents:
            raise BadInput(f"the job folder {job_dir} is not inside WORK_DIR {work_dir}: "
                           "JOB_NAME must name a folder under WORK_DIR (no '..', not absolute)")
    root = data_root.resolve()
    if job == root or root in job.parents:
        raise BadInput(f"the job folder {job_dir} lies inside DATA_DIR {data_root}: nothing is "
                       "written into the data; choose a WORK_DIR and JOB_NAME outside it")


WHO = {"oracle": "the oracle", "human": "people in a browser",
       "label_studio": "people in Label Studio"}


def main(argv=None) -> int:
    from deeplab.experiment import settings as table
    from deeplab.experiment.settings import ExperimentConfig
    from deeplab.experiment.job import Job

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--job_dir", required=True, help="the job folder (WORK_DIR/JOB_NAME)")
    p.add_argument("--work_dir", default=None,
                   help="WORK_DIR: the job folder must lie inside it (JOB_NAME may not leave it); "
                        "an empty --cache_dir means WORK_DIR/cache")
    for s in table.TABLE:  # every setting of the table, as text: parsed below, one line per error
        if s.field and s.field != "clicks_percent":  # given as CLICKS_PER_ROUND=P%
            p.add_argument(f"--{s.field}", default=None, help=f"{s.name}: {s.help}".replace("%", "%%"))
    # A flag error is one line naming the flag, not argparse's usage page.
    p.error = lambda message: (print(f"error: {message}", file=sys.stderr), sys.exit(2))
    args = p.parse_args(argv)
    work_dir = args.work_dir
    settings = {"job_dir": args.job_dir}
    for s in table.TABLE:
        text = getattr(args, s.field, None) if s.field else None
        if text is None:
            continue
        if s.field == "clicks_per_round":
            settings["clicks_per_round"], settings["clicks_percent"] = table.parse_budget(text)
        else:
            settings[s.field] = table.parse_value(s, text)
    if not settings.get("cache_dir") and work_dir is not None:
        settings["cache_dir"] = str(Path(work_dir) / "cache")
    config = ExperimentConfig(**settings).validate()
    exp = Job(config)
    _check_job_dir(Path(config.job_dir), work_dir, exp.data_root)
    from deeplab import cli
    from deeplab.errors import BadInput

    # Generates the synthetic set on first use; checks that the data exist.
    cli.resolve_dataset(argparse.Namespace(dataset=config.dataset, dataset_dir=config.dataset_dir))
    train = exp.samples
    if config.annotator == "oracle":
        exp.require_labels("the simulated annotator (ANNOTATOR=oracle)")
    if config.regions == "oracle":
        exp.require_labels("REGIONS=oracle")
    split = config.eval_split
    if split != "val" and not exp.evaluable:  # asked for by name: never left out in silence
        raise BadInput(f"EVAL_SPLIT={split}, but {exp.data_root} has no {split} split (it is read from "
                       f"{exp.descriptor.split_source(exp.data_root, split)}): add it, or leave "
                       "EVAL_SPLIT unset to evaluate on val")
    if exp.evaluable:
        exp.descriptor.require_labels(
            exp.eval_samples(), split, "evaluation",
            f"Add them to labels/, or remove {exp.descriptor.list_file(exp.data_root, split)} "
            "to run without evaluation")
    exp.check_splits()
    _check_superpixels(exp)
    config.save_or_check()
    budget = f"clicks on {config.clicks_percent:g}% of the base superpixels" if config.clicks_percent \
        else f"{config.clicks_per_round} clicks"
    scale = ""
    if config.image_scale != 1:
        h, w = exp.descriptor.read_image(train[0]).shape[:2]
        scale = f" at IMAGE_SCALE={config.image_scale:g} ({h}x{w} for the first)"
    print(f"experiment {config.job_dir}: {config.dataset} ({len(train)} train images{scale}), "
          f"{config.rounds} rounds x {budget}, {config.regions} regions, "
          f"{config.acquisition}, sieve={int(config.sieve)}, {config.model_variant}, "
          f"answers by {WHO[config.annotator]}"
          + (f"; evaluated on {split}" if exp.evaluable and split != "val" else "")
          + ("" if exp.evaluable else f"; no {split} split: rounds are not evaluated"))
    return 0


if __name__ == "__main__":
    from deeplab.cli import guarded

    sys.exit(guarded(main))
