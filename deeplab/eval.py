"""Evaluates a trained model on a split's TFRecords at full resolution: mIoU, per-class IoU and
the confusion matrix, written as JSON and printed as a table.

  python -m deeplab.eval --checkpoint_dir work_dirs/exp/train --dataset synthetic \
      --tfrecord_dir work_dirs/cache/<data>/tfrecord --eval_split val
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from deeplab import io_utils
from deeplab.train import (
    add_tfrecord_flags,
    check_tfrecord_flags,
    dataset_for_tfrecords,
)
from deeplab.training.evaluate import evaluate, format_table
from deeplab.training.trainer import load_trained


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint_dir", required=True, help="a finished train_logdir")
    p.add_argument("--dataset", default="synthetic")
    add_tfrecord_flags(p)
    p.add_argument("--eval_split", default="val")
    p.add_argument("--eval_batch_size", type=int, default=1)
    p.add_argument("--output", default=None, help="JSON path (default: <checkpoint_dir>/eval_<split>.json)")
    args = p.parse_args(argv)
    check_tfrecord_flags(p, args)
    ds = dataset_for_tfrecords(p, args)
    model, _ = load_trained(args.checkpoint_dir)
    result = evaluate(model, args.tfrecord_dir, args.eval_split, ds.num_classes, ds.ignore_label,
                      args.eval_batch_size)
    out = Path(args.output) if args.output else Path(args.checkpoint_dir) / f"eval_{args.eval_split}.json"
    io_utils.write_json(out, result)
    print(format_table(np.array([np.nan if v is None else v for v in result["per_class_iou"]]),
                       ds.class_names, result["miou"]))
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
