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
from deeplab.cli import (add_dataclass_flags, add_tfrecord_flags, check_tfrecord_flags,
                         dataset_for_tfrecords, one_line_errors)
from deeplab.training.evaluate import EvalConfig, evaluate, format_table
from deeplab.training.trainer import load_trained


def main(argv=None) -> int:
    p = one_line_errors(argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter))
    fields = add_dataclass_flags(p, EvalConfig, helps={"checkpoint_dir": "a finished train_logdir"})
    add_tfrecord_flags(p)
    args = p.parse_args(argv)
    check_tfrecord_flags(p, args)
    ds = dataset_for_tfrecords(p, args)
    c = EvalConfig(**{name: getattr(args, name) for name in fields})
    model, _ = load_trained(c.checkpoint_dir)
    result = evaluate(model, args.tfrecord_dir, c.eval_split, ds.num_classes, ds.ignore_label,
                      c.eval_batch_size)
    out = Path(c.output) if c.output else Path(c.checkpoint_dir) / f"eval_{c.eval_split}.json"
    io_utils.write_json(out, result)
    print(format_table(np.array([np.nan if v is None else v for v in result["per_class_iou"]]),
                       ds.class_names, result["miou"]))
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    from deeplab.cli import guarded

    sys.exit(guarded(main))
