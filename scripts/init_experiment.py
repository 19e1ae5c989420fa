"""Validates an experiment's settings and writes (or, on resume, checks) its config.json.

Called first by the drivers, so that bad settings stop them before any work:

  python scripts/init_experiment.py --job_dir work_dirs/demo --acquisition class_balanced ...
"""

import argparse
import dataclasses
import sys


def _int(text):
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got '{text}'") from None


def main(argv=None) -> int:
    from deeplab.active.experiment import ExperimentConfig, Experiment
    from deeplab.cli import parse_bool

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in dataclasses.fields(ExperimentConfig):
        kind = {bool: parse_bool, int: _int, float: float}.get(type(f.default), str)
        if f.name == "job_dir":
            p.add_argument("--job_dir", required=True)
        else:
            p.add_argument(f"--{f.name}", type=kind, default=f.default)
    args = p.parse_args(argv)
    try:
        config = ExperimentConfig(**vars(args)).validate()
        exp = Experiment(config)
        from deeplab import cli

        # Generates the synthetic set on first use; checks that the data exist.
        cli.resolve_dataset(argparse.Namespace(dataset=config.dataset, dataset_dir=str(exp.data_root)))
        train = exp.samples
        exp.descriptor.list_split(exp.data_root, "val")
        config.save_or_check()
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"experiment {config.job_dir}: {config.dataset} ({len(train)} train images), "
          f"{config.rounds} rounds x {config.clicks_per_round} clicks, {config.regions} regions, "
          f"{config.acquisition}, sieve={int(config.sieve)}, {config.model_variant}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
