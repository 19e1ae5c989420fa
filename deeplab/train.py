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

from deeplab.cli import parse_bool
from deeplab.model import ModelOptions
from deeplab.training.trainer import STRATEGIES, TrainConfig, train


def _ints(text):
    return tuple(int(v) for v in str(text).replace("x", ",").split(",") if v)


def add_model_flags(p: argparse.ArgumentParser):
    p.add_argument("--model_variant", default="xception_65")
    p.add_argument("--output_stride", type=int, default=16)
    p.add_argument("--atrous_rates", type=int, action="append", default=None,
                   help="repeat per rate (DeepLab style) or leave out for the default")
    p.add_argument("--decoder_output_stride", type=int, default=4)
    p.add_argument("--fine_tune_batch_norm", type=parse_bool, default=True)
    p.add_argument("--batch_norm_decay", type=float, default=0.9997)


def model_options_from(args, num_classes) -> ModelOptions:
    return ModelOptions(num_classes=num_classes, model_variant=args.model_variant,
                        output_stride=args.output_stride,
                        atrous_rates=tuple(args.atrous_rates) if args.atrous_rates else None,
                        decoder_output_stride=args.decoder_output_stride or None,
                        fine_tune_batch_norm=args.fine_tune_batch_norm,
                        bn_momentum=args.batch_norm_decay)


def add_tfrecord_flags(p: argparse.ArgumentParser) -> None:
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
    from deeplab.datasets import get_dataset
    from deeplab.datasets.descriptors import FolderDataset

    if args.dataset == "folder":
        if not args.classes:
            p.error("--dataset folder needs --classes DATA_DIR/classes.json")
        try:
            return FolderDataset.from_classes(args.classes)
        except (ValueError, FileNotFoundError) as e:
            p.error(str(e))
    return get_dataset(args.dataset)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train_logdir", required=True)
    p.add_argument("--dataset", default="synthetic")
    add_tfrecord_flags(p)
    p.add_argument("--train_split", default="train")
    add_model_flags(p)
    p.add_argument("--training_number_of_steps", type=int, default=30000)
    p.add_argument("--base_learning_rate", type=float, default=0.007)
    p.add_argument("--learning_power", type=float, default=0.9)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight_decay", type=float, default=4e-5)
    p.add_argument("--train_crop_size", type=_ints, default=(769, 769))
    p.add_argument("--train_batch_size", type=int, default=4)
    p.add_argument("--min_scale_factor", type=float, default=0.5)
    p.add_argument("--max_scale_factor", type=float, default=2.0)
    p.add_argument("--scale_factor_step_size", type=float, default=0.25)
    p.add_argument("--tf_initial_checkpoint", default=None)
    p.add_argument("--initialize_last_layer", type=parse_bool, default=True)
    p.add_argument("--save_interval_steps", type=int, default=500)
    p.add_argument("--save_interval_secs", type=float, default=1200.0,
                   help="also save a checkpoint when this many seconds have passed (DeepLab's default)")
    p.add_argument("--log_steps", type=int, default=10)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--deterministic", type=parse_bool, default=False,
                   help="deterministic kernels and input order (with --seed: repeatable runs)")
    p.add_argument("--mixed_precision", type=parse_bool, default=False)
    p.add_argument("--strategy", default="auto", choices=STRATEGIES)
    args = p.parse_args(argv)
    check_tfrecord_flags(p, args)
    ds = dataset_for_tfrecords(p, args)
    crop = args.train_crop_size if len(args.train_crop_size) == 2 else args.train_crop_size * 2
    config = TrainConfig(
        train_logdir=args.train_logdir, tfrecord_dir=args.tfrecord_dir, num_classes=ds.num_classes,
        ignore_label=ds.ignore_label, train_split=args.train_split,
        model=model_options_from(args, ds.num_classes),
        training_number_of_steps=args.training_number_of_steps,
        base_learning_rate=args.base_learning_rate, learning_power=args.learning_power,
        momentum=args.momentum, weight_decay=args.weight_decay, train_crop_size=crop,
        train_batch_size=args.train_batch_size, min_scale_factor=args.min_scale_factor,
        max_scale_factor=args.max_scale_factor, scale_factor_step_size=args.scale_factor_step_size,
        tf_initial_checkpoint=args.tf_initial_checkpoint,
        initialize_last_layer=args.initialize_last_layer,
        save_interval_steps=args.save_interval_steps,
        save_interval_secs=args.save_interval_secs, log_steps=args.log_steps, seed=args.seed,
        deterministic=args.deterministic, mixed_precision=args.mixed_precision, strategy=args.strategy)
    info = train(config)
    print(json.dumps({k: info[k] for k in ("steps", "final_loss", "images_per_second")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
