"""Trains DeepLabv3+ from TFRecords: DeepLab's train.py command line, with its flag names. What
a step computes, how it resumes and what it writes: deeplab/training/trainer.py.

  python -m deeplab.train --train_logdir work_dirs/exp/train \
      --dataset synthetic --tfrecord_dir work_dirs/cache/<data>/tfrecord \
      --model_variant xception_light --training_number_of_steps 200 --train_crop_size 129,129
"""

from __future__ import annotations

import argparse
import json
import sys

from deeplab.cli import (add_dataclass_flags, add_tfrecord_flags, check_tfrecord_flags,
                         dataset_for_tfrecords, one_line_errors)
from deeplab.model import ModelOptions
from deeplab.training.trainer import STRATEGIES, TrainConfig, train


# ModelOptions' fields given as flags (DeepLab's flag names).
MODEL_FLAGS = ("model_variant", "output_stride", "decoder_output_stride", "fine_tune_batch_norm",
               "batch_norm_decay")


def add_model_flags(p: argparse.ArgumentParser):
    """The network's flags, from ModelOptions (its defaults, its types)."""
    add_dataclass_flags(p, ModelOptions, only=MODEL_FLAGS)
    p.add_argument("--atrous_rates", type=int, action="append", default=None,
                   help="repeat per rate (DeepLab style) or leave out for the default")


def model_options_from(args, num_classes) -> ModelOptions:
    return ModelOptions(num_classes=num_classes,
                        atrous_rates=tuple(args.atrous_rates) if args.atrous_rates else None,
                        **{name: getattr(args, name) for name in MODEL_FLAGS})


# TrainConfig's fields given otherwise: the data set's (from --dataset), the network (the model
# flags), the TFRecords (--tfrecord_dir, checked), the progress bar.
NOT_FLAGS = ("tfrecord_dir", "num_classes", "ignore_label", "model", "progress")


def parser() -> tuple[argparse.ArgumentParser, list[str]]:
    """The command line and the TrainConfig fields it sets."""
    p = one_line_errors(argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter))
    add_tfrecord_flags(p)
    add_model_flags(p)
    fields = add_dataclass_flags(p, TrainConfig, skip=NOT_FLAGS, helps={
        "train_crop_size": "height,width (one value: square)",
        "save_interval_secs": "also save a checkpoint when this many seconds have passed",
        "deterministic": "deterministic kernels and input order (with --seed: repeatable runs)",
        "strategy": f"one of {', '.join(STRATEGIES)}"})
    return p, fields


def main(argv=None) -> int:
    p, fields = parser()
    args = p.parse_args(argv)
    check_tfrecord_flags(p, args)
    if args.strategy not in STRATEGIES:
        p.error(f"--strategy {args.strategy}: one of {', '.join(STRATEGIES)}")
    ds = dataset_for_tfrecords(p, args)
    values = {name: getattr(args, name) for name in fields}
    if len(values["train_crop_size"]) == 1:
        values["train_crop_size"] = values["train_crop_size"] * 2
    config = TrainConfig(tfrecord_dir=args.tfrecord_dir, num_classes=ds.num_classes,
                         ignore_label=ds.ignore_label, model=model_options_from(args, ds.num_classes),
                         **values)
    info = train(config)
    print(json.dumps({k: info[k] for k in ("steps", "final_loss", "images_per_second")}))
    return 0


if __name__ == "__main__":
    from deeplab.cli import guarded

    sys.exit(guarded(main))
